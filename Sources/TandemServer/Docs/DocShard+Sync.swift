import NIOCore
import TandemCore

/// Document sync on a shard: loading, catch-up and the clients' sync requests.
///
/// Pushes are decided by the doc's `PushPipeline` (pure; `DocShard+Pipeline` carries out its actions).
/// What stays here is message validation (size, ops), holding the requests of connections that are not
/// live members yet, catch-up I/O and explicit `sync` requests.
extension DocShard {
    // MARK: Loading and catch-up

    /// Reads the doc's records from Redis (the first time; again after that failed). Never fails: without
    /// Redis the doc stays unloaded and members wait for their catch-up. (Reloads after lost history are
    /// the pipeline's: `PushAction.reload`.)
    func loadSync(_ doc: String, _ docState: DocState) -> EventLoopFuture<Void> {
        guard !docState.replicaReadInFlight, !docState.sync.isLoaded else { return eventLoop.makeSucceededVoidFuture() }
        docState.updateUnread { $0.inFlight = true }
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        return syncStore.load(doc: doc, on: eventLoop).map { loaded in
            let docState = bound.value
            docState.updateUnread { $0.inFlight = false }
            guard self.docs[doc] === docState, !docState.sync.isLoaded else { return }
            // Members that joined meanwhile get their catch-up first.
            var attaching: [(ObjectIdentifier, UInt64?)] = []
            for (id, since) in docState.awaitingReplica where docState.members[id] != nil { attaching.append((id, since)) }
            docState.replicaRead = .read
            docState.legacyRePushes = loaded.legacyRePushes
            self.verifyLoaded(loaded, doc: doc, docState)
            let actions = docState.sync.load(
                loaded.replica, retainedFrom: loaded.retainedFrom, attaching: attaching, now: self.clock.nowNanos())
            self.perform(actions, doc: doc, docState)
            for (id, _) in attaching {
                if let member = docState.members[id] { self.handleEarlyRequests(of: member.connection, docState) }
            }
        }.recover { error in
            let docState = bound.value
            docState.updateUnread { $0.inFlight = false }
            if error is SyncStoreError {
                // Redis answered, but with something that is not a doc (a corrupted key): say so loudly.
                self.logger.warning("doc state in Redis is invalid; not loading it", metadata: ["doc": "\(doc)", "error": "\(error)"])
            } else {
                self.logger.debug("doc load failed; will retry when Redis is back", metadata: ["doc": "\(doc)", "error": "\(error)"])
            }
            guard self.docs[doc] === docState, !docState.sync.isLoaded else { return }
            // Nothing to decide against: answer what waits for the doc instead of holding it for the outage.
            for id in docState.awaitingReplica.keys {
                if let member = docState.members[id] { self.refuseEarlyRequests(of: member.connection, doc: doc, docState) }
            }
        }
    }

    /// Sends a member what it lacks since `since` and makes it live.
    func attachSync(_ connection: any DocMember, since: UInt64?, doc: String, _ docState: DocState) {
        let id = ObjectIdentifier(connection)
        guard docState.sync.isLoaded else {
            docState.updateUnread { $0.awaiting[id] = .some(since) }
            return
        }
        let (catchUp, actions) = docState.sync.attach(id, since: since, now: clock.nowNanos())
        var outbox = SyncOutbox()
        send(catchUp, to: connection, doc: doc, docState, into: &outbox)
        perform(actions, doc: doc, docState, into: &outbox)
        outbox.flush()
        scheduleSyncTimer(doc, docState)
    }

