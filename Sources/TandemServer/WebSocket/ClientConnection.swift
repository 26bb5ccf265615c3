import Logging
import NIOCore
import NIOWebSocket
import TandemCore

/// One client's WebSocket session: decodes its frames, enforces its limits, routes its requests to the
/// doc shards, and writes what shards send it.
///
/// Confined to its channel's event loop, and the compiler checks it: everything that changes is in
/// `LoopState`, which is not `Sendable` and is reached only through a `NIOLoopBound` (each access checks
/// that it runs on the loop, and stops the process if not). Shards and the registry hold the connection
/// and read its immutable fields anywhere; every method runs on the loop (they hop with `execute`).
final class ClientConnection: DocMember, Sendable {
    let id: UInt64
    let sessionID: String
    let identity: Identity
    let resumed: Bool
    let channel: Channel
    let settings: ConnectionDependencies.Settings
    private let metrics: TandemMetrics
    private let clock: NodeClock
    private let registry: SessionRegistry
    private let shard: @Sendable (_ doc: String) -> DocShard
    private let schemaVersion: @Sendable (_ doc: String) -> Int?
    private let reconnectObserved: @Sendable () -> Void
    /// The channel's loop, kept (a `DocMember` requirement read for every frame a doc sends this member:
    /// `channel.eventLoop` is a call through the `Channel` existential each time; issue 8 stop 26).
    let eventLoop: EventLoop
    /// The connection's mutable state, on `eventLoop` only (see `LoopState`).
    let confined: NIOLoopBound<LoopState>

    /// Everything about the connection that changes. A method binds it once (`let local = confined.value`:
    /// one check of the loop per call).
    final class LoopState {
        fileprivate struct JoinedDoc {
            var role: Role
            /// How the session takes part in the doc's presence (the latest join's).
            var presence: PresenceMode
            /// The number of the latest join of the doc handed to its shard (`LoopState.joinsSent`).
            var latestJoin: UInt64
            /// The number of the latest join the shard answered with `joined` (0: none yet).
            var answeredJoin: UInt64 = 0
            /// The latest join is answered. Before that, presence updates are still accepted (they queue
            /// behind the join on the shard's loop), and deltas for the doc wait in `pendingPresence` (see
            /// `deliverPresence`): the `joined` still to come replaces the client's list. A number, not a
            /// flag, so that the answer to an earlier join of two in flight does not release them early.
            var confirmed: Bool { answeredJoin == latestJoin }
            /// What the shard answered `joined` with (see `DocTicket`); sent along with presence updates.
            var ticket: DocTicket? = nil
        }

        /// Writes the text frames this connection sends, framed already (see `PreframedWriter`; a channel
        /// handler, so on the loop too).
        fileprivate let preframed: PreframedWriter
        fileprivate var docs: [String: JoinedDoc] = [:] {
            didSet {  // (no `oldValue`: mutations stay in place)
                presenceDeliveryDoc = nil
                presenceTarget = nil
            }
        }
        /// The doc `deliverPresence` last found in `docs`, cleared whenever `docs` changes: the check per
        /// member per delta is then one string comparison (the delta's doc is the shard's own string, so
        /// equal storage) instead of hashing the doc id (issue 14: the lookup was a fifth of `deliverPresence`).
        fileprivate var presenceDeliveryDoc: String?
        /// The doc this connection last sent presence for, found joined with its presence shown, its shard
        /// and its ticket (see `DocTicket`); cleared whenever `docs` changes. The next update naming the same doc reuses its string
        /// (`ClientMessage.decode`'s `knownDoc`: no new string, no character check) and skips the doc's
        /// lookup and the shard's hash (issue 14: a doc id over 15 bytes was an allocation per update).
        fileprivate var presenceTarget: DocShard.PresenceRoute?
        /// Joins of each doc (first joins, re-joins, join after leave) take a token at `--presence-rate`
        /// (burst `--presence-burst`): a join costs a Redis write and a catch-up, so it must not be a way
        /// around the presence rate. Kept past a leave; forgotten once full again (see `takeJoinToken`).
        fileprivate var joinBuckets: [String: TokenBucket] = [:]
        /// Joins of docs the connection is not in, across all docs (`--max-doc-joins-per-sec`, burst
        /// `--max-docs-per-connection` so a client can open all its docs at once): each may cost a
        /// SUBSCRIBE, a load of the doc and a catch-up, and cycling join/leave over many docs dodged the
        /// per-doc buckets.
        fileprivate var newDocJoins: TokenBucket?
        fileprivate var abuse: AbuseMonitor
        fileprivate var pendingPresence: [String: PendingPresence] = [:]
        /// Joins handed to shards so far (each join's number, see `JoinedDoc.latestJoin`).
        fileprivate var joinsSent: UInt64 = 0
        /// Presence updates read in this burst and not handed to their shard yet (`flushPresenceUpdates`):
        /// all for `presenceBatchShard`, in the order sent.
        fileprivate var presenceBatch: [DocShard.PresenceUpdate] = []
        fileprivate var presenceBatchShard: DocShard?
        /// When the batch's first update was read (`tandem_presence_inbound_hop_seconds`).
        fileprivate var presenceBatchReadNanos: UInt64 = 0
        /// Shards on other loops this connection handed batches to, which they may still hold gathered on
        /// this loop (`DocShard.updatePresence`): handed over before any other message to a shard.
        fileprivate var presenceGatheredAt: [DocShard] = []
        fileprivate var writable = true
        fileprivate var closing = false
        fileprivate var closeReason: CloseReason?
        fileprivate var lastRateLimitNoticeMs: [String: UInt64] = [:]
        /// Our pings and the client's (`KeepAlive`).
        fileprivate let keepAlive: KeepAlive
        /// Document messages (catch-up, results, patches) in order. They are never dropped or merged
        /// (except a join's catch-up that a newer join of the same doc replaces); they wait here while the
        /// socket is backed up, and count against the hard outbound limit.
        fileprivate var syncQueue: [SyncOutbound] = []
        fileprivate var syncQueueHead = 0
        fileprivate var syncQueuedBytes = 0
        fileprivate var flushScheduled = false
        /// `deliverPresence` wrote a delta that `flushPresence` has not flushed yet.
        fileprivate var presenceUnflushed = false
        fileprivate var countedAsReconnect = false
        /// When a `diverged` report of this connection was last counted (see --diverged-report-ms).
        fileprivate var lastDivergedReportMs: UInt64?
        fileprivate var started = false
        /// A version-history request is being answered (`ClientConnection+History`: one at a time).
        var historyRequestInFlight = false
        /// Docs whose pushes this connection was told to send again only later (`unavailable` with
        /// `retryAfterMs`): pushes arriving sooner are refused here, without the hop to the shard.
        fileprivate var pushBackoff = PushBackoff()

