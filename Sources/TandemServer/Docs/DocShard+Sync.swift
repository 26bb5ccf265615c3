import NIOCore
import TandemCore

/// Document sync on a shard: catch-up, ordered delivery of commits, and the push pipeline.
///
/// Pushes of one doc are decided one at a time against the replica, committed atomically by a Lua
/// script (which re-checks the decision), and answered only when the commit comes back through the
/// doc's ordered stream — so a pusher's `result` sits exactly at its clock among everyone's `patch`es.
extension DocShard {
    private var limits: SyncLimits {
        var limits = SyncLimits()
        limits.maxRecordBytes = node.config.maxRecordBytes
        limits.maxPushBytes = node.config.maxPushBytes
        limits.maxPushOps = node.config.maxPushOps
        limits.maxDocRecords = node.config.maxDocRecords
        return limits
    }

    // MARK: Loading and catch-up

    /// Reads the doc's records from Redis (once per doc, and again after history was lost). Never fails:
    /// without Redis the doc stays unloaded and members wait for their catch-up.
    func loadSync(_ doc: String, _ docState: DocState) -> EventLoopFuture<Void> {
        guard !docState.syncLoadInFlight else { return eventLoop.makeSucceededVoidFuture() }
        docState.syncLoadInFlight = true
        let wasLoaded = docState.sync.isLoaded
        return node.syncStore.load(doc: doc, on: eventLoop).map { replica, retainedFrom in
            docState.syncLoadInFlight = false
            guard self.docs[doc] === docState else { return }
            self.deliver(docState.sync.load(replica, retainedFrom: retainedFrom), doc: doc, docState)
            if wasLoaded {
                // History we missed is gone from the log: every member restarts from a snapshot.
                for id in docState.members.keys { docState.awaitingSync[id] = .some(nil) }
            }
            let awaiting = docState.awaitingSync
            docState.awaitingSync.removeAll()
            for (id, since) in awaiting {
                guard let member = docState.members[id] else { continue }
                self.attachSync(member.connection, since: since, doc: doc, docState)
            }
            self.processPushes(doc, docState)
        }.recover { error in
            docState.syncLoadInFlight = false
            if error is SyncStoreError {
                // Redis answered, but with something that is not a doc (a corrupted key): say so loudly.
                self.logger.warning("doc state in Redis is invalid; not loading it", metadata: ["doc": "\(doc)", "error": "\(error)"])
            } else {
                self.logger.debug("doc load failed; will retry when Redis is back", metadata: ["doc": "\(doc)", "error": "\(error)"])
            }
            if !docState.sync.isLoaded { self.refuseQueuedPushes(doc, docState) }
        }
    }

    /// Sends a member what it lacks since `since` and makes it live.
    func attachSync(_ connection: ClientConnection, since: UInt64?, doc: String, _ docState: DocState) {
        let id = ObjectIdentifier(connection)
        guard docState.sync.isLoaded else {
            docState.awaitingSync[id] = .some(since)
            return
        }
        docState.nextCatchUpGeneration &+= 1
        docState.catchUpGeneration[id] = docState.nextCatchUpGeneration
        send(docState.sync.attach(id, since: since), to: connection, doc: doc, docState)
    }

    private func send(_ catchUp: SyncDoc<ObjectIdentifier>.CatchUp, to connection: ClientConnection, doc: String, _ docState: DocState) {
        switch catchUp {
        case .snapshot(let head, let records):
            enqueue(SnapshotChunker(doc: doc, head: head, records: records), to: connection)
        case .log(let entries, let head):
            enqueue(LogChunker(doc: doc, entries: entries, head: head, moreAfter: false), to: connection)
        case .fetch(let from, _):
            let id = ObjectIdentifier(connection)
            let generation = docState.catchUpGeneration[id]
            node.syncStore.log(doc: doc, from: from, count: ServerMessage.maxChunkItems, on: eventLoop).whenComplete { result in
                // Also not when a re-join started another catch-up meanwhile (two would interleave).
                guard self.docs[doc] === docState, docState.members[id] != nil, docState.sync.isCatchingUp(id),
                    docState.catchUpGeneration[id] == generation
                else { return }
                let head = docState.sync.head
                let entries = ((try? result.get()) ?? []).filter { $0.clock <= head }
                let next: SyncDoc<ObjectIdentifier>.CatchUp?
                if let last = entries.last, entries.first?.clock == from {
                    self.enqueue(LogChunker(doc: doc, entries: entries, head: head, moreAfter: true), to: connection)
                    next = docState.sync.continueCatchUp(id, through: last.clock)
                } else {
                    // A failed or empty read (Redis unreachable, history trimmed meanwhile) falls back to a
                    // snapshot from the replica. (Continuing "through 0" read the log again from clock 1
                    // while the history was untrimmed: with Redis down every read failed at once and the
                    // retries recursed until the stack overflowed.)
                    next = docState.sync.attach(id, since: nil)
                }
                if let next { self.send(next, to: connection, doc: doc, docState) }
                self.handleEarlyRequests(of: connection, docState)
            }
        }
    }