    /// Starts a catch-up: queues it (snapshot, log from memory) or reads it from the Redis log (`fetch`).
    func send(
        _ catchUp: SyncDoc<ObjectIdentifier>.CatchUp, to connection: any DocMember, doc: String, _ docState: DocState,
        into outbox: inout SyncOutbox
    ) {
        let id = ObjectIdentifier(connection)
        let generation = docState.catchUps.start(for: id)
        let info = CatchUpInfo(doc: doc, isReply: false)
        switch catchUp {
        case .snapshot(let head, let records):
            outbox.add(
                connection, .chunks(SnapshotChunker(doc: doc, head: head, records: records, sum: snapshotSum(docState, head: head)), info))
        case .log(let entries, let head):
            outbox.add(connection, .chunks(LogChunker(doc: doc, entries: entries, head: head, moreAfter: false), info))
        case .fetch(let from, _):
            let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
            syncStore.log(doc: doc, from: from, count: ServerMessage.maxChunkItems, on: eventLoop).whenComplete { result in
                let docState = bound.value
                // Also not when a re-join started another catch-up meanwhile (two would interleave).
                guard self.docs[doc] === docState, docState.members[id] != nil, docState.sync.delivery.isCatchingUp(id),
                    docState.catchUps.isCurrent(generation, for: id)
                else { return }
                let head = docState.sync.head
                let entries = ((try? result.get())?.entries ?? []).filter { $0.clock <= head }
                var outbox = SyncOutbox()
                let next: SyncDoc<ObjectIdentifier>.CatchUp?
                if let last = entries.last, entries.first?.clock == from {
                    outbox.add(connection, .chunks(LogChunker(doc: doc, entries: entries, head: head, moreAfter: true), info))
                    next = docState.sync.continueCatchUp(id, through: last.clock)
                } else {
                    // A failed or empty read (Redis unreachable, history trimmed meanwhile) falls back to a
                    // snapshot from the replica. (Continuing "through 0" read the log again from clock 1
                    // while the history was untrimmed: with Redis down every read failed at once and the
                    // retries recursed until the stack overflowed.)
                    let (snapshot, actions) = docState.sync.attach(id, since: nil, now: self.clock.nowNanos())
                    self.send(snapshot, to: connection, doc: doc, docState, into: &outbox)
                    self.perform(actions, doc: doc, docState, into: &outbox)
                    next = nil
                }
                if let next { self.send(next, to: connection, doc: doc, docState, into: &outbox) }
                outbox.flush()
                self.scheduleSyncTimer(doc, docState)
                self.handleEarlyRequests(of: connection, docState)
            }
        }
    }

    /// A member receives the doc's stream: attached, and its catch-up is not being read any more.
    func isLive(_ member: ObjectIdentifier, _ docState: DocState) -> Bool {
        docState.members[member] != nil && docState.sync.delivery.cursor(of: member) != nil
    }

    /// Handles the requests a connection sent before it was live (see `sync`), once it is.
    func handleEarlyRequests(of connection: any DocMember, _ docState: DocState) {
        let member = ObjectIdentifier(connection)
        guard isLive(member, docState), let early = docState.earlyRequests.removeValue(forKey: member) else { return }
        for request in early { sync(request.message, from: connection, role: request.role, messageBytes: request.bytes) }
    }

    /// The doc cannot be read: answers the requests a connection holds for it (pushes and syncs get
    /// `unavailable`; acks need no answer).
    func refuseEarlyRequests(of connection: any DocMember, doc: String, _ docState: DocState) {
        guard let early = docState.earlyRequests.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        for request in early { answerWithoutReplica(request.message, from: connection, doc: doc) }
    }

    /// A request for a doc whose replica cannot be read now (Redis unreachable): nothing can be decided
    /// or served, so it is answered at once rather than held for the length of the outage.
    private func answerWithoutReplica(_ message: ClientMessage, from connection: any DocMember, doc: String) {
        switch message {
        case .push(_, let id, _, _):
            refusePush(connection, ProtocolError(.unavailable, "Redis is unreachable; retry the push", doc: doc, pushID: id))
        case .sync:
            connection.eventLoop.execute {
                connection.sendError(ProtocolError(.unavailable, "the doc is not loaded yet (Redis unreachable); retry", doc: doc))
            }
        default:
            break
        }
    }

    // MARK: Client requests