        fileprivate init(preframed: PreframedWriter, abuse: AbuseMonitor, keepAlive: KeepAlive) {
            self.preframed = preframed
            self.abuse = abuse
            self.keepAlive = keepAlive
        }
    }

    private let logger: Logger
    /// Version history (`ClientConnection+History`; nil refuses its requests).
    let history: HistoryService?

    /// Join buckets beyond the joined docs that may pile up before the full ones are dropped: pruning is
    /// a pass over the dictionary, so it runs at most once per this many joins of new docs.
    static let joinBucketSlack = 64
    /// Presence updates handed to a shard in one hop at most: a client that sends many small frames in one
    /// read burst still reaches its shard in bounded steps (and the hop's array stays small).
    static let maxPresenceBatch = 64
    /// A client over the presence rate hears about it at most this often per doc (the error is advice,
    /// and answering every dropped update would amplify the flood).
    static let rateLimitNoticeIntervalMs: UInt64 = 1_000
    /// Written sync queue entries are dropped from the front once more than this many (and more than
    /// half the queue): amortized O(1) per message without a ring buffer.
    static let syncQueueCompactionThreshold = 256
    /// How long a client has to answer our close frame before the socket is dropped (RFC 6455 §7.1.1
    /// lets the server close the TCP connection after sending its close).
    static let closeHandshakeGrace: TimeAmount = .seconds(2)

    init(
        id: UInt64, sessionID: String, identity: Identity, resumed: Bool, channel: Channel,
        dependencies: ConnectionDependencies, preframed: PreframedWriter
    ) {
        self.id = id
        self.sessionID = sessionID
        self.identity = identity
        self.resumed = resumed
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.settings = dependencies.settings
        self.metrics = dependencies.metrics
        self.clock = dependencies.clock
        self.registry = dependencies.registry
        self.shard = dependencies.shard
        self.schemaVersion = dependencies.schemaVersion
        self.reconnectObserved = dependencies.reconnectObserved
        self.history = dependencies.history
        self.confined = NIOLoopBound(
            LoopState(
                preframed: preframed, abuse: AbuseMonitor(limits: dependencies.settings.abuseLimits),
                keepAlive: KeepAlive(channel: channel, metrics: dependencies.metrics)),
            eventLoop: channel.eventLoop)
        var logger = dependencies.logger
        logger[metadataKey: "connection.id"] = "\(id)"
        logger[metadataKey: "session.id"] = "\(sessionID)"
        self.logger = logger
    }

    // MARK: Lifecycle (called by the channel handler)

    func start() {
        let local = confined.value
        guard !local.started else { return }
        local.started = true
        metrics.connections.increment()
        metrics.connectionsOpened.increment()
        if resumed { markReconnect() }
        send(
            ServerMessage.welcome(
                session: sessionID, node: settings.nodeID, user: identity.user, resumed: resumed,
                limits: .init(
                    presenceRate: settings.presenceRate, tickMs: settings.tickMs,
                    maxMessageBytes: settings.limits.maxMessageBytes,
                    maxStateBytes: settings.limits.maxStateBytes)))
        let interval = TimeAmount.milliseconds(Int64(settings.pingIntervalMs))
        local.keepAlive.start(
            interval: interval,
            timedOut: { [weak self] in
                self?.logger.info("closing client that missed two pings")
                self?.close(.pingTimeout)
            },
            wrotePong: { [weak self] in
                self?.scheduleFlush()
                self?.enforceOutboundLimit()
            })
        logger.debug("client connected", metadata: ["user": "\(identity.user)", "resumed": "\(resumed)"])
    }

    /// The channel closed. A clean close (close frame, or a close we initiated for abuse) leaves every
    /// doc at once; anything else detaches, keeping presence for the TTL so the client can resume.
    func channelClosed() {
        let local = confined.value
        local.keepAlive.stop()
        let reason = local.closeReason ?? .abrupt
        metrics.connections.decrement()
        metrics.connectionClosed(reason)
        registry.remove(self)
        let leaves: Bool
        switch reason {
        case .clientClose, .abuse, .unsupportedData, .shutdown, .invalidMessage, .limit, .storageUnavailable: leaves = true
        case .abrupt, .pingTimeout, .slowConsumer, .protocolError, .resumed: leaves = false
        }
        flushPresenceUpdates(handOverNow: true)
        for doc in local.docs.keys {
            shard(doc).removeMember(self, doc: doc, leave: leaves)
        }
        local.docs.removeAll()
        local.pendingPresence.removeAll()
        local.syncQueue.removeAll()
        local.syncQueuedBytes = 0
        logger.debug("client disconnected", metadata: ["reason": "\(reason.rawValue)"])
    }

