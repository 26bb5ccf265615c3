import NIOCore
import NIOWebSocket

/// The thin channel handler in front of a `ClientConnection`: turns WebSocket frames and channel events
/// into calls on it. Close frames are answered here; pings and data frames go to the connection.
final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let connection: ClientConnection
    /// Fragmented messages put back together (no aggregator handler in front of this one).
    private var assembler: FrameAssembler
    /// Text payloads unmasked into a buffer kept between frames (see `FrameUnmasker`).
    private var unmasker = FrameUnmasker()
    /// The channel's allocator, read once: `context.channel.allocator` per frame went through the pipeline
    /// and the channel existential (~160 instructions a presence update, issue 14).
    private var allocator = ByteBufferAllocator()

    /// - Parameters:
    ///   - maxFragments: fragments per message at most.
    ///   - maxMessageBytes: payload bytes per message at most, all fragments together.
    init(connection: ClientConnection, maxFragments: Int, maxMessageBytes: Int) {
        self.connection = connection
        self.assembler = FrameAssembler(maxFragments: maxFragments, maxMessageBytes: maxMessageBytes)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
        if context.channel.isActive { connection.start() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame: WebSocketFrame
        do {
            guard let whole = try assembler.assemble(unwrapInboundIn(data), allocator: allocator) else { return }
            frame = whole
        } catch {
            // What `errorCaught` does with the aggregator's errors: a protocol error, and the socket closed.
            connection.protocolErrorClose()
            context.close(promise: nil)
            return
        }
        switch frame.opcode {
        case .text:
            let text = unmasker.payload(of: frame, allocator: allocator)
            connection.receivedText(text)
            unmasker.recycle(text)
        case .binary:
            connection.receivedBinary()
        case .ping:
            // Answered by the connection: at most one pong in flight (a ping flood must not fill the buffer).
            connection.receivedPing(frame.unmaskedData)
        case .pong:
            connection.receivedPong()
        case .connectionClose:
            connection.receivedClose()
            // Answer the close (RFC 6455 §5.5.1: its code echoed, or 1002/1007 for an invalid one) unless we
            // started the handshake, then close the socket.
            if !connection.isClosing {
                let code = CloseFrameReply.code(for: frame.unmaskedData)
                var reply = context.channel.allocator.buffer(capacity: 2)
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
        // Errors of the frame aggregator (too many or too large fragments) arrive here first; frame
        // decoder errors were recorded by `FramingErrorRecorder` already. Anything else is an I/O error
        // (a reset socket): the close stays `abrupt`, which is what operators read as network loss.
        if FramingErrorRecorder.isProtocolError(error) { connection.protocolErrorClose() }
        context.close(promise: nil)
    }
}

/// Sits between NIO's frame decoder and its `WebSocketProtocolErrorHandler` and records a framing error
/// (fragmented or oversized control frame, frame over the size limit) as the close reason. It has to be in
/// front: that handler writes the 1002/1009 close frame and closes the socket as soon as the write
/// completes — often at once, before it passes the error on — so by the time the error would reach
/// `ConnectionHandler` the connection has closed and been counted as `abrupt`.
final class FramingErrorRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame

    /// Records the close reason on the connection (a `ClientConnection` or a `YjsConnection`).
    private let record: () -> Void

    init(connection: ClientConnection) {
        self.record = { connection.protocolErrorClose() }
    }

    init(connection: YjsConnection) {
        self.record = { connection.protocolErrorClose() }
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
