import Logging
import NIOCore
import TandemCore

/// Owns the documents whose id hashes to it, on one event loop: their presence state machines, their
/// local members, their ticks, and their traffic with Redis.
///
/// Everything here runs on `eventLoop` (connections and the pub/sub thread hop in with `execute`), so
/// per-doc state needs no locks. One shard per event loop spreads docs over the cores.
final class DocShard: @unchecked Sendable {
    let index: Int
    let eventLoop: EventLoop
    let node: NodeContext
    var logger: Logger
    var docs: [String: DocState] = [:]
    private var tasks: [RepeatedTask] = []
    private var stopped = false

    init(index: Int, eventLoop: EventLoop, node: NodeContext) {
        self.index = index
        self.eventLoop = eventLoop
        self.node = node
        var logger = node.logger
        logger[metadataKey: "shard"] = "\(index)"
        self.logger = logger
    }

    func start() {
        eventLoop.execute { [self] in
            let tick = TimeAmount.milliseconds(Int64(node.config.tickMs))
            tasks.append(eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [weak self] _ in self?.tick() })
            let sweep = TimeAmount.milliseconds(Int64(node.config.sweepMs))
            tasks.append(eventLoop.scheduleRepeatedTask(initialDelay: sweep, delay: sweep) { [weak self] _ in self?.sweep() })
        }
    }

    // MARK: Membership (called by connections, hop to this loop)

    func join(_ connection: ClientConnection, doc: String, role: Role, state: JSONValue?, since: UInt64?) {
        onLoop {
            let join = DocState.PendingJoin(connection: connection, role: role, state: state, since: since)
            let docState = self.docState(for: doc)
            if docState.loading {
                // At most one waiting join per connection: a newer join replaces it (its `since` wins, and its
                // state unless it has none) and one `joined` answers both. The list is bounded by the
                // connections joining the doc.
                if let index = docState.waiting.firstIndex(where: { $0.connection === connection }) {
                    let earlier = docState.waiting[index]
                    docState.waiting[index] = DocState.PendingJoin(
                        connection: connection, role: role, state: state ?? earlier.state, since: since)
                } else {
                    docState.waiting.append(join)
                }
            } else {
                self.completeJoin(join, doc: doc, docState)
            }
        }
    }

    private func completeJoin(_ join: DocState.PendingJoin, doc: String, _ docState: DocState) {
        let connection = join.connection
        let sid = connection.sessionID
        let existing = docState.presence.view[sid]
        if let existing, existing.user != connection.identity.user {
            connection.eventLoop.execute {
                connection.membershipEnded(
                    doc: doc, error: ProtocolError(.forbidden, "session id belongs to another user", doc: doc))
            }
            return
        }
        if let previous = docState.owners[sid], previous != ObjectIdentifier(connection) {
            // The same session on a newer connection (resume): the old one no longer speaks for it here.
            if let old = docState.members.removeValue(forKey: previous) {
                docState.deliveryGroups = nil
                detachSync(previous, doc: doc, docState)
                old.connection.eventLoop.execute { old.connection.membershipEnded(doc: doc, error: nil) }
            }
        }
        if docState.members[ObjectIdentifier(connection)] != nil, docState.owners[sid] == ObjectIdentifier(connection),
            existing != nil
        {
            return completeRejoin(join, doc: doc, docState)
        }
        let isNewHere = docState.members[ObjectIdentifier(connection)] == nil
        if isNewHere, let departed = docState.recentDepartures[connection.identity.user],
            node.clock.nowMs() < departed + 60_000
        {
            connection.eventLoop.execute { connection.markReconnect() }
        }
        // The version of an entry read from Redis or another node is clamped before `+ 1`: a corrupted
        // `"v":18446744073709551615` must not trap the node (and leaves 2^53 increments of headroom).
        let entry = PresenceEntry(
            sid: sid, user: connection.identity.user, name: connection.identity.name, role: join.role,
            node: node.config.nodeID, version: min(existing?.version ?? 0, ClientMessage.maxClock) + 1,
            state: join.state ?? existing?.state ?? .object([:]))
        docState.presence.join(entry)
        docState.owners[sid] = ObjectIdentifier(connection)
        updateGauges()
        // Answer once the entry is in Redis (or Redis is out of reach), so a client that has its `joined`
        // is listed in every later `joined`, on every node.
        let written: EventLoopFuture<Void>
        if let write = docState.presence.takeWrite(nowMs: node.clock.nowMs()) {
            written = perform(write, doc: doc, docState)
        } else {
            written = eventLoop.makeSucceededVoidFuture()
        }
        written.whenComplete { _ in
            guard self.docs[doc] === docState, docState.owners[sid] == ObjectIdentifier(connection) else { return }
            // A member from here on: deltas and commits reach it only after its `joined`.
            docState.members[ObjectIdentifier(connection)] = DocState.Member(connection: connection, role: join.role)
            docState.deliveryGroups = nil
            let clock = docState.sync.isLoaded ? docState.sync.head : nil
            let frame = ServerMessage.joined(doc: doc, role: join.role, presence: docState.presence.presenceList(), clock: clock)
            connection.eventLoop.execute { connection.joinConfirmed(doc: doc, frame: frame) }
            self.attachSync(connection, since: join.since, doc: doc, docState)
            self.handleEarlyRequests(of: connection, docState)
        }
    }

    /// A join of a doc by a connection that is already a live member of it. Its state is a presence update
    /// (rate-limited per user like any other: a re-join is no way around `--presence-rate`); the member
    /// gets `joined` again and a catch-up from its new `since`, which replaces any catch-up of the doc still
    /// queued for it (`ClientConnection.joinConfirmed`). Its entry is already in Redis, so nothing waits.
    private func completeRejoin(_ join: DocState.PendingJoin, doc: String, _ docState: DocState) {
        let connection = join.connection
        if let state = join.state {
            let outcome = docState.presence.offerUpdate(sid: connection.sessionID, state: state, nowMs: node.clock.nowMs())
            node.metrics.presenceUpdate(outcome)
            if outcome == .accepted { docState.stats.presenceUpdates += 1 }
            if outcome == .rateLimited {
                connection.eventLoop.execute { connection.presenceRateLimited(doc: doc) }
            }
        }
        let clock = docState.sync.isLoaded ? docState.sync.head : nil
        let frame = ServerMessage.joined(doc: doc, role: join.role, presence: docState.presence.presenceList(), clock: clock)
        connection.eventLoop.execute { connection.joinConfirmed(doc: doc, frame: frame) }
        attachSync(connection, since: join.since, doc: doc, docState)
        handleEarlyRequests(of: connection, docState)
    }

    /// A connection leaves a doc (`leave: true`, deleted at once) or loses its socket (`leave: false`,
    /// detached: presence stays for the TTL so a resume can take it over).
    func removeMember(_ connection: ClientConnection, doc: String, leave: Bool, acknowledge: Bool = false) {
        onLoop {
            guard let docState = self.docs[doc] else { return }
            let id = ObjectIdentifier(connection)
            docState.waiting.removeAll { ObjectIdentifier($0.connection) == id }
            if docState.members.removeValue(forKey: id) != nil { docState.deliveryGroups = nil }
            self.detachSync(id, doc: doc, docState)
            let sid = connection.sessionID
            if docState.owners[sid] == id {
                docState.owners.removeValue(forKey: sid)
                if leave {
                    docState.presence.leave(sid: sid)
                } else {
                    docState.presence.detach(
                        sid: sid, nowMs: self.node.clock.nowMs(),
                        graceMs: self.node.holdingDetached ? UInt64(self.node.config.stormResumeGraceMs) : nil)
                }
                docState.recentDepartures[connection.identity.user] = self.node.clock.nowMs()
            }
            if acknowledge {
                let frame = ServerMessage.left(doc: doc)
                connection.eventLoop.execute { connection.enqueueSync(frame) }
            }
            self.updateGauges()
        }
    }

    func updatePresence(_ connection: ClientConnection, doc: String, state: JSONValue) {
        onLoop {
            guard let docState = self.docs[doc], docState.owners[connection.sessionID] == ObjectIdentifier(connection) else {
                // Still loading: the join is queued ahead of this update; apply it as the join's state.
                if let docState = self.docs[doc], docState.loading,
                    let index = docState.waiting.lastIndex(where: { $0.connection === connection })
                {
                    let join = docState.waiting[index]
                    docState.waiting[index] = DocState.PendingJoin(connection: connection, role: join.role, state: state, since: join.since)
                    self.node.metrics.presenceUpdate(.accepted)
                } else {
                    self.node.metrics.presenceUpdate(.notJoined)
                }
                return
            }
            let outcome = docState.presence.offerUpdate(sid: connection.sessionID, state: state, nowMs: self.node.clock.nowMs())
            self.node.metrics.presenceUpdate(outcome)
            if outcome == .accepted { docState.stats.presenceUpdates += 1 }
            if outcome == .rateLimited {
                connection.eventLoop.execute { connection.presenceRateLimited(doc: doc) }
            }
        }
    }

    // MARK: Redis and other nodes

    /// A message from the doc's pub/sub channel (already decoded on the subscriber thread).
    func received(_ message: NodeMessage, doc: String) {
        onLoop {
            guard let docState = self.docs[doc] else { return }
            switch message {
            case .commit(let commit): return self.received([commit], doc: doc, docState)
            case .commits(let commits): return self.received(commits, doc: doc, docState)
            default: break
            }
            let effect = docState.presence.apply(message)
            if effect.expired > 0 { self.node.metrics.presenceExpired.increment(by: Int64(effect.expired)) }
            for sid in effect.takenOver {
                guard let owner = docState.owners.removeValue(forKey: sid),
                    let member = docState.members.removeValue(forKey: owner)
                else { continue }
                self.detachSync(owner, doc: doc, docState)
                docState.deliveryGroups = nil
                member.connection.eventLoop.execute {
                    member.connection.membershipEnded(
                        doc: doc, error: ProtocolError(.forbidden, "this session was resumed on another connection", doc: doc))
                }
            }
        }
    }

    /// Keeps detached sessions resumable until `untilMs` (see `PresenceDoc.holdDetached`).
    func holdDetached(untilMs: UInt64) {
        onLoop {
            for docState in self.docs.values { docState.presence.holdDetached(untilMs: untilMs) }
        }
    }

    /// Redis came back (or the pub/sub connection re-subscribed): rewrite what Redis may have lost and
    /// check every doc against it.
    func redisRecovered(rewrite: Bool) {
        onLoop {
            let nowMs = self.node.clock.nowMs()
            for (doc, docState) in self.docs {
                if rewrite {
                    docState.presence.writeFailed()
                    docState.keepRemoteUntilMs = nowMs + UInt64(self.node.config.presenceTTLMs)
                }
                docState.nextReconcileMs = 0
                if docState.loading {
                    self.load(doc, docState)
                } else if !docState.sync.isLoaded {
                    _ = self.loadSync(doc, docState)
                } else {
                    self.checkHead(doc, docState)
                }
            }
        }
    }

    private func docState(for doc: String) -> DocState {
        if let existing = docs[doc] { return existing }
        var sync = PushPipeline<ObjectIdentifier>(settings: node.config.pushPipelineSettings, randomSeed: UInt64.random(in: 0...UInt64.max))
        if !node.redisIsUp { _ = sync.setRedisAvailable(false, now: node.clock.nowNanos()) }
        let docState = DocState(presence: PresenceDoc(doc: doc, settings: node.config.presenceSettings), sync: sync)
        docs[doc] = docState
        node.subscribe(doc: doc)
        load(doc, docState)
        updateGauges()
        return docState
    }

    /// Reads the doc's presence and records from Redis before answering the first joins, so `joined`
    /// lists every node's sessions and carries the head clock. Without Redis the node answers from what
    /// it knows (presence of its own clients) and catches up when Redis returns.
    private func load(_ doc: String, _ docState: DocState) {
        let seq = docState.presence.currentEventSeq
        let presence = node.presenceStore.snapshot(doc: doc, on: eventLoop)
        let sync = loadSync(doc, docState)
        sync.flatMap { presence }.whenComplete { result in
            guard self.docs[doc] === docState else { return }
            switch result {
            case .success(let entries):
                docState.presence.reconcile(snapshot: entries, requestedAtSeq: seq)
                docState.nextReconcileMs = self.node.clock.nowMs() + UInt64(self.node.config.reconcileMs)
            case .failure(let error):
                self.logger.debug("presence snapshot failed; answering from local state", metadata: ["doc": "\(doc)", "error": "\(error)"])
                docState.nextReconcileMs = 0
            }
            docState.loading = false
            let waiting = docState.waiting
            docState.waiting.removeAll()
            for join in waiting { self.completeJoin(join, doc: doc, docState) }
        }
    }

    // MARK: Tick, sweep, reconcile

    private func tick() {
        guard !stopped else { return }
        let started = node.clock.nowNanos()
        let nowMs = started / 1_000_000
        for (doc, docState) in docs where !docState.loading {
            let tick = docState.presence.tick(nowMs: nowMs)
            if tick.expired > 0 { node.metrics.presenceExpired.increment(by: Int64(tick.expired)) }
            deliver(tick, docState)
            if let write = tick.write { perform(write, doc: doc, docState) }
            if nowMs >= docState.nextReconcileMs { reconcile(doc, docState, nowMs: nowMs) }
            if docState.members.isEmpty && docState.waiting.isEmpty && docState.presence.isIdle && tick.write == nil
                && docState.sync.isIdle
            {
                docState.syncTimer?.cancel()
                docs.removeValue(forKey: doc)
                node.unsubscribe(doc: doc)
            }
        }
        pruneDepartures(nowMs: nowMs)
        updateGauges()
        node.metrics.presenceTick.record(Double(node.clock.nowNanos() - started) / 1e9)
    }

    /// Sends a tick's deltas: encoded once, the same buffer written to every member, one hop per loop.
    private func deliver(_ tick: PresenceTick, _ docState: DocState) {
        guard tick.delta != nil || tick.viewerDelta != nil, !docState.members.isEmpty else { return }
        let allocator = ByteBufferAllocator()
        let delta = tick.delta.map { ($0, ServerFrame.text($0.encoded, allocator: allocator)) }
        let viewerDelta = tick.viewerDelta.map { ($0, ServerFrame.text($0.encoded, allocator: allocator)) }
        let viewersGetDelta = tick.viewersGetDelta
        for (loop, editors, viewers) in deliveryGroups(docState) {
            loop.execute {
                if let (d, buffer) = delta {
                    for connection in editors { connection.deliverPresence(d, buffer: buffer) }
                }
                if let (v, buffer) = viewerDelta {
                    for connection in viewers { connection.deliverPresence(v, buffer: buffer) }
                }
                if viewersGetDelta, let (d, buffer) = delta {
                    for connection in viewers { connection.deliverPresence(d, buffer: buffer) }
                }
            }
        }
    }

    private func deliveryGroups(_ docState: DocState) -> [(EventLoop, editors: [ClientConnection], viewers: [ClientConnection])] {
        if let groups = docState.deliveryGroups { return groups }
        var byLoop: [ObjectIdentifier: (EventLoop, editors: [ClientConnection], viewers: [ClientConnection])] = [:]
        for member in docState.members.values {
            let loop = member.connection.eventLoop
            let key = ObjectIdentifier(loop)
            var group = byLoop[key] ?? (loop, [], [])
            if member.role == .editor { group.editors.append(member.connection) } else { group.viewers.append(member.connection) }
            byLoop[key] = group
        }
        let groups = Array(byLoop.values)
        docState.deliveryGroups = groups
        return groups
    }

    @discardableResult
    private func perform(_ write: PresenceWrite, doc: String, _ docState: DocState) -> EventLoopFuture<Void> {
        guard node.redisIsUp else {
            docState.presence.writeFailed()
            return eventLoop.makeSucceededVoidFuture()
        }
        let future = node.presenceStore.write(doc: doc, write, on: eventLoop)
        future.whenFailure { error in
            guard self.docs[doc] === docState else { return }
            self.logger.debug("presence write failed; will rewrite", metadata: ["doc": "\(doc)", "error": "\(error)"])
            docState.presence.writeFailed()
        }
        return future
    }

    private func reconcile(_ doc: String, _ docState: DocState, nowMs: UInt64) {
        guard !docState.reconcileInFlight, node.redisIsUp else { return }
        docState.reconcileInFlight = true
        // Spread reconciles of many docs over the interval instead of doing them all at once.
        let interval = UInt64(node.config.reconcileMs)
        docState.nextReconcileMs = nowMs + interval / 2 + UInt64.random(in: 0...interval)
        let seq = docState.presence.currentEventSeq
        if docState.sync.isLoaded { checkHead(doc, docState) } else { _ = loadSync(doc, docState) }
        node.presenceStore.snapshot(doc: doc, on: eventLoop).whenComplete { result in
            docState.reconcileInFlight = false
            guard self.docs[doc] === docState, case .success(let entries) = result else { return }
            let removeMissing = self.node.clock.nowMs() >= docState.keepRemoteUntilMs
            if !removeMissing {
                // Check again once the other nodes had their chance to re-register.
                docState.nextReconcileMs = min(docState.nextReconcileMs, docState.keepRemoteUntilMs)
            }
            let corrections = docState.presence.reconcile(snapshot: entries, requestedAtSeq: seq, removeMissing: removeMissing)
            if corrections > 0 {
                self.logger.info("reconcile corrected presence", metadata: ["doc": "\(doc)", "corrections": "\(corrections)"])
            }
        }
    }

    private func sweep() {
        guard !stopped, node.redisIsUp else { return }
        for (doc, docState) in docs where !docState.sweepInFlight {
            docState.sweepInFlight = true
            node.presenceStore.sweep(doc: doc, on: eventLoop).whenComplete { result in
                docState.sweepInFlight = false
                guard case .success(let gone) = result, !gone.isEmpty else { return }
                self.logger.info("nodes expired from doc", metadata: ["doc": "\(doc)", "nodes": "\(gone)"])
                self.received(.nodesGone(nodes: gone), doc: doc)
            }
        }
    }

    private func pruneDepartures(nowMs: UInt64) {
        for docState in docs.values where !docState.recentDepartures.isEmpty {
            docState.recentDepartures = docState.recentDepartures.filter { nowMs < $0.value + 60_000 }
        }
    }

    // MARK: Status and shutdown

    private var lastReportedSessions = 0
    private var lastReportedDocs = 0
    private var lastReportedWaiting = 0
    private var lastReportedEarly = 0
    private var lastReportedPushes = 0

    /// Publishes this shard's share of the node-wide gauges (shards add up their differences).
    func updateGauges() {
        var sessions = 0
        var waiting = 0
        var early = 0
        var pushes = 0
        for docState in docs.values {
            sessions += docState.presence.localCount
            waiting += docState.waiting.count
            for requests in docState.earlyRequests.values { early += requests.count }
            pushes += docState.sync.queuedCount  // waiting for a batch (the one in Redis not counted)
        }
        let active = docs.count
        node.metrics.presenceSessions.increment(by: Double(sessions - lastReportedSessions))
        node.metrics.docsActive.increment(by: Double(active - lastReportedDocs))
        node.metrics.pendingJoinsDepth.increment(by: Double(waiting - lastReportedWaiting))
        node.metrics.earlyRequestsDepth.increment(by: Double(early - lastReportedEarly))
        node.metrics.pushQueueDepth.increment(by: Double(pushes - lastReportedPushes))
        lastReportedSessions = sessions
        lastReportedDocs = active
        lastReportedWaiting = waiting
        lastReportedEarly = early
        lastReportedPushes = pushes
    }

    /// Per-doc figures for /api/status (counters are cumulative; the status sampler turns them into rates).
    func status() -> EventLoopFuture<[DocStatus]> {
        eventLoop.submit {
            self.docs.map { doc, state in
                let view = state.presence.view.values
                return DocStatus(
                    doc: doc, members: view.count, editors: view.filter { $0.role == .editor }.count,
                    viewers: view.filter { $0.role == .viewer }.count, localMembers: state.members.count,
                    large: state.presence.isLarge, headClock: state.sync.isLoaded ? state.sync.head : nil,
                    records: state.sync.delivery.replica?.records.count, tombstones: state.sync.delivery.replica?.tombstones.count,
                    presenceUpdates: state.stats.presenceUpdates, pushes: state.stats.pushes,
                    conflicts: state.stats.conflicts, syncLagP95Ms: state.stats.lagP95Ms,
                    memberConnections: state.members.values.map { $0.connection })
            }
        }
    }

    /// Leaves every local session and writes the deletions to Redis (graceful shutdown).
    func shutdown() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit {
            self.stopped = true
            self.tasks.forEach { $0.cancel() }
            var writes: [EventLoopFuture<Void>] = []
            let nowMs = self.node.clock.nowMs()
            for (doc, docState) in self.docs {
                docState.syncTimer?.cancel()
                // Every session this node serves leaves, including detached ones (socket lost, kept for a
                // resume): they have no owner connection, and were left in Redis to linger until the TTL.
                for sid in Array(docState.presence.view.keys) where docState.presence.isLocal(sid) {
                    docState.presence.leave(sid: sid)
                }
                docState.owners.removeAll()
                docState.members.removeAll()
                if let write = docState.presence.tick(nowMs: nowMs).write, self.node.redisIsUp {
                    writes.append(self.node.presenceStore.write(doc: doc, write, on: self.eventLoop))
                }
            }
            self.updateGauges()
            return EventLoopFuture.andAllComplete(writes, on: self.eventLoop)
        }
    }

    func onLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { body() } else { eventLoop.execute(body) }
    }
}

/// One doc's figures in /api/status.
public struct DocStatus: Sendable {
    public var doc: String
    public var members: Int
    public var editors: Int
    public var viewers: Int
    public var localMembers: Int
    public var large: Bool
    public var headClock: UInt64?
    public var records: Int?
    public var tombstones: Int?
    public var presenceUpdates: UInt64
    public var pushes: UInt64
    public var conflicts: UInt64
    public var syncLagP95Ms: Double?
    /// The doc's local connections (the status sampler reads their outbound queues on their loops).
    var memberConnections: [ClientConnection]
}