    /// Handles the requests a connection sent before it was live (see `sync`), once it is.
    func handleEarlyRequests(of connection: ClientConnection, _ docState: DocState) {
        let member = ObjectIdentifier(connection)
        guard docState.members[member] != nil, !docState.sync.isCatchingUp(member),
            let early = docState.earlyRequests.removeValue(forKey: member)
        else { return }
        for (message, role) in early { sync(message, from: connection, role: role) }
    }

    // MARK: Commits

    /// A commit from pub/sub (any node's, ours included).
    func received(_ commit: CommitNotice, doc: String, _ docState: DocState) {
        deliver(docState.sync.receive(commit), doc: doc, docState)
        if docState.sync.gap != nil { scheduleGapFill(doc, docState) }
    }

    /// Sends each newly ordered commit to its recipients: the pusher gets `result`, everyone else the
    /// same `patch` bytes.
    func deliver(_ dispatches: [SyncDoc<ObjectIdentifier>.Dispatch], doc: String, _ docState: DocState) {
        guard !dispatches.isEmpty else { return }
        let nowWall = node.clock.wallMs()
        for dispatch in dispatches {
            let commit = dispatch.commit
            var pusher: ObjectIdentifier?
            if let active = docState.activePush, commit.node == node.config.nodeID,
                commit.by == active.push.connection.sessionID, commit.pushID == active.push.id
            {
                pusher = ObjectIdentifier(active.push.connection)
                finishPush(active, clock: commit.clock, doc: doc, docState)
            }
            if !dispatch.recipients.isEmpty {
                // `at` comes from Redis (or pub/sub): a time in the future counts as no lag, not as 584 million years.
                docState.stats.recordLag(Double(nowWall >= commit.committedAtMs ? nowWall - commit.committedAtMs : 0))
                let patch = ByteBufferAllocator().buffer(bytes: ServerMessage.patch(doc: doc, commit: commit))
                for id in dispatch.recipients where id != pusher {
                    guard let connection = docState.members[id]?.connection else { continue }
                    connection.eventLoop.execute {
                        connection.enqueueSync(.frame(patch, committedAtMs: commit.committedAtMs))
                    }
                }
            }
        }
        // The replica moved: a push waiting for it may go on.
        if let active = docState.activePush, let wanted = active.waitingForHead, docState.sync.head >= wanted {
            docState.activePush?.waitingForHead = nil
            decideActivePush(doc, docState)
        }
    }

    private func scheduleGapFill(_ doc: String, _ docState: DocState) {
        guard docState.gapTimer == nil, !docState.gapFillInFlight else { return }
        // Pub/sub is ordered, so a gap means messages were lost (a resubscribe); give stragglers a moment.
        docState.gapTimer = eventLoop.scheduleTask(in: .milliseconds(100)) {
            docState.gapTimer = nil
            self.fillGap(doc, docState)
        }
    }