    func writabilityChanged(isWritable: Bool) {
        let local = confined.value
        local.writable = isWritable
        guard isWritable else { return }
        if pumpSync() { flushWritten() }
        guard !local.pendingPresence.isEmpty else { return }
        let pending = local.pendingPresence
        local.pendingPresence.removeAll()
        for (doc, var merged) in pending {
            // A doc whose `joined` is still to come keeps its deltas for `joinConfirmed`.
            guard local.docs[doc]?.confirmed != false else {
                local.pendingPresence[doc] = merged
                continue
            }
            if let delta = merged.drain(doc: doc) { writePresence(delta, buffer: nil) }
        }
    }

    // MARK: Inbound

    func receivedText(_ frame: ByteBuffer) {
        let local = confined.value
        guard !local.closing else { return }
        local.keepAlive.heard()
        // (One clock read: a push's read time also counts against its wait bound on the shard.)
        let nowNanos = clock.nowNanos()
        let nowMs = nowNanos / 1_000_000
        if local.abuse.message(nowMs: nowMs) == .flooding {
            logger.warning("closing flooding client", metadata: ["limit": "\(settings.maxMessagesPerSecond)/s"])
            close(.messageFlood)
            return
        }
        guard frame.readableBytes <= settings.limits.maxMessageBytes else {
            let (doc, pushID) = Self.docAndPushID(in: frame)
            reject(
                ProtocolError(
                    .tooLarge,
                    "message is \(frame.readableBytes) bytes; the limit is \(settings.limits.maxMessageBytes)",
                    doc: doc, pushID: pushID),
                nowMs: nowMs)
            return
        }
        // A push to a doc this connection was told to back off from: answered from its bytes, not decoded
        // (`PushBackoff.refusal(forMessage:)`; anything else it does not recognise is decoded as usual).
        if !local.pushBackoff.isEmpty,
            let (refusal, id) = frame.withUnsafeReadableBytes({
                local.pushBackoff.refusal(forMessage: $0.assumingMemoryBound(to: UInt8.self), limits: settings.limits, now: nowNanos)
            })
        {
            return refuseEarlyPush(refusal, id: id)
        }
        let message: ClientMessage
        do {
            message = try frame.withUnsafeReadableBytes { bytes throws(ProtocolError) in
                try ClientMessage.decode(bytes, limits: settings.limits, knownDoc: local.presenceTarget?.doc)
            }
        } catch {
            reject(error, nowMs: nowMs)
            return
        }
        handle(message, bytes: frame.readableBytes, nowMs: nowMs, readAtNanos: nowNanos)
    }

    /// The end of a read burst (`channelReadComplete`): the presence updates it carried go to their shard.
    func readComplete() {
        flushPresenceUpdates()
    }

    /// Hands the batched presence updates to their shard in one hop (issue 14: one `execute` per update
    /// was an eventfd wake-up each when the shard runs on another loop); a shard on another loop gathers
    /// them with its other batches from this loop until the loop's round ends (`DocShard.updatePresence`).
    /// - Parameter handOverNow: another kind of message to a shard follows (or the connection closes):
    ///   what this connection's batches left gathered goes to its shards first, so they see its messages in
    ///   the order sent.
    private func flushPresenceUpdates(handOverNow: Bool = false) {
        let local = confined.value
        if let target = local.presenceBatchShard {
            local.presenceBatchShard = nil
            if target.eventLoop === eventLoop {
                // The shard shares this loop: applied at once, and the batch's storage is kept for the next burst.
                target.applyPresenceUpdates(self, local.presenceBatch)
                local.presenceBatch.removeAll(keepingCapacity: true)
            } else {
                let batch = local.presenceBatch
                local.presenceBatch.removeAll(keepingCapacity: true)
                target.updatePresence(self, batch, readAtNanos: local.presenceBatchReadNanos)
                if !local.presenceGatheredAt.contains(where: { $0 === target }) { local.presenceGatheredAt.append(target) }
            }
        }
        guard handOverNow, !local.presenceGatheredAt.isEmpty else { return }
        for shard in local.presenceGatheredAt { shard.handOverGathered(from: eventLoop) }
        local.presenceGatheredAt.removeAll(keepingCapacity: true)
    }

    /// Best effort: the `doc` and `id` of an oversized push, so the client learns which push was refused
    /// (errors carry `doc` whenever the message named one; push ids are only unique per doc).
    private static func docAndPushID(in frame: ByteBuffer) -> (doc: String?, pushID: JSONValue?) {
        let object = frame.withUnsafeReadableBytes { try? JSONParser.parse($0) }?.objectValue
        let doc = object?["doc"]?.stringValue.flatMap { DocID.isValid($0) ? $0 : nil }
        return (doc, object?["id"].flatMap { ClientMessage.isValidPushID($0) ? $0 : nil })
    }

