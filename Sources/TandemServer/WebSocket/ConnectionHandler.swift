import NIOCore
import NIOWebSocket
import TandemFraming

/// The thin channel handler in front of a `ClientConnection`: turns the bytes read into WebSocket frames
/// (`InboundFrameDecoder`: no NIO frame decoder in front of it on `/v1/ws`) and frames and channel events
/// into calls on it. Framing errors and close frames are answered here; pings and data frames go to the
/// connection.
final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    private let connection: ClientConnection
    /// Frames parsed off the bytes read (NIO's decoder and error handler are not in this pipeline).
    private var decoder: InboundFrameDecoder
    /// Set once the client broke the framing rules: nothing it sends after is read.
    private var failed = false
    /// Fragmented messages put back together (no aggregator handler in front of this one).
    private var assembler: FrameAssembler
    /// Text payloads unmasked into a buffer kept between frames (see `FrameUnmasker`).
    private var unmasker = FrameUnmasker()
    /// The channel's allocator, read once: `context.channel.allocator` per frame went through the pipeline
    /// and the channel existential (~160 instructions a presence update, issue 14).
    private var allocator = ByteBufferAllocator()

    /// - Parameters:
    ///   - maxFrameBytes: payload bytes per frame at most.
    ///   - maxFragments: fragments per message at most.
    ///   - maxMessageBytes: payload bytes per message at most, all fragments together.
    init(connection: ClientConnection, maxFrameBytes: Int, maxFragments: Int, maxMessageBytes: Int) {
        self.connection = connection
        self.decoder = InboundFrameDecoder(maxFrameSize: maxFrameBytes)
        self.assembler = FrameAssembler(maxFragments: maxFragments, maxMessageBytes: maxMessageBytes)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
        if context.channel.isActive { connection.start() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var bytes = decoder.joined(unwrapInboundIn(data))
        do throws(InboundFrameError) {
            while let frame = try decoder.nextFrame(in: &bytes) {
                handle(frame, context: context)
                if failed { return }
            }
        } catch {
            refuse(error, context: context)
            return
        }
        decoder.keep(bytes)
    }

    /// One frame. A whole text message (nearly every frame a client sends) goes to the connection
    /// unmasked into the kept buffer; everything else goes the way NIO's frames went.
    private func handle(_ frame: InboundFrame, context: ChannelHandlerContext) {
        if frame.isWholeText, assembler.isIdle {
            let text = unmasker.payload(masked: frame.payload, maskBits: frame.maskBits, allocator: allocator)
            received(text: text)
            return
        }
        let whole: WebSocketFrame
        do {
            guard let assembled = try assembler.assemble(frame.webSocketFrame, allocator: allocator) else { return }
            whole = assembled
        } catch {
            // A protocol error, answered like the decoder's refusals (NIO's aggregator only closed the socket).
            refuse(code: error == .accumulatedFrameSizeIsTooLarge ? .messageTooLarge : .protocolError, text: Self.closeText(error), context: context)
            return
        }
        switch whole.opcode {
        case .text:
            received(text: unmasker.payload(of: whole, allocator: allocator))
        case .binary:
            connection.receivedBinary()
        case .ping:
            // Answered by the connection: at most one pong in flight (a ping flood must not fill the buffer).
            connection.receivedPing(whole.unmaskedData)
        case .pong:
            connection.receivedPong()
        case .connectionClose:
            connection.receivedClose()
            // Answer the close (RFC 6455 §5.5.1: its code echoed, or 1002/1007 for an invalid one) unless we
            // started the handshake, then close the socket.
            if !connection.isClosing {
                let code = CloseFrameReply.code(for: whole.unmaskedData)
                var reply = allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: code)
                let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        default:
            break
        }
    }

    /// A whole text message, unmasked into the kept buffer: to the connection if it is UTF-8; otherwise
    /// the connection is failed with 1007 (RFC 6455 §8.1) and nothing more is read.
    private func received(text: ByteBuffer) {
        if TextPayloadValidation.isValidUTF8(text) {
            connection.receivedText(text)
        } else {
            failed = true
            connection.close(.invalidUTF8Text)
        }
        unmasker.recycle(text)
    }

    /// A frame the decoder refused: recorded as a protocol error and answered as NIO's decoder and its
    /// `WebSocketProtocolErrorHandler` answered (a close frame with 1009 for a frame over the size limit,
    /// 1002 otherwise — here with the refusal's text), and the socket closed at once (a client that does
    /// not read cannot hold the socket open with an unwritten close frame).
    private func refuse(_ error: InboundFrameError, context: ChannelHandlerContext) {
        refuse(code: error.closeCode, text: error.closeText, context: context)
    }

    private func refuse(code: WebSocketErrorCode, text: String, context: ChannelHandlerContext) {
        failed = true
        connection.protocolErrorClose()
        context.writeAndFlush(wrapOutboundOut(CloseFrameReply.frame(code: code, text: text, allocator: allocator)), promise: nil)
        context.close(promise: nil)
    }

    /// The close frame's text for a fragmentation error (documented in docs/protocol.md).
    static func closeText(_ error: NIOWebSocketFrameAggregator.Error) -> String {
        switch error {
        case .didReceiveFragmentBeforeReceivingTextOrBinaryFrame: "continuation frame without a message to continue"
        case .receivedNewFrameWithoutFinishingPrevious: "new message before the fragmented one ended"
        case .tooManyFragments: "too many fragments in one message"
        case .accumulatedFrameSizeIsTooLarge: "fragmented message over the size limit"
        case .nonFinalFragmentSizeIsTooSmall: "fragment too small"
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.readComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.writabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.channelClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Framing errors are handled in `channelRead` (this handler decodes and assembles frames itself):
        // what arrives here is an I/O error (a reset socket), and the close stays `abrupt`, which is what
        // operators read as network loss.
        context.close(promise: nil)
    }
}

/// On `/yjs` (NIO's frame decoder and aggregator): sits between NIO's frame decoder and its
/// `WebSocketProtocolErrorHandler`. It refuses the frames NIO's decoder passes but RFC 6455 says to fail
/// (a reserved bit, an unknown opcode, no mask: `InboundFrameError.strictRefusal`) with 1002 and the
/// refusal's text, as `/v1/ws`'s decoder does; and records NIO's framing errors (fragmented or oversized
/// control frame, frame over the size limit) as the close reason. It has to be in front: that handler
/// writes the 1002/1009 close frame and closes the socket as soon as the write completes — often at once,
/// before it passes the error on — so by the time the error would reach `ConnectionHandler` the connection
/// has closed and been counted as `abrupt`.
final class FramingErrorRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Records the close reason on the connection (a `ClientConnection` or a `YjsConnection`).
    private let record: () -> Void
    /// Set once a frame was refused: nothing after it is passed on.
    private var failed = false

    init(connection: YjsConnection) {
        self.record = { connection.protocolErrorClose() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        guard let refusal = InboundFrameError.strictRefusal(of: unwrapInboundIn(data)) else {
            context.fireChannelRead(data)
            return
        }
        failed = true
        record()
        let close = CloseFrameReply.frame(code: refusal.closeCode, text: refusal.closeText, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(close), promise: nil)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if Self.isProtocolError(error) { record() }
        context.fireErrorCaught(error)
    }

    /// The client broke RFC 6455 framing (decoder or fragment aggregation), as opposed to an I/O error.
    static func isProtocolError(_ error: any Error) -> Bool {
        error is NIOWebSocketError || error is NIOWebSocketFrameAggregator.Error
    }
}
