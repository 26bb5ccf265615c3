import Logging
import NIOCore
import NIOWebSocket
import TandemCore

/// One client's WebSocket session: decodes its frames, enforces its limits, routes its requests to the
/// doc shards, and writes what shards send it.
///
/// Confined to its channel's event loop: every method must run there (shards hop with `execute`). The
/// `@unchecked Sendable` only lets shards hold a reference; they touch nothing but the immutable fields
/// and hop before calling anything else.
final class ClientConnection: @unchecked Sendable {
    let id: UInt64
    let sessionID: String
    let identity: Identity
    let resumed: Bool
    let channel: Channel
    let node: NodeContext
    var eventLoop: EventLoop { channel.eventLoop }

    private struct JoinedDoc {
        var role: Role
        /// Set once the shard answered `joined` (before that, presence updates are still accepted and
        /// queue behind the join on the shard's loop).
        var confirmed: Bool
    }

    private var docs: [String: JoinedDoc] = [:]
    private var abuse: AbuseMonitor
    private var pendingPresence: [String: PendingPresence] = [:]
    private var writable = true
    private var closing = false
    private var closeReason: CloseReason?
    private var lastRateLimitNoticeMs: [String: UInt64] = [:]
    private var missedPings = 0
    private var pingTask: RepeatedTask?
    /// Document messages (catch-up, results, patches) in order. They are never dropped or merged; they
    /// wait here while the socket is backed up, and count against the hard outbound limit.
    private var syncQueue: [SyncOutbound] = []
    private var syncQueueHead = 0
    private var syncQueuedBytes = 0
    private var flushScheduled = false
    private var countedAsReconnect = false
    private var started = false
    private let logger: Logger

    init(id: UInt64, sessionID: String, identity: Identity, resumed: Bool, channel: Channel, node: NodeContext) {
        self.id = id
        self.sessionID = sessionID
        self.identity = identity
        self.resumed = resumed
        self.channel = channel
        self.node = node
        self.abuse = AbuseMonitor(limits: node.config.abuseLimits)
        var logger = node.logger
        logger[metadataKey: "connection.id"] = "\(id)"
        logger[metadataKey: "session.id"] = "\(sessionID)"
        self.logger = logger
    }

    // MARK: Lifecycle (called by the channel handler)