    /// - Parameters:
    ///   - bytes: the message's size as received.
    ///   - readAtNanos: when it was read (`clock.nowNanos()`).
    private func handle(_ message: ClientMessage, bytes: Int, nowMs: UInt64, readAtNanos: UInt64) {
        let local = confined.value
        // A shard must see one connection's messages in the order sent: presence still batched goes first.
        if case .presence = message {} else { flushPresenceUpdates(handOverNow: true) }
        switch message {
        case .ping:
            send(ServerMessage.pong)
        case .join(let doc, let state, let since, let schema, let presence):
            guard let role = identity.access.role(for: doc) else {
                reject(ProtocolError(.forbidden, "your token grants no access to this doc", doc: doc), nowMs: nil)
                return
            }
            if let schema, let mismatch = Self.schemaMismatch(stated: schema, enforced: schemaVersion(doc), doc: doc) {
                metrics.schemaMismatches.increment()
                reject(mismatch, nowMs: nil)
                return
            }
            let limit = settings.maxDocsPerConnection
            if local.docs[doc] == nil, local.docs.count >= limit {
                metrics.clientLimitReached(.docsPerConnection)
                reject(
                    ProtocolError(
                        .tooManyDocs, "a connection may be in at most \(limit) docs (--max-docs-per-connection); leave one first",
                        doc: doc),
                    nowMs: nil)
                return
            }
            guard takeJoinToken(doc: doc, nowMs: nowMs) else {
                metrics.clientLimitReached(.joinRate)
                reject(
                    ProtocolError(
                        .rateLimited,
                        "joins of one doc count against the presence rate (\(settings.presenceRate)/s): this one was not answered; join again later",
                        doc: doc),
                    nowMs: nil)
                return
            }
            if local.docs[doc] == nil {
                let config = settings
                var bucket = local.newDocJoins
                    ?? TokenBucket(rate: config.maxDocJoinsPerSecond, burst: Double(config.maxDocsPerConnection), nowMs: nowMs)
                let taken = bucket.take(nowMs: nowMs)
                let wait = taken ? 0 : bucket.msUntilToken(nowMs: nowMs)
                local.newDocJoins = bucket
                guard taken else {
                    metrics.clientLimitReached(.docJoinRate)
                    let rate = config.maxDocJoinsPerSecond
                    let shownRate = rate == rate.rounded() ? "\(Int(rate))" : "\(rate)"
                    reject(
                        ProtocolError(
                            .rateLimited,
                            "joins of docs this connection is not in are limited to \(shownRate)/s "
                                + "(--max-doc-joins-per-sec): this one was not answered; join again after retryAfterMs",
                            doc: doc, retryAfterMs: wait),
                        nowMs: nil)
                    return
                }
                local.docs[doc] = LoopState.JoinedDoc(role: role, presence: presence, latestJoin: 0)
            } else {
                local.docs[doc]?.presence = presence
            }
            // Every join (a re-join too) is answered with a `joined` whose list replaces the client's: deltas
            // until then wait for it (see `deliverPresence`).
            local.joinsSent += 1
            local.docs[doc]?.latestJoin = local.joinsSent
            shard(doc).join(self, doc: doc, number: local.joinsSent, role: role, state: state, since: since, presence: presence)
        case .leave(let doc):
            guard local.docs.removeValue(forKey: doc) != nil else {
                reject(ProtocolError(.notJoined, "not in this doc", doc: doc), nowMs: nil)
                return
            }
            forget(doc: doc)
            shard(doc).removeMember(self, doc: doc, leave: true, acknowledge: true)
        case .presence(let doc, let state):
            let route: DocShard.PresenceRoute
            // (String equality of the same storage is a pointer comparison.)
            if let known = local.presenceTarget, known.doc == doc {
                route = known
            } else {
                guard let joined = local.docs[doc] else {
                    metrics.presenceUpdate(.notJoined)
                    reject(ProtocolError(.notJoined, "join the doc before sending presence", doc: doc), nowMs: nil)
                    return
                }
                guard joined.presence.isShown else {
                    // Answered here, on the connection's loop: the shard never hears of it.
                    metrics.presenceUpdate(.disabled)
                    reject(
                        ProtocolError(
                            .presenceDisabled,
                            #"this session joined the doc with "presence":"\#(joined.presence.rawValue)": it has no presence to set (join with "presence":"full" to be shown)"#,
                            doc: doc),
                        nowMs: nil)
                    return
                }
                route = DocShard.PresenceRoute(doc: doc, shard: shard(doc), ticket: joined.ticket)
                local.presenceTarget = route
            }
            let target = route.shard
            if let batchShard = local.presenceBatchShard, batchShard !== target { flushPresenceUpdates() }
            local.presenceBatchShard = target
            if local.presenceBatch.isEmpty { local.presenceBatchReadNanos = readAtNanos }
            local.presenceBatch.append(DocShard.PresenceUpdate(route: route, state: state))
            if local.presenceBatch.count >= Self.maxPresenceBatch { flushPresenceUpdates() }
        case .diverged(let doc, let clock, let sum):
            guard local.docs[doc] != nil else {
                reject(ProtocolError(.notJoined, "join the doc first", doc: doc), nowMs: nil)
                return
            }
            // A report costs one counter increment and a log line; counting at most one per connection per
            // --diverged-report-ms keeps a hostile client from inflating the metric (or the log) at will:
            // its connections are bounded by the admission limits.
            guard local.lastDivergedReportMs == nil || nowMs >= local.lastDivergedReportMs! + UInt64(settings.divergedReportMs) else { return }
            local.lastDivergedReportMs = nowMs
            metrics.syncDivergences[.client]!.increment()
            logger.warning(
                "a client's doc state differs from the commit's checksum (it resyncs from a snapshot)",
                metadata: ["doc": "\(doc)", "clock": "\(clock)", "client.sum": "\(sum?.hex ?? "-")", "user": "\(identity.user)"])
        case .history(let doc, _, _), .at(let doc, _, _), .restore(let doc, _):
            guard let joined = local.docs[doc] else {
                reject(ProtocolError(.notJoined, "join the doc first", doc: doc), nowMs: nil)
                return
            }
            serveHistory(message, doc: doc, role: joined.role)
        case .push(let doc, _, _, _), .sync(let doc, _, _), .ack(let doc, _):
            guard let joined = local.docs[doc] else {
                reject(ProtocolError(.notJoined, "join the doc first", doc: doc, pushID: message.pushID), nowMs: nil)
                return
            }
            if !local.pushBackoff.isEmpty, case .push(_, let id, _, _) = message,
                let refusal = local.pushBackoff.refusal(doc: doc, now: readAtNanos)
            {
                return refuseEarlyPush(refusal, id: id)
            }
            shard(doc).sync(message, from: self, role: joined.role, messageBytes: bytes, readAtNanos: readAtNanos)
        }
    }

