import Logging
import NIOCore
import NIOWebSocket
import TandemCore
import TandemYjs

/// One y-websocket client on `/yjs/{room}`: binary frames, one y-protocols message each. Checks its
/// limits, decodes and validates what it sends on its own loop (so a room's loop only sees valid
/// updates), and hands the rest to the room's shard.
///
/// Confined to its channel's event loop (rooms hop with `execute`), and the compiler checks it, as for
/// `ClientConnection`: what changes is in `LoopState` (not `Sendable`), reached only through a
/// `NIOLoopBound` that checks the loop on every access.
final class YjsConnection: YjsMember, Sendable {
    struct Settings: Sendable {
        var maxMessageBytes: Int
        /// Largest awareness state (`--max-state-bytes`, as for presence).
        var maxStateBytes: Int
        var updateRate: Int
        var maxOutboundBytes: Int
        var pingIntervalMs: Int
        var abuseLimits: AbuseMonitor.Limits

        init(_ config: ServerConfiguration) {
            maxMessageBytes = config.yjsMaxMessageBytes
            maxStateBytes = config.limits.maxStateBytes
            updateRate = config.yjsUpdateRate
            maxOutboundBytes = config.maxOutboundBytes
            pingIntervalMs = config.pingIntervalMs
            abuseLimits = config.abuseLimits
        }
    }

    let id: UInt64
    let identity: Identity
    let room: String
    let role: Role
    let channel: Channel
    private let settings: Settings
    private let metrics: TandemMetrics
    private let clock: NodeClock
    private let rooms: YjsRooms
    private let shard: YjsRoomShard
    private let logger: Logger
    var eventLoop: EventLoop { channel.eventLoop }
    /// The connection's mutable state, on `eventLoop` only (see `LoopState`).
    private let confined: NIOLoopBound<LoopState>

    /// Everything about the connection that changes. A method binds it once (`let local = confined.value`:
    /// one check of the loop per call).
    private final class LoopState {
        var started = false
        var closing = false
        var closeReason: CloseReason?
        var abuse: AbuseMonitor
        var updates: TokenBucket?
        var flushScheduled = false
        /// Our pings and the client's (`KeepAlive`, as on /v1/ws).
        let keepAlive: KeepAlive

        init(abuse: AbuseMonitor, keepAlive: KeepAlive) {
            self.abuse = abuse
            self.keepAlive = keepAlive
        }
    }

    /// Seconds of `--yjs-update-rate` a client may send back to back (a paste, a burst of undo).
    static let updateBurstSeconds = 2.0
    static let closeHandshakeGrace: TimeAmount = .seconds(2)

    init(
        id: UInt64, identity: Identity, room: String, role: Role, channel: Channel, settings: Settings,
        metrics: TandemMetrics, clock: NodeClock, rooms: YjsRooms, logger: Logger
    ) {
        self.id = id
        self.identity = identity
        self.room = room
        self.role = role
        self.channel = channel
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.rooms = rooms
        self.shard = rooms.shard(for: room)
        self.confined = NIOLoopBound(
            LoopState(abuse: AbuseMonitor(limits: settings.abuseLimits), keepAlive: KeepAlive(channel: channel, metrics: metrics)),
            eventLoop: channel.eventLoop)
        var logger = logger
        logger[metadataKey: "connection.id"] = "\(id)"
        logger[metadataKey: "yjs.room"] = "\(room)"
        self.logger = logger
    }

    // MARK: Lifecycle

    func start() {
        let local = confined.value
        guard !local.started else { return }
        local.started = true
        metrics.connections.increment()
        metrics.connectionsOpened.increment()
        rooms.register(self)
        shard.join(self, room: room)
        let interval = TimeAmount.milliseconds(Int64(settings.pingIntervalMs))
        local.keepAlive.start(
            interval: interval, timedOut: { [weak self] in self?.close(.pingTimeout) },
            wrotePong: { [weak self] in self?.scheduleFlush() })
        logger.debug("yjs client connected", metadata: ["user": "\(identity.user)", "role": "\(role.rawValue)"])
    }

    func channelClosed() {
        let local = confined.value
        guard local.started else { return }
        local.keepAlive.stop()
        let reason = local.closeReason ?? .abrupt
        metrics.connections.decrement()
        metrics.connectionClosed(reason)
        rooms.remove(self)
        shard.leave(self, room: room)
        logger.debug("yjs client disconnected", metadata: ["reason": "\(reason.rawValue)"])
    }

    // MARK: Inbound

