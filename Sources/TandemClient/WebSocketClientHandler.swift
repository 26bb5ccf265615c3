import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// What the event loop publishes for other threads; guarded by the `NIOLockedValueBox` that
/// holds it.
struct ConnectionState: Sendable {
    var statistics = WebSocketClient.Statistics()
    var closeCode: Int?
    var closeReason = ""
    var isClosed = false
    var firstError: (any Error)?
}

/// The last handler of an upgraded client pipeline:
///
///     DeferredInactiveHandler → WebSocketFrameEncoder → ServerTextFrameReader
///       → ByteToMessageHandler(WebSocketFrameDecoder) → WebSocketProtocolErrorHandler
///       → NIOWebSocketFrameAggregator → WebSocketClientHandler
///
/// (`ServerTextFrameReader` hands plain text frames to this handler directly, the rest to the decoder.)
///
/// It delivers messages, answers pings, runs the close handshake and counts. It lives on the
/// channel's event loop; ``WebSocketClient`` reaches it through `NIOLoopBound`, on that loop only.
final class WebSocketClientHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private enum CloseState {
        case open
        /// This client sent a close frame and waits for the server's.
        case closeSent
        /// The server sent a close frame; this client echoed it and is dropping the connection.
        case closeReceived
        case closed
    }

    private let autoPong: Bool
    private let closeTimeout: TimeAmount
    /// Dropped once the connection has ended (`connectionEnded`): a callback that captures its own client
    /// (a bench connection answering from `onText`) would otherwise keep client → handler → callback →
    /// client alive forever.
    private var callbacks: WebSocketClient.Callbacks?
    private let continuation: AsyncStream<WebSocketEvent>.Continuation?
    private let shared: NIOLockedValueBox<ConnectionState>

    private var context: ChannelHandlerContext?
    private var state = CloseState.open
    private var closeTimer: Scheduled<Void>?
    private var receivedCloseCode: Int?
    private var receivedCloseReason = ""
    /// Counted here without a lock; copied to `shared` once per read (see `Statistics`).
    private var statistics = WebSocketClient.Statistics()
    private var statisticsChanged = false
    /// The masking keys' source (a `getrandom` call per 128 frames, not per frame).
    private var maskingRandom = BufferedSystemRandom()

    init(
        configuration: WebSocketClient.Configuration,
        callbacks: WebSocketClient.Callbacks?,
        continuation: AsyncStream<WebSocketEvent>.Continuation?,
        shared: NIOLockedValueBox<ConnectionState>
    ) {
        self.autoPong = configuration.autoPong
        self.closeTimeout = configuration.closeTimeout
        self.callbacks = callbacks
        self.continuation = continuation
        self.shared = shared
    }

    // MARK: Pipeline events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if !context.channel.isActive {
            // The channel closed before the upgrade added this handler, so no `channelInactive` will come.
            // `DeferredInactiveHandler` makes that unlikely (it lets the upgrade finish first); should it happen
            // anyway, end the connection after the bytes the upgrade handler replays right after this call.
            context.eventLoop.assumeIsolated().execute {
                self.connectionEnded()
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.callbacks = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else {
            // RFC 6455 section 5.2: no extension was negotiated, so reserved bits mean a broken peer.
            self.sendCloseAndDrop(code: 1002, context: context)
            return
        }
        switch frame.opcode {
        case .text:
            self.receivedText(frame.unmaskedData)
        case .binary:
            let payload = frame.unmaskedData
            self.countMessage(bytes: payload.readableBytes)
            if let callbacks = self.callbacks {
                callbacks.onBinary?(payload)
            } else {
                self.continuation?.yield(.binary(Array(payload.readableBytesView)))
            }
        case .ping:
            self.statistics.pingsReceived += 1
            self.statisticsChanged = true
            if self.autoPong, self.state == .open {
                // RFC 6455 section 5.5.3: the pong carries the ping's application data.
                self.write(opcode: .pong, payload: frame.unmaskedData, context: context, promise: nil)
            }
        case .pong:
            self.statistics.pongsReceived += 1
            self.statisticsChanged = true
        case .connectionClose:
            self.receivedClose(frame, context: context)
        default:
            // A reserved opcode (continuations are joined or rejected by the aggregator).
            // RFC 6455 section 5.2: fail the connection, with 1002 (protocol error).
            self.sendCloseAndDrop(code: 1002, context: context)
        }
    }

    /// A text message: from the aggregator, or straight from `ServerTextFrameReader` (a plain frame).
    func receivedText(_ payload: ByteBuffer) {
        self.countMessage(bytes: payload.readableBytes)
        if let callbacks = self.callbacks {
            callbacks.onText?(payload)
        } else {
            self.continuation?.yield(.text(String(buffer: payload)))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.publishStatistics()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connectionEnded()
        context.fireChannelInactive()
    }

    /// Publishes the end of the connection and yields `.closed`: once, whether `channelInactive` reached this
    /// handler or the channel was already closed when it was added.
    private func connectionEnded() {
        guard self.state != .closed else { return }
        self.state = .closed
        self.closeTimer?.cancel()
        self.closeTimer = nil
        let statistics = self.statistics
        let code = self.receivedCloseCode
        let reason = self.receivedCloseReason
        self.shared.withLockedValue {
            $0.statistics = statistics
            $0.isClosed = true
        }
        self.continuation?.yield(.closed(code: code, reason: reason))
        self.continuation?.finish()
        let onClose = self.callbacks?.onClose
        // Nothing is delivered after this point, so the closures (and whatever they capture) can go.
        self.callbacks = nil
        onClose?(code, reason)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.shared.withLockedValue { state in
            if state.firstError == nil { state.firstError = error }
        }
        switch error {
        case is NIOWebSocketError:
            // WebSocketProtocolErrorHandler, earlier in the pipeline, has already sent the
            // matching close frame and closes the channel once it is written.
            break
        case let aggregatorError as NIOWebSocketFrameAggregator.Error:
            let code: UInt16 = aggregatorError == .accumulatedFrameSizeIsTooLarge ? 1009 : 1002
            self.sendCloseAndDrop(code: code, context: context)
        default:
            // I/O errors (ECONNRESET, ...): the connection is unusable.
            context.close(promise: nil)
        }
    }

    // MARK: Operations called by WebSocketClient (on the event loop)

    func send(opcode: WebSocketOpcode, payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard self.state == .open, let context = self.context else {
            promise?.fail(WebSocketClientError.notOpen)
            return
        }
        self.write(opcode: opcode, payload: payload, context: context, promise: promise)
    }

    /// Starts the close handshake: resumes reading, sends a close frame and waits up to
    /// `closeTimeout` for the server's answer, then drops the connection. Does nothing once a
    /// close has started.
    func startClose(code: UInt16, reason: String) {
        guard self.state == .open, let context = self.context else { return }
        self.state = .closeSent
        // The server's answer has to be read: undo a `setReading(paused: true)`.
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        var payload = context.channel.allocator.buffer(capacity: 2 + Self.maxCloseReasonBytes)
        payload.writeInteger(code)
        payload.writeString(Self.truncatedCloseReason(reason))
        self.write(opcode: .connectionClose, payload: payload, context: context, promise: nil)
        let channel = context.channel
        self.closeTimer = context.eventLoop.scheduleTask(in: self.closeTimeout) {
            channel.close(promise: nil)
        }
    }

    // MARK: Helpers

    private func countMessage(bytes: Int) {
        self.statistics.messagesReceived += 1
        self.statistics.bytesReceived += bytes
        self.statisticsChanged = true
    }

    private func publishStatistics() {
        guard self.statisticsChanged else { return }
        self.statisticsChanged = false
        let statistics = self.statistics
        self.shared.withLockedValue { $0.statistics = statistics }
    }

    private func receivedClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        guard self.state == .open || self.state == .closeSent else { return }
        var payload = frame.unmaskedData
        let code = payload.readInteger(as: UInt16.self)
        let reason = payload.readString(length: payload.readableBytes) ?? ""
        self.receivedCloseCode = code.map(Int.init)
        self.receivedCloseReason = reason
        self.shared.withLockedValue {
            $0.closeCode = code.map(Int.init)
            $0.closeReason = reason
        }

        if self.state == .closeSent {
            // The server answered our close: the handshake is complete.
            self.state = .closeReceived
            context.close(promise: nil)
            return
        }

        // The server started the close. RFC 6455 section 5.5.1: answer with a close frame,
        // echoing the status code, then the connection can go.
        self.state = .closeReceived
        var echo = context.channel.allocator.buffer(capacity: 2)
        if let code, !Self.reservedCloseCodes.contains(code) {
            echo.writeInteger(code)
        }
        self.sendCloseFrameThenClose(payload: echo, context: context)
    }

    /// Closes because of a local error (message too big, bad fragments): tells the server why.
    private func sendCloseAndDrop(code: UInt16, context: ChannelHandlerContext) {
        guard self.state == .open else {
            context.close(promise: nil)
            return
        }
        self.state = .closeSent
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.writeInteger(code)
        self.sendCloseFrameThenClose(payload: payload, context: context)
    }

    private func sendCloseFrameThenClose(payload: ByteBuffer, context: ChannelHandlerContext) {
        let written = context.eventLoop.makePromise(of: Void.self)
        self.write(opcode: .connectionClose, payload: payload, context: context, promise: written)
        // Closing right away would discard a close frame still queued behind a full socket.
        written.futureResult.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func write(
        opcode: WebSocketOpcode,
        payload: ByteBuffer,
        context: ChannelHandlerContext,
        promise: EventLoopPromise<Void>?
    ) {
        // RFC 6455 section 5.3: every client frame is masked with a fresh key.
        let frame = WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(using: &maskingRandom), data: payload)
        context.writeAndFlush(Self.wrapOutboundOut(frame), promise: promise)
    }

    /// A close frame's payload is at most 125 bytes: the 2-byte code and up to 123 of reason.
    static let maxCloseReasonBytes = 123

    /// 1005, 1006 and 1015 only report local conditions and must not be sent (RFC 6455 section 7.4.1).
    private static let reservedCloseCodes: Set<UInt16> = [1005, 1006, 1015]

    static func truncatedCloseReason(_ reason: String) -> String {
        guard reason.utf8.count > Self.maxCloseReasonBytes else { return reason }
        var result = ""
        var bytes = 0
        for character in reason {
            let size = character.utf8.count
            if bytes + size > Self.maxCloseReasonBytes { break }
            result.append(character)
            bytes += size
        }
        return result
    }
}

@available(*, unavailable)
extension WebSocketClientHandler: Sendable {}