    /// Takes a join token for `doc` (see `joinBuckets`). Buckets that are full again carry no information
    /// and are dropped, so the dictionary holds only docs joined within the last burst / rate seconds.
    private func takeJoinToken(doc: String, nowMs: UInt64) -> Bool {
        let local = confined.value
        if local.joinBuckets.count > local.docs.count + Self.joinBucketSlack {
            local.joinBuckets = local.joinBuckets.filter { key, bucket in
                var bucket = bucket
                return local.docs[key] != nil || !bucket.isFull(nowMs: nowMs)
            }
        }
        let settings = settings.presenceSettings
        var bucket = local.joinBuckets[doc] ?? TokenBucket(rate: settings.rate, burst: settings.burst, nowMs: nowMs)
        let taken = bucket.take(nowMs: nowMs)
        local.joinBuckets[doc] = bucket
        return taken
    }

    /// Per-doc state of a doc this connection no longer is in (left, or membership ended by the shard).
    private func forget(doc: String) {
        let local = confined.value
        local.pushBackoff.forget(doc: doc)
        local.pendingPresence.removeValue(forKey: doc)
        local.lastRateLimitNoticeMs.removeValue(forKey: doc)
        dropCatchUps(of: doc)
    }

    /// Answers a bad message with an error; too many bad frames close the connection (1008).
    /// - Parameter nowMs: when set, the message counts as a bad frame for abuse detection.
    private func reject(_ error: ProtocolError, nowMs: UInt64?) {
        let local = confined.value
        sendError(error)
        if let nowMs, local.abuse.badFrame(nowMs: nowMs) == .tooManyBadFrames {
            logger.warning("closing client after too many bad frames")
            close(.badFrames)
        }
    }

    func receivedPong() { confined.value.keepAlive.heard() }

    /// A WebSocket ping: answered by the keep-alive, at most one pong in flight.
    func receivedPing(_ data: ByteBuffer) { confined.value.keepAlive.receivedPing(data) }

    func receivedClose() {
        let local = confined.value
        if local.closeReason == nil { local.closeReason = .clientClose }
    }

    func receivedBinary() {
        close(.binaryFrame)
    }

    func protocolErrorClose() {
        let local = confined.value
        if local.closeReason == nil { local.closeReason = .protocolError }
    }

    // MARK: Calls from shards (on this loop)

    func joinConfirmed(doc: String, join: UInt64, frame: [UInt8], ticket: DocTicket?) {
        let local = confined.value
        guard var joined = local.docs[doc] else { return }
        // (`max`: answers come in the order of the joins, but a late one must never hold deltas back.)
        joined.answeredJoin = max(joined.answeredJoin, join)
        // (A late answer to an earlier join may bring a ticket that is no longer valid: the shard checks
        // it at every use and takes the lookups instead.)
        joined.ticket = ticket
        local.docs[doc] = joined
        // A re-join restarts the doc's catch-up from its own `since`: what is left of an earlier join's
        // catch-up is obsolete (and would reach the client after this `joined`, out of place). At most one
        // join catch-up per doc is ever pending, however often the client re-joins.
        dropCatchUps(of: doc)
        send(frame)
        // Deltas the shard delivered after building this `joined` but before it reached the socket (see
        // `deliverPresence`), now in their place after it, unless a later join's `joined` is still to
        // come. A socket that is backed up keeps them for `writabilityChanged`, as it keeps any delta.
        if local.writable, joined.confirmed, var held = local.pendingPresence.removeValue(forKey: doc), let delta = held.drain(doc: doc) {
            writePresence(delta, buffer: nil)
        }
    }

    /// The shard refused or dropped the membership (forbidden resume, session taken over elsewhere).
    func membershipEnded(doc: String, error: ProtocolError?) {
        let local = confined.value
        local.docs.removeValue(forKey: doc)
        forget(doc: doc)
        if let error { sendError(error) }
    }

    func presenceRateLimited(doc: String) {
        let local = confined.value
        let nowMs = clock.nowMs()
        if let last = local.lastRateLimitNoticeMs[doc], nowMs < last + Self.rateLimitNoticeIntervalMs { return }
        local.lastRateLimitNoticeMs[doc] = nowMs
        sendError(
            ProtocolError(
                .rateLimited,
                "presence above \(settings.presenceRate)/s: intermediate states are dropped, the latest is kept",
                doc: doc))
    }

    func markReconnect() {
        let local = confined.value
        guard !local.countedAsReconnect else { return }
        local.countedAsReconnect = true
        reconnectObserved()
    }

    /// Writes a presence delta (`frame`: framed already, see `ServerFrame`), or merges it while the socket
    /// is backed up.
    /// Not flushed yet: the shard calls `flushPresence` once every member on this loop has its delta, and
    /// counts the deltas written (true) in `tandem_fanout_*` once per hop.
    @discardableResult
    func deliverPresence(_ delta: PresenceDelta, buffer frame: ByteBuffer) -> Bool {
        let local = confined.value
        guard !local.closing else { return false }
        if local.presenceDeliveryDoc != delta.doc {
            guard let joined = local.docs[delta.doc] else { return false }
            // The shard writes deltas to members on its own loop at once, but hands `joined` over with a
            // task (so that it follows catch-up chunks already queued): on the shard's loop a delta can
            // reach this point before the `joined` it follows. Written first, the client would apply it and
            // then replace its list with `joined`'s, built before the delta, and miss that change until the
            // session changed again. It waits for `joinConfirmed` instead, merged like a slow consumer's.
            guard joined.confirmed else {
                local.pendingPresence[delta.doc, default: PendingPresence()].merge(delta)
                return false
            }
            local.presenceDeliveryDoc = delta.doc
        }
        if !local.writable || (!local.pendingPresence.isEmpty && local.pendingPresence[delta.doc] != nil) {
            local.pendingPresence[delta.doc, default: PendingPresence()].merge(delta)
            metrics.slowConsumerCoalesced.increment()
            return false
        }
        local.preframed.write(frame: frame)
        local.presenceUnflushed = true
        // While the channel is writable its buffer is under the high-water mark, which is below
        // --max-outbound-bytes (a configuration rule): only the sync queue can pass the limit then. Reading
        // the buffered bytes (a generic channel option) for every member of every delta showed in the
        // presence profile (issue 14).
        if !channel.isWritable || local.syncQueuedBytes > 0 { enforceOutboundLimit() }
        return true
    }