    func received(_ frame: ByteBuffer) {
        let local = confined.value
        guard !local.closing else { return }
        local.keepAlive.heard()
        let nowMs = clock.nowMs()
        if local.abuse.message(nowMs: nowMs) == .flooding {
            close(.messageFlood)
            return
        }
        guard frame.readableBytes <= settings.maxMessageBytes else {
            metrics.clientLimitReached(.yjsMessageBytes)
            close(.yjsTooLarge)
            return
        }
        let message: YProtocolMessage
        do {
            message = try YProtocolMessage(decoding: Array(frame.readableBytesView))
        } catch {
            logger.info("closing yjs client: invalid message", metadata: ["error": "\(error)"])
            close(.yjsInvalidMessage)
            return
        }
        switch message {
        case .syncStep1(let bytes):
            // A step 1 costs the room a diff of the whole document: it counts against the update rate.
            guard takeUpdateToken(nowMs: nowMs) else { return }
            guard let vector = try? YStateVector(decoding: bytes) else {
                close(.yjsInvalidMessage)
                return
            }
            shard.step1(self, room: room, stateVector: vector)
        case .syncStep2(let bytes), .update(let bytes):
            guard role == .editor else {
                // y-protocols' auth message: the client's provider reports it (y-websocket: permission-denied).
                metrics.syncPush("discard")
                send(.permissionDenied(reason: "read-only: your token grants view access to this room"))
                return
            }
            guard takeUpdateToken(nowMs: nowMs) else { return }
            let update: YUpdate
            do {
                update = try YUpdate(decoding: bytes)
            } catch {
                logger.info("closing yjs client: invalid update", metadata: ["error": "\(error)"])
                close(.yjsInvalidMessage)
                return
            }
            shard.update(self, room: room, update: update, bytes: bytes)
        case .awareness(let update):
            // Viewers have presence too (as on /v1/ws): awareness is not a write to the document.
            guard update.entries.allSatisfy({ $0.stateJSON.utf8.count <= settings.maxStateBytes }) else {
                metrics.clientLimitReached(.yjsMessageBytes)
                close(.yjsTooLarge)
                return
            }
            shard.awareness(self, user: identity.user, room: room, update: update)
        case .queryAwareness:
            shard.queryAwareness(self, room: room)
        case .permissionDenied:
            // Only servers send it.
            break
        }
    }

    /// Takes a token of `--yjs-update-rate`, or closes the connection (1008).
    private func takeUpdateToken(nowMs: UInt64) -> Bool {
        let local = confined.value
        var bucket = local.updates
            ?? TokenBucket(rate: Double(settings.updateRate), burst: Double(settings.updateRate) * Self.updateBurstSeconds, nowMs: nowMs)
        let taken = bucket.take(nowMs: nowMs)
        local.updates = bucket
        if !taken {
            metrics.clientLimitReached(.yjsUpdateRate)
            close(.yjsUpdateRate)
        }
        return taken
    }

    func receivedText() { close(.yjsTextFrame) }

    func receivedPong() { confined.value.keepAlive.heard() }

    /// A ping: answered by the keep-alive, at most one pong in flight, as on /v1/ws.
    func receivedPing(_ data: ByteBuffer) { confined.value.keepAlive.receivedPing(data) }

    func receivedClose() {
        let local = confined.value
        if local.closeReason == nil { local.closeReason = .clientClose }
    }

    func protocolErrorClose() {
        let local = confined.value
        if local.closeReason == nil { local.closeReason = .protocolError }
    }

    var isClosing: Bool { confined.value.closing }

    // MARK: Outbound

    private func send(_ message: YProtocolMessage) {
        deliver(ByteBuffer(bytes: message.encoded()), appendedAtMs: nil)
    }

    func deliver(_ message: ByteBuffer, appendedAtMs: UInt64?) {
        guard !confined.value.closing else { return }
        channel.write(WebSocketFrame(fin: true, opcode: .binary, data: message), promise: nil)
        if let appendedAtMs {
            let now = clock.wallMs()
            metrics.syncLagSeconds.record(Double(now >= appendedAtMs ? now - appendedAtMs : 0) / 1000)
        }
        scheduleFlush()
        // Updates cannot be dropped or merged for a slow client: past the limit it is closed, and catches
        // up with a step 1 when it reconnects. What was queued before this message counts: one message (a
        // step 2 of a large room) larger than the limit alone does not close a client that is reading.
        let buffered = (try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        if buffered - message.readableBytes > settings.maxOutboundBytes { close(.slowConsumer) }
    }

    private func scheduleFlush() {
        let local = confined.value
        guard !local.flushScheduled else { return }
        local.flushScheduled = true
        eventLoop.execute { [self] in
            confined.value.flushScheduled = false
            channel.flush()
        }
    }

    func close(_ close: ServerClose) {
        let local = confined.value
        guard !local.closing else { return }
        local.closing = true
        local.keepAlive.stop()
        local.closeReason = close.reason
        let channel = self.channel
        channel.writeAndFlush(CloseFrameReply.frame(code: close.code, text: close.text, allocator: channel.allocator), promise: nil)
        channel.eventLoop.scheduleTask(in: Self.closeHandshakeGrace) { channel.close(promise: nil) }
    }
}

/// The channel handler in front of a `YjsConnection` (as `ConnectionHandler` is for `/v1/ws`).
final class YjsConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let connection: YjsConnection

    init(connection: YjsConnection) { self.connection = connection }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { connection.start() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary:
            connection.received(frame.unmaskedData)
        case .text:
            connection.receivedText()
        case .ping:
            // Answered by the connection: at most one pong in flight (a ping flood must not fill the buffer).
            connection.receivedPing(frame.unmaskedData)
        case .pong:
            connection.receivedPong()
        case .connectionClose:
            connection.receivedClose()
            if !connection.isClosing {
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: CloseFrameReply.code(for: frame.unmaskedData))
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                    .whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.channelClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if FramingErrorRecorder.isProtocolError(error) { connection.protocolErrorClose() }
        context.close(promise: nil)
    }
}