    /// Reads missing commits from the Redis log; if the log no longer has them, reloads the doc.
    func fillGap(_ doc: String, _ docState: DocState) {
        // head <= 2^53 − 1 + commits applied since the load (SyncStore refuses larger heads): no overflow.
        guard docs[doc] === docState, !docState.gapFillInFlight, docState.sync.isLoaded, node.redisIsUp,
            docState.sync.head < UInt64.max
        else { return }
        docState.gapFillInFlight = true
        let from = docState.sync.head + 1
        node.syncStore.log(doc: doc, from: from, count: 1000, on: eventLoop).whenComplete { result in
            docState.gapFillInFlight = false
            guard self.docs[doc] === docState, case .success(let entries) = result else { return }
            if let first = entries.first, first.clock > docState.sync.head, first.clock - docState.sync.head > 1 {
                self.logger.warning("commits missing from the retained log; reloading doc", metadata: ["doc": "\(doc)"])
                _ = self.loadSync(doc, docState)
                return
            }
            for entry in entries { self.deliver(docState.sync.receive(entry), doc: doc, docState) }
            if entries.count == 1000 || docState.sync.gap != nil { self.fillGap(doc, docState) }
        }
    }

    /// Compares the replica with Redis's head (periodically and after Redis reconnects).
    func checkHead(_ doc: String, _ docState: DocState) {
        guard docState.sync.isLoaded, node.redisIsUp else { return }
        node.syncStore.headKeepingAlive(doc: doc, on: eventLoop).whenSuccess { head in
            guard self.docs[doc] === docState, head > docState.sync.head else { return }
            self.fillGap(doc, docState)
        }
    }

    // MARK: Client requests

    func sync(_ message: ClientMessage, from connection: ClientConnection, role: Role) {
        onLoop {
            let member = ObjectIdentifier(connection)
            guard let doc = message.doc, let docState = self.docs[doc],
                docState.members[member] != nil || docState.waiting.contains(where: { $0.connection === connection })
                    || docState.owners[connection.sessionID] == member
            else {
                connection.eventLoop.execute {
                    connection.sendError(ProtocolError(.notJoined, "join the doc first", doc: message.doc, pushID: message.pushID))
                }
                return
            }
            if docState.members[member] == nil || docState.sync.isCatchingUp(member) {
                // Joined, but not live yet (the doc is loading, the joiner's presence is being written, or
                // its catch-up is being read from the Redis log): handle the request once it is, after the
                // catch-up. A push decided earlier committed with nobody to answer (results go to live
                // members only; its commit showed up in the catch-up instead), or was refused `not_joined`.
                let limit = self.node.config.maxPendingRequests
                guard docState.earlyRequests[member, default: []].count < limit else {
                    self.node.metrics.clientLimitReached(.pendingRequests)
                    if case .push = message { self.node.metrics.syncPush("error") }
                    let error = ProtocolError(
                        .unavailable,
                        "more than \(limit) requests wait for this connection's join of the doc to complete (--max-pending-requests); retry after it",
                        doc: doc, pushID: message.pushID)
                    connection.eventLoop.execute { connection.sendError(error) }
                    return
                }
                docState.earlyRequests[member, default: []].append((message, role))
                return
            }
            switch message {
            case .push(_, let id, let base, let opsJSON):
                self.acceptPush(connection, role: role, id: id, base: base, opsJSON: opsJSON, doc: doc, docState)
            case .sync(_, let from, let limit):
                self.serveSync(connection, from: from, limit: limit, doc: doc, docState)
            case .ack(_, let clock):
                guard docState.sync.isLoaded else { return }
                self.node.metrics.syncLagClocks.record(Double(docState.sync.head - min(clock, docState.sync.head)))
            default:
                break
            }
        }
    }

    private func acceptPush(
        _ connection: ClientConnection, role: Role, id: JSONValue, base: UInt64, opsJSON: JSONValue, doc: String,
        _ docState: DocState
    ) {
        func refuse(_ error: ProtocolError) { refusePush(connection, error) }
        let size = opsJSON.serialized.count
        guard size <= node.config.maxPushBytes else {
            return refuse(ProtocolError(.tooLarge, "push ops are \(size) bytes; the limit is \(node.config.maxPushBytes)", doc: doc, pushID: id))
        }
        let ops: Ops
        do {
            ops = try Ops(json: opsJSON)
        } catch {
            var refusal = error
            refusal.doc = doc
            refusal.pushID = id
            return refuse(refusal)
        }
        docState.stats.pushes += 1
        if !docState.sync.isLoaded && !node.redisIsUp {
            // Nothing to decide against until Redis is back: refuse now rather than queue the push
            // unanswered for as long as the outage lasts.
            return refuse(ProtocolError(.unavailable, "Redis is unreachable; retry the push", doc: doc, pushID: id))
        }
        if role == .viewer {
            node.metrics.syncPush("discard")
            respond(connection, doc: doc, docState) { clock in
                ServerMessage.result(doc: doc, id: id, action: .discard, clock: clock, applied: nil, reason: "read_only")
            }
            return
        }
        // A doc's pushes are decided one at a time; past this backlog, answering later only adds latency
        // and memory, so refuse (retryable) instead.
        guard docState.pushQueue.count < node.config.maxQueuedPushes else {
            return refuse(
                ProtocolError(
                    .unavailable, "more than \(node.config.maxQueuedPushes) pushes queued for this doc; retry", doc: doc,
                    pushID: id))
        }
        docState.pushQueue.append(
            .init(connection: connection, id: id, base: base, ops: ops, receivedAtNanos: node.clock.nowNanos()))
        node.metrics.pushQueueDepth.increment()
        processPushes(doc, docState)
    }