    /// Flushes the deltas `deliverPresence` wrote, unless a flush is scheduled anyway: one syscall per
    /// member per tick without scheduling a task for it (issue 14: `scheduleFlush` cost an `execute`, a
    /// closure allocation, per member per tick).
    func flushPresence() {
        let local = confined.value
        guard local.presenceUnflushed else { return }
        local.presenceUnflushed = false
        if !local.flushScheduled && !local.closing { local.preframed.flush() }
    }

    private func countPresence(_ delta: PresenceDelta) {
        metrics.fanoutMessages.increment()
        metrics.fanoutBytes.increment(by: Int64(delta.encoded.count))
    }

    private func writePresence(_ delta: PresenceDelta, buffer frame: ByteBuffer?) {
        countPresence(delta)
        write(frame ?? ServerFrame.text(delta.encoded, allocator: channel.allocator))
    }

    func sendError(_ error: ProtocolError) {
        metrics.protocolError(error.code)
        // A push refused as overload (its doc's or the shard's): the connection's next pushes to the doc
        // are refused here until the hint passes (`PushBackoff`). Only for a doc still joined, so the
        // entries stay bounded by the joined docs.
        if error.code == .unavailable, let retryAfterMs = error.retryAfterMs, error.pushID != nil, let doc = error.doc {
            let local = confined.value
            if local.docs[doc] != nil { local.pushBackoff.refused(doc: doc, retryAfterMs: retryAfterMs, now: clock.nowNanos()) }
        }
        send(ServerMessage.error(error))
    }

    /// A push that arrived before the hint this connection was given for its doc passed: refused at once,
    /// with the time left (its client was told to wait and hold its edits; this one was sent before it
    /// heard, and its retry is already counted in the shard's backlog — see `PushBackoff`). The frame is
    /// the doc's encoded prefix, the id and the hint, written straight into one buffer.
    private func refuseEarlyPush(_ refusal: PushBackoff.Refusal, id: JSONValue) {
        metrics.syncOverloadRefusals[.early]!.increment()
        metrics.syncPush("error")
        metrics.syncRetryAfterSeconds.record(Double(refusal.retryAfterMs) / 1000)
        metrics.protocolError(.unavailable)
        write(Self.earlyRefusalFrame(refusal, id: id, allocator: channel.allocator))
    }

    /// The text frame of `PushBackoff.payload(refusal, id:)`, built without the intermediate array for the
    /// ids clients send (numbers; a string id takes the general path).
    static func earlyRefusalFrame(_ refusal: PushBackoff.Refusal, id: JSONValue, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard case .number(let lexeme) = id else {
            return ServerFrame.text(PushBackoff.payload(refusal, id: id), allocator: allocator)
        }
        var hint = refusal.retryAfterMs
        var digits = 1
        while hint >= 10 {
            hint /= 10
            digits += 1
        }
        let tail: StaticString = #","retryAfterMs":"#
        let length = refusal.prefix.count + lexeme.utf8.count + tail.utf8CodeUnitCount + digits + 1
        var buffer = allocator.buffer(capacity: ServerFrame.headerBytes(length) + length)
        ServerFrame.writeHeader(length: length, into: &buffer)
        buffer.writeBytes(refusal.prefix)
        buffer.writeString(lexeme)
        buffer.writeStaticString(tail)
        buffer.writeString(String(refusal.retryAfterMs))
        buffer.writeInteger(UInt8(ascii: "}"))
        return buffer
    }

    func send(_ bytes: [UInt8]) {
        write(ServerFrame.text(bytes, allocator: channel.allocator))
    }

    /// Writes one text frame (`frame`: framed already, see `ServerFrame`) and enforces the hard outbound
    /// limit.
    func write(_ frame: ByteBuffer) {
        let local = confined.value
        guard !local.closing else { return }
        local.preframed.write(frame: frame)
        scheduleFlush()
        enforceOutboundLimit()
    }