    func start() {
        eventLoop.assertInEventLoop()
        guard !started else { return }
        started = true
        node.metrics.connections.increment()
        node.metrics.connectionsOpened.increment()
        if resumed { markReconnect() }
        send(
            ServerMessage.welcome(
                session: sessionID, node: node.config.nodeID, user: identity.user, resumed: resumed,
                limits: .init(
                    presenceRate: node.config.presenceRate, tickMs: node.config.tickMs,
                    maxMessageBytes: node.config.limits.maxMessageBytes,
                    maxStateBytes: node.config.limits.maxStateBytes)))
        let interval = TimeAmount.milliseconds(Int64(node.config.pingIntervalMs))
        pingTask = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.sendPing()
        }
        logger.debug("client connected", metadata: ["user": "\(identity.user)", "resumed": "\(resumed)"])
    }

    /// The channel closed. A clean close (close frame, or a close we initiated for abuse) leaves every
    /// doc at once; anything else detaches, keeping presence for the TTL so the client can resume.
    func channelClosed() {
        eventLoop.assertInEventLoop()
        pingTask?.cancel()
        pingTask = nil
        let reason = closeReason ?? .abrupt
        node.metrics.connections.decrement()
        node.metrics.connectionClosed(reason)
        node.registry.remove(self)
        let leaves: Bool
        switch reason {
        case .clientClose, .abuse, .unsupportedData, .shutdown: leaves = true
        case .abrupt, .pingTimeout, .slowConsumer, .protocolError, .resumed: leaves = false
        }
        for doc in docs.keys {
            node.shard(for: doc).removeMember(self, doc: doc, leave: leaves)
        }
        docs.removeAll()
        pendingPresence.removeAll()
        syncQueue.removeAll()
        syncQueuedBytes = 0
        logger.debug("client disconnected", metadata: ["reason": "\(reason.rawValue)"])
    }

    func writabilityChanged(isWritable: Bool) {
        writable = isWritable
        guard isWritable else { return }
        pumpSync()
        guard !pendingPresence.isEmpty else { return }
        let pending = pendingPresence
        pendingPresence.removeAll()
        for (doc, var merged) in pending {
            if let delta = merged.drain(doc: doc) { writePresence(delta, buffer: nil) }
        }
    }

    // MARK: Inbound

    func receivedText(_ frame: ByteBuffer) {
        guard !closing else { return }
        missedPings = 0
        let nowMs = node.clock.nowMs()
        if abuse.message(nowMs: nowMs) == .flooding {
            logger.warning("closing flooding client", metadata: ["limit": "\(node.config.maxMessagesPerSecond)/s"])
            close(code: .policyViolation, reason: .abuse, text: "message rate above limit for 5 s")
            return
        }
        guard frame.readableBytes <= node.config.limits.maxMessageBytes else {
            let (doc, pushID) = Self.docAndPushID(in: frame)
            reject(
                ProtocolError(
                    .tooLarge,
                    "message is \(frame.readableBytes) bytes; the limit is \(node.config.limits.maxMessageBytes)",
                    doc: doc, pushID: pushID),
                nowMs: nowMs)
            return
        }
        let message: ClientMessage
        do {
            message = try frame.withUnsafeReadableBytes { bytes throws(ProtocolError) in
                try ClientMessage.decode(bytes, limits: node.config.limits)
            }
        } catch {
            reject(error, nowMs: nowMs)
            return
        }
        handle(message, nowMs: nowMs)
    }

    /// Best effort: the `doc` and `id` of an oversized push, so the client learns which push was refused
    /// (errors carry `doc` whenever the message named one; push ids are only unique per doc).
    private static func docAndPushID(in frame: ByteBuffer) -> (doc: String?, pushID: JSONValue?) {
        let object = frame.withUnsafeReadableBytes { try? JSONParser.parse($0) }?.objectValue
        let doc = object?["doc"]?.stringValue.flatMap { DocID.isValid($0) ? $0 : nil }
        return (doc, object?["id"].flatMap { ClientMessage.isValidPushID($0) ? $0 : nil })
    }

    private func handle(_ message: ClientMessage, nowMs: UInt64) {
        switch message {
        case .ping:
            send(ServerMessage.pong)
        case .join(let doc, let state, let since):
            guard let role = identity.access.role(for: doc) else {
                reject(ProtocolError(.forbidden, "your token grants no access to this doc", doc: doc), nowMs: nil)
                return
            }
            if docs[doc] == nil { docs[doc] = JoinedDoc(role: role, confirmed: false) }
            node.shard(for: doc).join(self, doc: doc, role: role, state: state, since: since)
        case .leave(let doc):
            guard docs.removeValue(forKey: doc) != nil else {
                reject(ProtocolError(.notJoined, "not in this doc", doc: doc), nowMs: nil)
                return
            }
            pendingPresence.removeValue(forKey: doc)
            node.shard(for: doc).removeMember(self, doc: doc, leave: true, acknowledge: true)
        case .presence(let doc, let state):
            guard docs[doc] != nil else {
                node.metrics.presenceUpdate(.notJoined)
                reject(ProtocolError(.notJoined, "join the doc before sending presence", doc: doc), nowMs: nil)
                return
            }
            node.shard(for: doc).updatePresence(self, doc: doc, state: state)
        case .push(let doc, _, _, _), .sync(let doc, _, _), .ack(let doc, _):
            guard let joined = docs[doc] else {
                reject(ProtocolError(.notJoined, "join the doc first", doc: doc, pushID: message.pushID), nowMs: nil)
                return
            }
            node.shard(for: doc).sync(message, from: self, role: joined.role)
        }
    }

    /// Answers a bad message with an error; too many bad frames close the connection (1008).
    /// - Parameter nowMs: when set, the message counts as a bad frame for abuse detection.
    private func reject(_ error: ProtocolError, nowMs: UInt64?) {
        sendError(error)
        if let nowMs, abuse.badFrame(nowMs: nowMs) == .tooManyBadFrames {
            logger.warning("closing client after too many bad frames")
            close(code: .policyViolation, reason: .abuse, text: "too many bad frames")
        }
    }

    func receivedPong() { missedPings = 0 }

    func receivedClose() {
        if closeReason == nil { closeReason = .clientClose }
    }

    func receivedBinary() {
        close(code: .unacceptableData, reason: .unsupportedData, text: "binary frames are not supported on /v1/ws")
    }

    func protocolErrorClose() {
        if closeReason == nil { closeReason = .protocolError }
    }

    private func sendPing() {
        guard !closing else { return }
        if missedPings >= 2 {
            logger.info("closing client that missed two pings")
            close(code: .goingAway, reason: .pingTimeout, text: "ping timeout")
            return
        }
        missedPings += 1
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .ping, data: channel.allocator.buffer(capacity: 0)), promise: nil)
    }

    // MARK: Calls from shards (on this loop)

    func joinConfirmed(doc: String, frame: [UInt8]) {
        guard docs[doc] != nil else { return }
        docs[doc]?.confirmed = true
        send(frame)
    }

    /// The shard refused or dropped the membership (forbidden resume, session taken over elsewhere).
    func membershipEnded(doc: String, error: ProtocolError?) {
        docs.removeValue(forKey: doc)
        pendingPresence.removeValue(forKey: doc)
        if let error { sendError(error) }
    }

    func presenceRateLimited(doc: String) {
        let nowMs = node.clock.nowMs()
        if let last = lastRateLimitNoticeMs[doc], nowMs < last + 1000 { return }
        lastRateLimitNoticeMs[doc] = nowMs
        sendError(
            ProtocolError(
                .rateLimited,
                "presence above \(node.config.presenceRate)/s: intermediate states are dropped, the latest is kept",
                doc: doc))
    }

    func markReconnect() {
        guard !countedAsReconnect else { return }
        countedAsReconnect = true
        node.reconnectObserved()
    }

    /// Writes a presence delta, or merges it while the socket is backed up.
    func deliverPresence(_ delta: PresenceDelta, buffer: ByteBuffer) {
        guard !closing, docs[delta.doc] != nil else { return }
        if !writable || pendingPresence[delta.doc] != nil {
            pendingPresence[delta.doc, default: PendingPresence()].merge(delta)
            node.metrics.slowConsumerCoalesced.increment()
            return
        }
        writePresence(delta, buffer: buffer)
    }

    private func writePresence(_ delta: PresenceDelta, buffer: ByteBuffer?) {
        let data = buffer ?? channel.allocator.buffer(bytes: delta.encoded)
        node.metrics.fanoutMessages.increment()
        node.metrics.fanoutBytes.increment(by: Int64(data.readableBytes))
        write(data)
    }

    func sendError(_ error: ProtocolError) {
        node.metrics.protocolError(error.code)
        send(ServerMessage.error(error))
    }

    func send(_ bytes: [UInt8]) {
        write(channel.allocator.buffer(bytes: bytes))
    }

    /// Writes one text frame and enforces the hard outbound limit.
    func write(_ data: ByteBuffer) {
        guard !closing else { return }
        channel.write(WebSocketFrame(fin: true, opcode: .text, data: data), promise: nil)
        scheduleFlush()
        let buffered = outboundBytes()
        if buffered > node.config.maxOutboundBytes {
            logger.warning("closing slow consumer", metadata: ["outbound.bytes": "\(buffered)"])
            close(code: .unknown(1013), reason: .slowConsumer, text: "outbound queue over limit; reconnect with since")
        }
    }

    /// Bytes queued for this client (for tandem_queue_depth{queue="outbound"}).
    func outboundBytes() -> Int {
        ((try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0) + syncQueuedBytes
    }

    // MARK: Document messages

    enum SyncOutbound {
        /// A frame; `committedAtMs` (wall clock) is set for commits, to measure sync lag when written.
        case frame(ByteBuffer, committedAtMs: UInt64?)
        /// A catch-up (snapshot or log entries) encoded chunk by chunk as the socket drains.
        case chunks(any CatchUpChunker)
    }

    /// Queues a document message behind earlier ones and writes as much as the socket takes.
    func enqueueSync(_ item: SyncOutbound) {
        guard !closing else { return }
        if case .frame(let buffer, _) = item { syncQueuedBytes += buffer.readableBytes }
        syncQueue.append(item)
        pumpSync()
        if !closing, outboundBytes() > node.config.maxOutboundBytes {
            logger.warning("closing slow consumer", metadata: ["outbound.bytes": "\(outboundBytes())"])
            close(code: .unknown(1013), reason: .slowConsumer, text: "outbound queue over limit; reconnect with since")
        }
    }

    func enqueueSync(_ bytes: [UInt8], committedAtMs: UInt64? = nil) {
        enqueueSync(.frame(channel.allocator.buffer(bytes: bytes), committedAtMs: committedAtMs))
    }

    /// One flush for everything written in this round of the event loop: shards hop in with many small
    /// messages (a patch per commit, a delta per doc), and a syscall per message dominated busy docs.
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.execute { [self] in
            flushScheduled = false
            channel.flush()
        }
    }

    private func pumpSync() {
        var wrote = false
        while syncQueueHead < syncQueue.count, channel.isWritable, !closing {
            switch syncQueue[syncQueueHead] {
            case .frame(let buffer, let committedAtMs):
                syncQueuedBytes -= buffer.readableBytes
                syncQueueHead += 1
                let frame = WebSocketFrame(fin: true, opcode: .text, data: buffer)
                if let committedAtMs {
                    let metrics = node.metrics
                    let clock = node.clock
                    channel.write(frame).whenSuccess {
                        metrics.syncLagSeconds.record(Double(clock.wallMs() &- committedAtMs) / 1000)
                    }
                } else {
                    channel.write(frame, promise: nil)
                }
            case .chunks(var chunker):
                if let chunk = chunker.next() {
                    channel.write(WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(bytes: chunk)), promise: nil)
                }
                if chunker.isFinished {
                    syncQueueHead += 1
                } else {
                    syncQueue[syncQueueHead] = .chunks(chunker)
                }
            }
            wrote = true
        }
        if wrote { scheduleFlush() }
        if syncQueueHead > 256 && syncQueueHead * 2 > syncQueue.count {
            syncQueue.removeFirst(syncQueueHead)
            syncQueueHead = 0
        } else if syncQueueHead == syncQueue.count {
            syncQueue.removeAll(keepingCapacity: true)
            syncQueueHead = 0
        }
    }

    /// Sends a close frame (behind whatever is already queued) and closes the channel when the client
    /// answers or after two seconds. Nothing more is queued meanwhile, so a slow consumer's memory stops
    /// growing at once; if it resumes reading within the grace period it sees the 1013.
    func close(code: WebSocketErrorCode, reason: CloseReason, text: String) {
        guard !closing else { return }
        closing = true
        closeReason = reason
        pendingPresence.removeAll()
        syncQueue.removeAll()
        syncQueueHead = 0
        syncQueuedBytes = 0
        var data = channel.allocator.buffer(capacity: 2 + text.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(text)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        let channel = self.channel
        channel.writeAndFlush(frame, promise: nil)
        // Give the client a moment to read and answer the close handshake, then drop the socket regardless.
        channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
    }

    var isClosing: Bool { closing }
}

extension ClientMessage {
    var pushID: JSONValue? {
        if case .push(_, let id, _, _) = self { return id }
        return nil
    }
}