    /// Drops the pushes of a connection that stopped being a member of the doc (left, lost its socket, or
    /// its session was taken over by a newer connection) and that are not in Redis yet.
    ///
    /// They could never be answered, so the client pushes them again after it reconnects. Committing
    /// them anyway applied them twice in tests (the resumed session's re-pushes raced them); dropping
    /// them leaves exactly one copy: the client's re-push.
    func dropPushes(of member: ObjectIdentifier, _ docState: DocState) {
        let queued = docState.pushQueue.count
        docState.pushQueue.removeAll { ObjectIdentifier($0.connection) == member }
        let dropped = queued - docState.pushQueue.count
        if dropped > 0 { node.metrics.pushQueueDepth.decrement(by: Double(dropped)) }
        if let active = docState.activePush, ObjectIdentifier(active.push.connection) == member {
            docState.activePush?.abandoned = true
        }
    }

    /// The doc could not be read from Redis: answer the pushes waiting for it `unavailable` (they were
    /// neither decided nor applied; the client pushes them again later).
    private func refuseQueuedPushes(_ doc: String, _ docState: DocState) {
        let queued = docState.pushQueue
        guard !queued.isEmpty else { return }
        docState.pushQueue.removeAll()
        node.metrics.pushQueueDepth.decrement(by: Double(queued.count))
        for push in queued {
            refusePush(push.connection, ProtocolError(.unavailable, "Redis is unreachable; retry the push", doc: doc, pushID: push.id))
        }
    }

    /// Sends a clock-less answer (discard) in order: at the member's current position in the stream.
    private func respond(_ connection: ClientConnection, doc: String, _ docState: DocState, _ frame: (UInt64) -> [UInt8]) {
        let clock = docState.sync.cursor(of: ObjectIdentifier(connection)) ?? docState.sync.head
        let bytes = frame(clock)
        connection.eventLoop.execute { connection.enqueueSync(bytes) }
    }

    /// Starts the next push if none is in progress and the replica is loaded.
    func processPushes(_ doc: String, _ docState: DocState) {
        guard docState.activePush == nil, docState.sync.isLoaded, !docState.pushQueue.isEmpty else { return }
        let push = docState.pushQueue.removeFirst()
        node.metrics.pushQueueDepth.decrement()
        if push.base < docState.sync.head { node.metrics.syncConcurrentPushes.increment() }
        docState.activePush = DocState.ActivePush(push: push)
        decideActivePush(doc, docState)
    }

