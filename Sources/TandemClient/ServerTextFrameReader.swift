import NIOCore

/// Reads the server's plain text frames straight from the socket's bytes and hands them to the connection's
/// handler, past NIO's frame decoder, protocol-error handler and aggregator; every other frame still goes
/// through them.
///
/// A client that receives a busy doc's patches (tandem-bench's hot doc: ~485,000 frames a second, on the 2
/// cores it shares with the server) paid ~7,600 instructions a frame in that chain (callgrind, issue 8 stop
/// 27): a `WebSocketFrame` boxed in an `NIOAny` at each of three hops, with unspecialised generic casts and
/// metadata lookups at each. A text frame that is final, unmasked, without reserved bits and within
/// `maxFrameSize` — every message Tandem sends — means the same read either way, so it is read here: a
/// slice of the bytes received, no copy.
///
/// Order is kept: frames are handed on whole, in the order they arrived — a plain text frame to the handler,
/// a well-formed control frame (ping, pong, close) as its own bytes into the decoder, which decodes it and
/// passes it on before this returns. Anything else (a fragment, a binary or masked frame, reserved bits or
/// opcodes, a frame over `maxFrameSize`) and every byte after it go through the decoder, as if this handler
/// were not there: the aggregator's and the error handler's state stays theirs alone, and their errors and
/// close codes are what they were.
///
/// Sits right in front of the `ByteToMessageHandler(WebSocketFrameDecoder)`; confined to the channel's loop.
final class ServerTextFrameReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let maxFrameSize: Int
    private let handler: WebSocketClientHandler
    /// The bytes of a frame not received whole yet (its declared length is within `maxFrameSize`).
    private var partial: ByteBuffer?
    /// Set for good by the first frame this does not read itself.
    private var passingThrough = false

    init(maxFrameSize: Int, handler: WebSocketClientHandler) {
        self.maxFrameSize = maxFrameSize
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if passingThrough {
            context.fireChannelRead(data)
            return
        }
        var buffer = Self.unwrapInboundIn(data)
        if var held = partial {
            partial = nil
            held.writeBuffer(&buffer)
            buffer = held
        }
        while buffer.readableBytes > 0 {
            switch Self.next(in: buffer, maxFrameSize: maxFrameSize) {
            case .text(let header, let length):
                let payload = buffer.getSlice(at: buffer.readerIndex + header, length: length)!
                buffer.moveReaderIndex(forwardBy: header + length)
                handler.receivedText(payload)
            case .control(let total):
                context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: total)!))
            case .other:
                passingThrough = true
                context.fireChannelRead(Self.wrapInboundOut(buffer))
                return
            case .incomplete:
                partial = buffer
                return
            }
        }
    }

    /// What the frame at the front of `buffer` is, from its header (RFC 6455 §5.2).
    enum Front: Equatable {
        /// A text frame read here: header bytes and payload length, all of it in `buffer`.
        case text(header: Int, length: Int)
        /// A ping, pong or close frame that the decoder takes as it is: its total bytes, all in `buffer`.
        case control(total: Int)
        /// Anything else: the decoder's from here on.
        case other
        /// Not all of it received yet (and nothing that makes it `other` seen so far).
        case incomplete
    }

    static func next(in buffer: ByteBuffer, maxFrameSize: Int) -> Front {
        guard buffer.readableBytes >= 2 else { return .incomplete }
        let start = buffer.readerIndex
        let b0 = buffer.getInteger(at: start, as: UInt8.self)!
        let b1 = buffer.getInteger(at: start + 1, as: UInt8.self)!
        let fin = b0 & 0x80 != 0
        let opcode = b0 & 0x0F
        // Reserved bits, or a masked frame (servers do not mask): the decoder's and the handler's to judge.
        guard b0 & 0x70 == 0, b1 & 0x80 == 0, fin else { return .other }
        let isControl = opcode == 0x8 || opcode == 0x9 || opcode == 0xA
        guard opcode == 0x1 || isControl else { return .other }
        var header = 2
        var length = Int(b1 & 0x7F)
        if length == 126 {
            guard buffer.readableBytes >= 4 else { return .incomplete }
            length = Int(buffer.getInteger(at: start + 2, as: UInt16.self)!)
            header = 4
        } else if length == 127 {
            guard buffer.readableBytes >= 10 else { return .incomplete }
            let long = buffer.getInteger(at: start + 2, as: UInt64.self)!
            guard long <= UInt64(maxFrameSize) else { return .other }
            length = Int(long)
            header = 10
        }
        // Over the limit: the decoder refuses it from its header, before the payload arrives (a control frame
        // too, with a limit under 125 bytes).
        guard length <= maxFrameSize else { return .other }
        // A control frame's payload is at most 125 bytes, in the 7-bit length (§5.5).
        if isControl, header != 2 || length > 125 { return .other }
        guard buffer.readableBytes >= header + length else { return .incomplete }
        return isControl ? .control(total: header + length) : .text(header: header, length: length)
    }
}

@available(*, unavailable)
extension ServerTextFrameReader: Sendable {}