    /// Bytes queued for this client (for tandem_queue_depth{queue="outbound"}): what the channel buffers
    /// (frames, pongs, produced catch-up chunks) plus document frames waiting here and the estimated size
    /// of explicit `sync` replies not started yet.
    func outboundBytes() -> Int {
        ((try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0) + confined.value.syncQueuedBytes
    }

    /// Closes the client with 1013 once its outbound bytes pass `--max-outbound-bytes`.
    func enforceOutboundLimit() {
        let local = confined.value
        guard !local.closing else { return }
        // A writable channel buffers at most the high-water mark (NIO marks it unwritable as soon as it holds
        // more): then the bound cannot have been passed, and the option read is skipped — a generic call of
        // about 2,000 instructions, made on every frame written (issue 8: a sixth of a refused push's answer).
        if channel.isWritable, settings.outboundHighWaterBytes + local.syncQueuedBytes <= settings.maxOutboundBytes { return }
        let buffered = outboundBytes()
        guard buffered > settings.maxOutboundBytes else { return }
        logger.warning("closing slow consumer", metadata: ["outbound.bytes": "\(buffered)"])
        close(.slowConsumer)
    }

    // MARK: Document messages

    enum SyncOutbound {
        /// A text frame, framed already (`ServerFrame`: one buffer shared by every member a commit goes
        /// to); `committedAtMs` (wall clock) is set for commits, to measure sync lag when written.
        case frame(ByteBuffer, committedAtMs: UInt64?)
        /// A catch-up (snapshot or log entries) encoded chunk by chunk as the socket drains.
        case chunks(any CatchUpChunker, CatchUpInfo)

        /// The frame, if this is one (`writeRun`).
        var frame: (buffer: ByteBuffer, committedAtMs: UInt64?)? {
            if case .frame(let buffer, let committedAtMs) = self { return (buffer, committedAtMs) }
            return nil
        }
    }

    /// Queues a document message without writing yet (`deliverSync` writes).
    ///
    /// Catch-ups are produced one chunk at a time, only while the socket takes them, so what a running one
    /// adds to the send buffer is counted as it is written. Explicit `sync` replies waiting behind others
    /// count their estimated size up to one chunk (`maxChunkBytes`) each: a client that keeps asking
    /// without reading reaches `--max-outbound-bytes` (1013) instead of piling up replies. Join catch-ups
    /// are not counted: there is at most one per doc (see `joinConfirmed`), so at most
    /// `--max-docs-per-connection`, and counting them would close a client that joins several big docs.

    private func appendSync(_ item: SyncOutbound) {
        let local = confined.value
        var item = item
        switch item {
        case .frame(let buffer, _):
            local.syncQueuedBytes += buffer.readableBytes
        case .chunks(let chunker, var info) where info.isReply:
            info.counted = chunker.estimatedRemainingBytes(upTo: ServerMessage.maxChunkBytes)
            local.syncQueuedBytes += info.counted
            item = .chunks(chunker, info)
        case .chunks:
            break
        }
        local.syncQueue.append(item)
    }

    /// Removes the join catch-ups of `doc` that are still queued (also one partly written: the client
    /// restarts from the next `joined`).
    private func dropCatchUps(of doc: String) {
        let local = confined.value
        guard local.syncQueueHead < local.syncQueue.count else { return }
        var dropped = 0
        var kept: [SyncOutbound] = []
        kept.reserveCapacity(local.syncQueue.count - local.syncQueueHead)
        for item in local.syncQueue[local.syncQueueHead...] {
            if case .chunks(_, let info) = item, !info.isReply, info.doc == doc {
                dropped += 1
                continue
            }
            kept.append(item)
        }
        guard dropped > 0 else { return }
        local.syncQueue = kept
        local.syncQueueHead = 0
        metrics.catchUpsReplaced.increment(by: Int64(dropped))
    }

    /// A round of a doc's sync messages (`SyncOutbox`), in order: stream items are queued (one pump for
    /// all), errors written at once.
    func deliverSync(_ items: [SyncOutbox.Item]) {
        let local = confined.value
        guard !local.closing else { return }
        // Nothing waiting in front (the common case): the round's frames go to the socket without passing
        // through the queue (issue 8 stop 26: appending and taking each frame back was a tenth of the
        // round's cost); whatever the socket does not take, and anything after a catch-up or an error,
        // is queued as before.
        var index = 0
        var wrote = false
        if local.syncQueueHead == local.syncQueue.count {
            var nowMs: UInt64?
            while index < items.count, channel.isWritable {
                let (end, _) = writeRun(items, from: index, nowMs: &nowMs) { $0.frame }
                guard end > index else { break }
                index = end
                wrote = true
            }
        }
        for item in items[index...] {
            switch item {
            case .frame(let buffer, let committedAtMs): appendSync(.frame(buffer, committedAtMs: committedAtMs))
            case .chunks(let chunker, let info): appendSync(.chunks(chunker, info))
            case .error(let error):
                // After what came before it (errors are written directly, not queued; `sendError` flushes).
                pumpSync()
                sendError(error)
            }
        }
        if pumpSync() || wrote { flushWritten() }
        enforceOutboundLimit()
    }

    /// Flushes what `pumpSync` wrote, at once, unless a flush is scheduled anyway. A round of a doc reaches
    /// a loop in one hop (`SyncOutbox`), so this is one flush per member per round, as before, without a
    /// task scheduled for it per member per round (`scheduleFlush`: an `execute` and its closure; issue 8
    /// stop 26) — what `flushPresence` does for presence deltas.
    private func flushWritten() {
        let local = confined.value
        if !local.flushScheduled && !local.closing { local.preframed.flush() }
    }

    /// One flush for everything written in this round of the event loop: shards hop in with many small
    /// messages (a patch per commit, a delta per doc), and a syscall per message dominated busy docs.
    /// Flushed from next to the head (`PreframedWriter.flush`, as `flushPresence` does): `channel.flush()`
    /// walked the whole pipeline for every member of every commit (about 1,100 instructions per commit of
    /// scripts/profile-sync.sh, issue 8 stop 24).
    private func scheduleFlush() {
        let local = confined.value
        guard !local.flushScheduled else { return }
        local.flushScheduled = true
        eventLoop.execute { [self] in
            let local = confined.value
            local.flushScheduled = false
            local.preframed.flush()
        }
    }

    /// Writes queued sync messages while the socket takes them, without flushing.
    /// - Returns: whether anything was written (the caller flushes).
    @discardableResult
    private func pumpSync() -> Bool {
        let local = confined.value
        var wrote = false
        var nowMs: UInt64?
        while local.syncQueueHead < local.syncQueue.count, channel.isWritable, !local.closing {
            switch local.syncQueue[local.syncQueueHead] {
            case .frame:
                let (end, bytes) = writeRun(local.syncQueue, from: local.syncQueueHead, nowMs: &nowMs) { $0.frame }
                local.syncQueuedBytes -= bytes
                local.syncQueueHead = end
            case .chunks(var chunker, var info):
                // Started: from now on its chunks are counted in the channel's buffer as they are written.
                local.syncQueuedBytes -= info.counted
                info.counted = 0
                if let chunk = chunker.next() {
                    local.preframed.write(frame: ServerFrame.text(chunk, allocator: channel.allocator))
                }
                if chunker.isFinished {
                    local.syncQueueHead += 1
                } else {
                    local.syncQueue[local.syncQueueHead] = .chunks(chunker, info)
                }
            }
            wrote = true
        }
        if local.syncQueueHead > Self.syncQueueCompactionThreshold && local.syncQueueHead * 2 > local.syncQueue.count {
            local.syncQueue.removeFirst(local.syncQueueHead)
            local.syncQueueHead = 0
        } else if local.syncQueueHead == local.syncQueue.count {
            local.syncQueue.removeAll(keepingCapacity: true)
            local.syncQueueHead = 0
        }
        return wrote
    }

    /// Writes the run of frames at `start` in `elements` as one buffer, up to `coalescedWriteBytes` (or the
    /// high-water mark, if lower) or the first element that is not a frame (`frame` returns nil for it).
    ///
    /// A hot doc's round is a patch or result per commit for every member — tens of frames per member per
    /// round, hundreds of thousands a second — and each frame the channel holds is a pending write of its
    /// own: queued, turned into an iovec, released after the `writev` (issue 8 stop 26: about 1,600
    /// instructions per frame in the hot doc's profile, more than copying its bytes). The bytes on the wire
    /// are the same frames in the same order. A lone frame is written as it is (the buffer every member
    /// shares, no copy).
    ///
    /// The channel's writability is checked by the caller before the run only: the run may take its buffer
    /// past the high-water mark by up to its size, which the cap bounds; `--max-outbound-bytes` counts the
    /// channel's buffer and the sync queue alike, so where the frames wait does not change when a client is
    /// closed.
    /// - Returns: the index after the run (`start` if `elements[start]` is not a frame) and its bytes.
    private func writeRun<Elements: RandomAccessCollection<Element>, Element>(
        _ elements: Elements, from start: Int, nowMs: inout UInt64?,
        frame: (Element) -> (buffer: ByteBuffer, committedAtMs: UInt64?)?
    ) -> (end: Int, bytes: Int) where Elements.Index == Int {
        let cap = min(Self.coalescedWriteBytes, settings.outboundHighWaterBytes)
        var end = start
        var bytes = 0
        // Frames of one commit share its time, and a round's commits mostly share one (their batch's):
        // the lag is recorded once per run of equal times (`record(_:count:)`), not once per frame.
        var lagOf: UInt64?
        var lagCount = 0
        while end < elements.endIndex, let next = frame(elements[end]) {
            guard end == start || bytes + next.buffer.readableBytes <= cap else { break }
            bytes += next.buffer.readableBytes
            end += 1
            guard let committedAtMs = next.committedAtMs else { continue }
            if committedAtMs == lagOf {
                lagCount += 1
            } else {
                if let lagOf { recordLag(committedAtMs: lagOf, count: lagCount, nowMs: &nowMs) }
                lagOf = committedAtMs
                lagCount = 1
            }
        }
        if let lagOf { recordLag(committedAtMs: lagOf, count: lagCount, nowMs: &nowMs) }
        guard end > start else { return (start, 0) }
        let preframed = confined.value.preframed
        if end == start + 1, let only = frame(elements[start]) {
            preframed.write(frame: only.buffer)
            return (end, bytes)
        }
        var run = channel.allocator.buffer(capacity: bytes)
        for index in start..<end {
            guard var buffer = frame(elements[index])?.buffer else { continue }
            run.writeBuffer(&buffer)
        }
        preframed.write(frame: run)
        return (end, bytes)
    }

    /// Records the sync lag of `count` frames of a commit made at `committedAtMs`, measured as they go to
    /// the socket (it is writable, so nothing waits in front of them here). A write promise per frame to
    /// measure it when written cost an allocation and a callback per frame. `at` comes from Redis: a time
    /// in the future is no lag, not a wrapped-around one.
    private func recordLag(committedAtMs: UInt64, count: Int, nowMs: inout UInt64?) {
        let now = nowMs ?? clock.wallMs()
        nowMs = now
        metrics.syncLagSeconds.record(Double(now >= committedAtMs ? now - committedAtMs : 0) / 1000, count: count)
    }

    /// At most this many bytes of queued frames are copied into one write (`writeRun`): a hot doc's
    /// round for one member is a few kilobytes; a backlog that built up while the client did not read
    /// leaves in writes of this size rather than in one copy of everything.
    static let coalescedWriteBytes = 64 * 1024

    /// Sends a close frame (behind whatever is already queued) and closes the channel when the client
    /// answers or after two seconds. Nothing more is queued meanwhile, so a slow consumer's memory stops
    /// growing at once; if it resumes reading within the grace period it sees the 1013.
    func close(_ close: ServerClose) {
        let local = confined.value
        guard !local.closing else { return }
        local.closing = true
        local.keepAlive.stop()
        local.closeReason = close.reason
        let (code, text) = (close.code, close.text)
        local.pendingPresence.removeAll()
        local.syncQueue.removeAll()
        local.syncQueueHead = 0
        local.syncQueuedBytes = 0
        let frame = CloseFrameReply.frame(code: code, text: text, allocator: channel.allocator)
        let channel = self.channel
        channel.writeAndFlush(frame, promise: nil)
        // Give the client a moment to read and answer the close handshake, then drop the socket regardless.
        channel.eventLoop.scheduleTask(in: Self.closeHandshakeGrace) { channel.close(promise: nil) }
    }

    var isClosing: Bool { confined.value.closing }
}

extension ClientMessage {
    var pushID: JSONValue? {
        if case .push(_, let id, _, _) = self { return id }
        return nil
    }
}

extension ClientConnection {
    /// A join that states the schema version it was built for must find exactly that version enforced for
    /// the doc; a server without a schema for the doc is a mismatch too (the client expects its records to
    /// be checked). Joins that state no version are not checked.
    static func schemaMismatch(stated: Int, enforced: Int?, doc: String) -> ProtocolError? {
        guard stated != enforced else { return nil }
        let server = enforced.map { "version \($0)" } ?? "no schema"
        return ProtocolError(
            .schemaMismatch, "this client was built for record schema version \(stated); the server enforces \(server) for this doc",
            doc: doc)
    }
}