    private func decideActivePush(_ doc: String, _ docState: DocState) {
        guard var active = docState.activePush else { return }
        let push = active.push
        if active.abandoned {
            // Its connection is gone (see dropPushes): nothing of it is in Redis, leave it unapplied.
            docState.activePush = nil
            return processPushes(doc, docState)
        }
        let replica = docState.sync.replica!
        if push.base > replica.head {
            // The client saw a newer clock (on another node) than this replica has yet: wait for it.
            if active.waitingForHead == nil {
                active.waitingForHead = push.base
                active.waitDeadlineNanos = node.clock.nowNanos() + 2_000_000_000
                docState.activePush = active
                scheduleWaitCheck(doc, docState)
                fillGap(doc, docState)
                return
            }
            if node.clock.nowNanos() < active.waitDeadlineNanos { return }
            node.metrics.syncPush("discard")
            docState.activePush = nil
            respond(push.connection, doc: doc, docState) { clock in
                ServerMessage.result(doc: doc, id: push.id, action: .discard, clock: clock, applied: nil, reason: "invalid_base")
            }
            return processPushes(doc, docState)
        }
        let decision: PushDecision
        do {
            decision = try replica.decide(ops: push.ops, base: push.base, limits: limits)
        } catch {
            var refusal = error
            refusal.doc = doc
            refusal.pushID = push.id
            docState.activePush = nil
            refusePush(push.connection, refusal)
            return processPushes(doc, docState)
        }
        if decision.action == .discard {
            node.metrics.syncPush("discard")
            if decision.conflicted { countConflict(docState) }
            docState.activePush = nil
            recordPushLatency(push)
            respond(push.connection, doc: doc, docState) { clock in
                ServerMessage.result(doc: doc, id: push.id, action: .discard, clock: clock, applied: nil, reason: decision.reason)
            }
            return processPushes(doc, docState)
        }
        guard node.redisIsUp else { return failActivePush(doc, docState, .unavailable, "Redis is unreachable; retry the push") }
        active.decision = decision
        active.attempts += 1
        // No longer waiting: it is being committed (a stale wait would get it refused while in flight).
        active.waitingForHead = nil
        docState.activePush = active
        node.syncStore.commit(doc: doc, sessionID: push.connection.sessionID, pushID: push.id, decision: decision, on: eventLoop)
            .whenComplete { result in
                guard self.docs[doc] === docState, let current = docState.activePush, current.push.id == push.id,
                    current.push.connection === push.connection
                else { return }
                switch result {
                case .success(.committed(let clock, _)):
                    docState.activePush?.committedClock = clock
                    if docState.sync.head >= clock {
                        // Already dispatched past it without recognising it (cannot normally happen).
                        docState.activePush = nil
                        self.processPushes(doc, docState)
                    } else {
                        docState.activePush?.waitingForHead = nil
                        self.scheduleGapFill(doc, docState)
                    }
                case .success(.conflict(let head)):
                    guard current.attempts < 16 else {
                        return self.failActivePush(doc, docState, .unavailable, "too much contention on these records; retry")
                    }
                    if docState.sync.head >= head {
                        self.decideActivePush(doc, docState)
                    } else {
                        docState.activePush?.waitingForHead = head
                        docState.activePush?.waitDeadlineNanos = self.node.clock.nowNanos() + 2_000_000_000
                        self.scheduleWaitCheck(doc, docState)
                    }
                case .success(.duplicate):
                    self.node.metrics.syncPush("discard")
                    docState.activePush = nil
                    self.respond(push.connection, doc: doc, docState) { clock in
                        ServerMessage.result(doc: doc, id: push.id, action: .discard, clock: clock, applied: nil, reason: "duplicate")
                    }
                    self.processPushes(doc, docState)
                case .success(.tooLarge):
                    self.failActivePush(doc, docState, .tooLarge, "a doc holds at most \(self.node.config.maxDocRecords) records")
                case .failure(let error):
                    self.logger.debug("push commit failed", metadata: ["doc": "\(doc)", "error": "\(error)"])
                    self.failActivePush(doc, docState, .unavailable, SyncStore.commitFailureMessage(error))
                }
            }
    }

    /// While a push waits for the replica, make sure it does not wait forever (lost pub/sub messages).
    private func scheduleWaitCheck(_ doc: String, _ docState: DocState) {
        eventLoop.scheduleTask(in: .milliseconds(250)) {
            guard self.docs[doc] === docState, let active = docState.activePush, active.waitingForHead != nil else { return }
            if self.node.clock.nowNanos() >= active.waitDeadlineNanos {
                self.decideActivePush(doc, docState)
                // Only if that same push is still waiting: deciding it may have answered it (invalid_base)
                // and started the next push, which then waits on its own deadline.
                if let still = docState.activePush, still.push.id == active.push.id,
                    still.push.connection === active.push.connection, still.waitingForHead != nil
                {
                    self.failActivePush(doc, docState, .unavailable, "this node could not catch up with the doc; retry")
                }
            } else {
                self.fillGap(doc, docState)
                self.scheduleWaitCheck(doc, docState)
            }
        }
    }