    /// - Parameters:
    ///   - messageBytes: the size of the client's message as received (0: unknown).
    ///   - readAtNanos: when the message was read off the connection (`NodeClock.nowNanos`; 0: not counted,
    ///     as for requests held until their join completed). A push's time since then counts against its
    ///     wait bound.
    func sync(
        _ message: ClientMessage, from connection: any DocMember, role: Role, messageBytes: Int = 0, readAtNanos: UInt64 = 0
    ) {
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
            guard self.isLive(member, docState) else {
                if docState.members[member] != nil, !docState.sync.isLoaded, !self.redisIsUp(doc) {
                    return self.answerWithoutReplica(message, from: connection, doc: doc)
                }
                // Joined, but not live yet (the doc is loading, the joiner's presence is being written, or
                // its catch-up is being read from the Redis log): handle the request once it is, after the
                // catch-up, so that a push's answer has its place in the member's stream.
                let limit = self.settings.maxPendingRequests
                guard docState.earlyRequests[member, default: []].count < limit else {
                    self.metrics.clientLimitReached(.pendingRequests)
                    if case .push = message { self.metrics.syncPush("error") }
                    let error = ProtocolError(
                        .unavailable,
                        "more than \(limit) requests wait for this connection's join of the doc to complete (--max-pending-requests); retry after it",
                        doc: doc, pushID: message.pushID)
                    connection.eventLoop.execute { connection.sendError(error) }
                    return
                }
                docState.earlyRequests[member, default: []].append((message, role, messageBytes))
                return
            }
            switch message {
            case .push(_, let id, let base, let rawOps):
                self.acceptPush(
                    connection, role: role, id: id, base: base, rawOps: rawOps, messageBytes: messageBytes,
                    readAtNanos: readAtNanos, doc: doc, docState)
            case .sync(_, let from, let limit):
                self.serveSync(connection, from: from, limit: limit, doc: doc, docState)
            case .ack(_, let clock):
                let head = docState.sync.head
                self.metrics.syncLagClocks.record(Double(head - min(clock, head)))
            default:
                break
            }
        }
    }

    /// A live member's push: admitted on its envelope alone (loop lag, the doc's waiting time), then its
    /// ops parsed and validated (size, JSON, ops), then decided by the pipeline.
    private func acceptPush(
        _ connection: any DocMember, role: Role, id: JSONValue, base: UInt64, rawOps: RawJSON, messageBytes: Int,
        readAtNanos: UInt64, doc: String, _ docState: DocState
    ) {
        let member = ObjectIdentifier(connection)
        let now = clock.nowNanos()
        // Time since the message was read: the hop to this loop and the tasks ahead of it there.
        let waited = readAtNanos > 0 && now > readAtNanos ? now - readAtNanos : 0
        // What the push waited before its doc saw it (the loop's lag standing in for its time in the
        // socket): it counts against the same bound as its wait in the doc, and bounds a commit linger.
        let before = readAtNanos > 0 ? loopLoad.waitedBeforeDoc(sinceReadNanos: waited) : 0
        if role == .editor {
            if readAtNanos > 0 { metrics.syncPushReadDelay.record(Double(waited) / 1e9) }
            // Its member was refused with a hint that has not passed: this push was on its way before its
            // connection heard (`MemberPushBackoff`). Answered as the connection would have, with the time
            // left — before admission, and outside the backlogs that lengthen every member's hints.
            if !docState.pushBackoff.isEmpty, let left = docState.pushBackoff.timeLeftMs(member, now: now) {
                docState.stats.pushes += 1
                metrics.syncOverloadRefusals[.inFlight]!.increment()
                metrics.syncRetryAfterSeconds.record(Double(left) / 1000)
                return refusePush(connection, ProtocolError(.unavailable, PushBackoff.message, doc: doc, pushID: id, retryAfterMs: left))
            }
            // A saturated loop: the push has waited behind it already, and queueing it would only add to that.
            if loopLoad.isLagging, docState.sync.isLoaded, redisIsUp(doc) {
                docState.stats.pushes += 1
                metrics.syncOverloadRefusals[.loopLag]!.increment()
                let retryAfterMs = loopLoad.retryAfterMs(now: now)
                let error = ProtocolError(.unavailable, loopLoad.refusalMessage(), doc: doc, pushID: id, retryAfterMs: retryAfterMs)
                metrics.syncRetryAfterSeconds.record(Double(retryAfterMs) / 1000)
                docState.pushBackoff.refused(member, retryAfterMs: retryAfterMs, now: now)
                return refusePush(connection, error)
            }
            metrics.syncPushWaitEstimate.record(docState.askSync { $0.estimatedWaitNanos(now: now) } / 1e9)
            // An overloaded doc refuses before the ops are measured or parsed: refusals must stay cheap,
            // or answering them would eat the capacity they protect.
            if let refused = docState.sync.refuseIfBusy(
                from: member, pushID: id, now: now, waitedNanos: before, marginNanos: UInt64(loopLoad.marginNanos))
            {
                docState.stats.pushes += 1
                return perform(refused, doc: doc, docState)
            }
        }
        // Admitted: only now are the ops parsed (the connection only delimited them).
        let opsJSON: JSONValue
        do {
            opsJSON = try rawOps.parse(maxDepth: settings.maxJSONDepth)
        } catch {
            return refusePush(connection, ProtocolError(.badMessage, "invalid JSON in \"ops\": \(error)", doc: doc, pushID: id))
        }
        // The limit is on the ops as the server writes them (compact JSON). That is never more than twice the
        // text they were parsed from (only U+2028/U+2029 grow, from 3 bytes to 6), so a message of at most
        // half the limit is within it without serializing the ops just to measure them.
        let size: Int
        if messageBytes > 0 && messageBytes <= settings.maxPushBytes / 2 {
            size = messageBytes
        } else {
            size = opsJSON.serialized.count
            guard size <= settings.maxPushBytes else {
                return refusePush(
                    connection,
                    ProtocolError(.tooLarge, "push ops are \(size) bytes; the limit is \(settings.maxPushBytes)", doc: doc, pushID: id))
            }
        }
        let ops: Ops
        do {
            ops = try Ops(json: opsJSON)
        } catch {
            var refusal = error
            refusal.doc = doc
            refusal.pushID = id
            return refusePush(connection, refusal)
        }
        docState.stats.pushes += 1
        let actions = docState.sync.push(
            from: member, sessionID: connection.sessionID, pushID: id, base: base, ops: ops, bytes: size,
            readOnly: role == .viewer, now: now, waitedNanos: before, loopLagNanos: UInt64(max(loopLoad.lagNanos, 0)),
            marginNanos: UInt64(loopLoad.marginNanos))
        perform(actions, doc: doc, docState)
    }

    /// Answers a push the pipeline never saw (invalid, or no replica) with an error.
    func refusePush(_ connection: any DocMember, _ error: ProtocolError) {
        metrics.syncPush("error")
        connection.eventLoop.execute { connection.sendError(error) }
    }

    /// Explicit chunked catch-up: `{"t":"sync","doc":D,"from":F,"limit":L}`.
    private func serveSync(_ connection: any DocMember, from: UInt64, limit: Int?, doc: String, _ docState: DocState) {
        @Sendable func reply(_ chunker: some CatchUpChunker) {
            let info = CatchUpInfo(doc: doc, isReply: true)
            connection.eventLoop.execute { connection.deliverSync([.chunks(chunker, info)]) }
        }
        let delivery = docState.sync.delivery
        let head = delivery.head
        let limit = UInt64(min(max(limit ?? ServerMessage.maxChunkItems, 1), ServerMessage.maxChunkItems))
        // `from` is the client's (range-checked when parsed, but never trusted in arithmetic): nothing after
        // it when it is at or past the head; otherwise from < head, so from + 1 and from + n cannot overflow.
        guard from < head else {
            return reply(LogChunker(doc: doc, entries: [], head: head, moreAfter: false))
        }
        let through = from + min(limit, head - from)
        if from < delivery.retainedFrom - 1, let replica = delivery.replica {
            return reply(SnapshotChunker(doc: doc, head: head, records: replica.records, sum: replica.head == head ? replica.sum : nil))
        }
        if let entries = delivery.recentCommits(from: from + 1, through: through) {
            return reply(LogChunker(doc: doc, entries: entries, head: head, moreAfter: through < head))
        }
        syncStore.log(doc: doc, from: from + 1, count: Int(limit), on: eventLoop).whenComplete { result in
            switch result {
            case .success(let read):
                let within = read.entries.filter { $0.clock <= through }
                // A read cut short by its byte budget ends before `through`: the client asks on from its end.
                reply(LogChunker(doc: doc, entries: within, head: head, moreAfter: (within.last?.clock ?? through) < head))
            case .failure:
                connection.eventLoop.execute {
                    connection.sendError(ProtocolError(.unavailable, "Redis is unreachable; retry the sync", doc: doc))
                }
            }
        }
    }
}

extension DocShard {
    /// The record schemas were reloaded: each loaded doc's pipeline decides its next pushes against the
    /// schema that now applies to it (a batch already in Redis was decided against the old one).
    /// Completes once this shard's docs use the new schemas.
    func schemasChanged(_ schemas: SchemaStore) -> EventLoopFuture<Void> {
        eventLoop.submit {
            for (doc, docState) in self.docs { docState.sync.schema = schemas.schema(for: doc) }
        }
    }

    /// The checksum of a snapshot taken from the replica at `head` (issue 13).
    func snapshotSum(_ docState: DocState, head: UInt64) -> DocChecksum? {
        guard let replica = docState.sync.delivery.replica, replica.head == head else { return nil }
        return replica.sum
    }
}