    private func failActivePush(_ doc: String, _ docState: DocState, _ code: ErrorCode, _ message: String) {
        guard let active = docState.activePush else { return }
        docState.activePush = nil
        refusePush(active.push.connection, ProtocolError(code, message, doc: doc, pushID: active.push.id))
        processPushes(doc, docState)
    }

    /// Answers a push with an error (not applied; counted as `action="error"`).
    private func refusePush(_ connection: ClientConnection, _ error: ProtocolError) {
        node.metrics.syncPush("error")
        connection.eventLoop.execute { connection.sendError(error) }
    }

    /// Counts a rebase or discard caused by a concurrent change, node-wide and for the doc.
    private func countConflict(_ docState: DocState) {
        node.metrics.syncConflicts.increment()
        docState.stats.conflicts += 1
    }

    /// Queues a catch-up on the connection's loop, behind what it already has. `reply`: it answers an
    /// explicit `sync` (else it is the catch-up after a `joined`).
    private func enqueue(_ chunker: some CatchUpChunker, to connection: ClientConnection, reply: Bool = false) {
        let info = ClientConnection.CatchUpInfo(doc: chunker.doc, isReply: reply)
        connection.eventLoop.execute { connection.enqueueSync(.chunks(chunker, info)) }
    }

    /// The active push's commit reached the ordered stream: answer the pusher.
    private func finishPush(_ active: DocState.ActivePush, clock: UInt64, doc: String, _ docState: DocState) {
        docState.activePush = nil
        let decision = active.decision
        let action = decision?.action ?? .commit
        node.metrics.syncPush(action.rawValue)
        if decision?.conflicted == true { countConflict(docState) }
        recordPushLatency(active.push)
        let frame = ServerMessage.result(
            doc: doc, id: active.push.id, action: action, clock: clock,
            applied: action == .rebase ? decision?.applied.json : nil, reason: nil)
        let connection = active.push.connection
        if docState.sync.cursor(of: ObjectIdentifier(connection)) != nil {
            connection.eventLoop.execute { connection.enqueueSync(frame) }
        }
        eventLoop.execute { self.processPushes(doc, docState) }
    }

    private func recordPushLatency(_ push: DocState.PendingPush) {
        node.metrics.syncPushSeconds.record(Double(node.clock.nowNanos() - push.receivedAtNanos) / 1e9)
    }

    /// Explicit chunked catch-up: `{"t":"sync","doc":D,"from":F,"limit":L}`.
    private func serveSync(_ connection: ClientConnection, from: UInt64, limit: Int?, doc: String, _ docState: DocState) {
        guard docState.sync.isLoaded else {
            connection.eventLoop.execute {
                connection.sendError(ProtocolError(.unavailable, "the doc is not loaded yet (Redis unreachable); retry", doc: doc))
            }
            return
        }
        let head = docState.sync.head
        let limit = UInt64(min(max(limit ?? ServerMessage.maxChunkItems, 1), ServerMessage.maxChunkItems))
        // `from` is the client's (range-checked when parsed, but never trusted in arithmetic): nothing after
        // it when it is at or past the head; otherwise from < head, so from + 1 and from + n cannot overflow.
        guard from < head else {
            enqueue(LogChunker(doc: doc, entries: [], head: head, moreAfter: false), to: connection, reply: true)
            return
        }
        let through = from + min(limit, head - from)
        if from < docState.sync.retainedFrom - 1 {
            enqueue(SnapshotChunker(doc: doc, head: head, records: docState.sync.replica!.records), to: connection, reply: true)
            return
        }
        if let entries = docState.sync.recentCommits(from: from + 1, through: through) {
            enqueue(LogChunker(doc: doc, entries: entries, head: head, moreAfter: through < head), to: connection, reply: true)
            return
        }
        node.syncStore.log(doc: doc, from: from + 1, count: Int(limit), on: eventLoop).whenComplete { result in
            switch result {
            case .success(let entries):
                let within = entries.filter { $0.clock <= through }
                self.enqueue(LogChunker(doc: doc, entries: within, head: head, moreAfter: through < head), to: connection, reply: true)
            case .failure:
                connection.eventLoop.execute {
                    connection.sendError(ProtocolError(.unavailable, "Redis is unreachable; retry the sync", doc: doc))
                }
            }
        }
    }
}
