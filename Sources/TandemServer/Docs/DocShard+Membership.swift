import Logging
import NIOCore
import TandemCore

/// Membership: joins (answered once the doc is read and the joiner's presence is in Redis), re-joins,
/// leaves and lost sockets, and presence updates. Called by connections from their loops; every entry hops
/// to the shard's loop.

extension DocShard {
    // MARK: Membership (called by connections, hop to this loop)

    /// - Parameter number: the connection's number for this join (increasing), handed back with its `joined`.
    func join(
        _ connection: any DocMember, doc: String, number: UInt64, role: Role, state: PresenceState?, since: UInt64?,
        presence: PresenceMode = .full
    ) {
        onLoop {
            let join = DocState.PendingJoin(
                connection: connection, number: number, role: role, state: state, since: since, presence: presence)
            let docState = self.docState(for: doc)
            if docState.isLoading {
                // At most one waiting join per connection: a newer join replaces it (its `since` wins, and its
                // state unless it has none) and one `joined` answers both. The list is bounded by the
                // connections joining the doc.
                docState.updateWaiting { waiting in
                    if let index = waiting.firstIndex(where: { $0.connection === connection }) {
                        let earlier = waiting[index]
                        waiting[index] = DocState.PendingJoin(
                            connection: connection, number: number, role: role,
                            state: presence.isShown ? state ?? earlier.state : nil, since: since, presence: presence)
                    } else {
                        waiting.append(join)
                    }
                }
            } else {
                self.completeJoin(join, doc: doc, docState)
            }
        }
    }

    func completeJoin(_ join: DocState.PendingJoin, doc: String, _ docState: DocState) {
        let connection = join.connection
        let sid = connection.sessionID
        var existing = docState.presence.entry(of: sid)
        if let existing, existing.user != connection.identity.user {
            connection.eventLoop.execute {
                connection.membershipEnded(
                    doc: doc, error: ProtocolError(.forbidden, "session id belongs to another user", doc: doc))
            }
            return
        }
        if let previous = docState.owners[sid], previous != ObjectIdentifier(connection) {
            // The same session on a newer connection (resume): the old one no longer speaks for it here.
            if let old = docState.removeMember(previous) {
                docState.deliveryGroups = nil
                detachSync(previous, doc: doc, docState)
                old.connection.eventLoop.execute { old.connection.membershipEnded(doc: doc, error: nil) }
            }
        }
        // Joining hidden or without presence (issue 13): the session has no entry. One it had (a re-join
        // that changes the mode) is deleted like a leave, so everyone sees it go.
        if !join.presence.isShown, docState.presence.isLocal(sid) {
            docState.presence.leave(sid: sid)
            existing = nil
        }
        if join.presence.isShown, docState.members[ObjectIdentifier(connection)] != nil,
            docState.owners[sid] == ObjectIdentifier(connection), existing != nil
        {
            return completeRejoin(join, doc: doc, docState)
        }
        let isNewHere = docState.members[ObjectIdentifier(connection)] == nil
        if isNewHere, let departed = recentDepartures[DocUser(doc: doc, user: connection.identity.user)],
            clock.nowMs() < departed + Self.departureWindowMs
        {
            connection.eventLoop.execute { connection.markReconnect() }
        }
        // The version the session resumes from. Entries are decoded only up to `PresenceEntry.maxVersion`,
        // so `+ 1` cannot overflow; but an entry at or just below it (a corrupted or hostile Redis: no
        // session gets near 2^52 updates) would pass 2^53 − 1 within a few updates, which every other node
        // refuses as corrupt, and the session would be invisible outside this node. Any stored version above
        // `PresenceEntry.maxResumedVersion` is treated as corrupt instead: the session starts again at
        // version 1, which other nodes take (the entry comes from another node than the one they hold, so
        // any version replaces it).
        var resumedVersion = existing?.version ?? 0
        if resumedVersion > PresenceEntry.maxResumedVersion {
            logger.warning(
                "presence entry in Redis has a version above 2^52; treating it as corrupt and starting the session at version 1",
                metadata: ["doc": "\(doc)", "session": "\(sid)", "version": "\(resumedVersion)"])
            resumedVersion = 0
        }
        if join.presence.isShown {
            let entry = PresenceEntry(
                sid: sid, user: connection.identity.user, name: connection.identity.name, role: join.role,
                node: settings.nodeID, version: resumedVersion + 1,
                state: join.state ?? existing?.stateBytes ?? .empty)
            docState.presence.join(entry)
        }
        docState.owners[sid] = ObjectIdentifier(connection)
        updateGauges()
        // Answer once the entry is in Redis (or Redis is out of reach), so a client that has its `joined`
        // is listed in every later `joined`, on every node.
        let written: EventLoopFuture<Void>
        if let write = docState.presence.takeWrite(nowMs: clock.nowMs()) {
            written = perform(write, doc: doc, docState)
        } else {
            written = eventLoop.makeSucceededVoidFuture()
        }
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        written.whenComplete { _ in
            let docState = bound.value
            guard self.docs[doc] === docState, docState.owners[sid] == ObjectIdentifier(connection) else { return }
            // A member from here on: deltas and commits reach it only after its `joined`.
            let ticket = docState.presence.localHandle(of: sid).map {
                DocTicket(docState: docState, handle: $0, eventLoop: self.eventLoop)
            }
            docState.addMember(
                ObjectIdentifier(connection),
                DocState.Member(connection: connection, role: join.role, presence: join.presence, ticket: ticket))
            docState.deliveryGroups = nil
            let clock = docState.sync.isLoaded ? docState.sync.head : nil
            // `none`: no presence either way, so the list is empty (and no later delta reaches it).
            let list = join.presence.receivesPresence ? docState.presence.presenceList() : []
            let frame = ServerMessage.joined(doc: doc, role: join.role, presence: list, clock: clock)
            let number = join.number
            connection.eventLoop.execute { connection.joinConfirmed(doc: doc, join: number, frame: frame, ticket: ticket) }
            self.attachSync(connection, since: join.since, doc: doc, docState)
            self.handleEarlyRequests(of: connection, docState)
        }
    }

    /// A join of a doc by a connection that is already a live member of it. Its state is a presence update
    /// (rate-limited per user like any other: a re-join is no way around `--presence-rate`); the member
    /// gets `joined` again and a catch-up from its new `since`, which replaces any catch-up of the doc still
    /// queued for it (`any DocMember.joinConfirmed`). Its entry is already in Redis, so nothing waits.
    func completeRejoin(_ join: DocState.PendingJoin, doc: String, _ docState: DocState) {
        let connection = join.connection
        if let state = join.state {
            let outcome = docState.presence.offerUpdate(sid: connection.sessionID, state: state, nowMs: self.clock.nowMs())
            metrics.presenceUpdate(outcome)
            if outcome == .rateLimited {
                connection.eventLoop.execute { connection.presenceRateLimited(doc: doc) }
            }
        }
        let clock = docState.sync.isLoaded ? docState.sync.head : nil
        let frame = ServerMessage.joined(doc: doc, role: join.role, presence: docState.presence.presenceList(), clock: clock)
        let ticket = docState.members[ObjectIdentifier(connection)]?.ticket
        let number = join.number
        connection.eventLoop.execute { connection.joinConfirmed(doc: doc, join: number, frame: frame, ticket: ticket) }
        attachSync(connection, since: join.since, doc: doc, docState)
        handleEarlyRequests(of: connection, docState)
    }

    /// A connection leaves a doc (`leave: true`, deleted at once) or loses its socket (`leave: false`,
    /// detached: presence stays for the TTL so a resume can take it over).
    func removeMember(_ connection: any DocMember, doc: String, leave: Bool, acknowledge: Bool = false) {
        onLoop {
            guard let docState = self.docs[doc] else { return }
            let id = ObjectIdentifier(connection)
            docState.updateWaiting { $0.removeAll { ObjectIdentifier($0.connection) == id } }
            if docState.removeMember(id) != nil { docState.deliveryGroups = nil }
            self.detachSync(id, doc: doc, docState)
            let sid = connection.sessionID
            if docState.owners[sid] == id {
                docState.owners.removeValue(forKey: sid)
                if leave {
                    docState.presence.leave(sid: sid)
                } else {
                    docState.presence.detach(
                        sid: sid, nowMs: self.clock.nowMs(),
                        graceMs: self.detachedHold.isHolding(nowMs: self.clock.nowMs()) ? UInt64(self.settings.stormResumeGraceMs) : nil)
                }
                self.recentDepartures[DocUser(doc: doc, user: connection.identity.user)] = self.clock.nowMs()
            }
            if acknowledge {
                let frame = ServerFrame.text(ServerMessage.left(doc: doc), allocator: ByteBufferAllocator())
                connection.eventLoop.execute { connection.deliverSync([.frame(frame, committedAtMs: nil)]) }
            }
            self.updateGauges()
        }
    }

    /// Where a connection's presence updates for one doc go: made when it first sends presence for the
    /// doc and kept until its docs change, one reference per update in the batch instead of a doc id, a
    /// shard and a ticket to retain and release each (issue 14).
    final class PresenceRoute: Sendable {
        let doc: String
        let shard: DocShard
        /// The ticket the doc gave the connection with its `joined` (nil before that): skips the lookups
        /// while it is valid.
        let ticket: DocTicket?

        init(doc: String, shard: DocShard, ticket: DocTicket?) {
            self.doc = doc
            self.shard = shard
            self.ticket = ticket
        }
    }

    /// Presence batches of one other loop's connections for this shard, gathered on that loop during one
    /// round of it (`updatePresence`).
    final class InboundHandoff: Sendable {
        let loop: EventLoop
        let batches: NIOLoopBoundBox<Gathered>

        final class Gathered {
            var pending: [Batch] = []
            /// A task on `loop` will hand `pending` over.
            var scheduled = false
        }

        struct Batch: Sendable {
            let connection: any DocMember
            let updates: [PresenceUpdate]
            let readAtNanos: UInt64
        }

        init(loop: EventLoop) {
            self.loop = loop
            batches = .makeBoxSendingValue(Gathered(), eventLoop: loop)
        }
    }

    /// One presence update of a connection, as handed over in a batch.
    struct PresenceUpdate: Sendable {
        let route: PresenceRoute
        let state: PresenceState
    }

    /// A connection's presence updates from one read burst, in the order sent: one hop for all of them
    /// (issue 14: an `execute` per update, an eventfd wake-up each, cost more than applying it). A
    /// connection on the shard's own loop calls `applyPresenceUpdates` instead (no hop, no closure).
    ///
    /// From another loop the batch is not handed over at once: the connection's loop gathers every batch
    /// its connections have for this shard during one round of its own (reads, then tasks) and hands them
    /// over together (`InboundHandoff`): at 2,000 clients that was one cross-thread task (a closure, the
    /// other loop's task lock) per connection per read burst, ~20,000 a second, now one per round (issue 14).
    /// A batch waits at most until the end of its loop's round, and its updates then wait for the doc's tick
    /// anyway. Or less: once `--presence-handoff-batches` batches are gathered they go over at once. At
    /// 2,000 clients / 40 docs with both cores busy a round of reads over ~1,000 sockets lasts milliseconds,
    /// and every batch read early in it waited for the last socket before its shard (on the other core,
    /// idle for it meanwhile) saw it: the inbound hop's mean was 6.5–9.2 ms against a loop lag of 3.5–5.0
    /// (stop 27). The order of one connection's batches is kept; before it hands a shard another kind of
    /// message (which goes straight to the shard), the connection calls `handOverGathered` so that its
    /// presence stays ahead of it.
    /// - Parameter readAtNanos: when the first of them was read (`clock.nowNanos()`; 0: unknown), for
    ///   `tandem_presence_inbound_hop_seconds`.
    func updatePresence(_ connection: any DocMember, _ updates: [PresenceUpdate], readAtNanos: UInt64 = 0) {
        // (Which loop by identity: called on the connection's loop, so the same as `inEventLoop`, and tests
        // on embedded loops, which are all "in the event loop", take the same path as a node.)
        let source = connection.eventLoop
        if source === eventLoop { return applyPresenceUpdates(connection, updates) }
        guard let handoff = inboundHandoffs.first(where: { $0.loop === source }) else {
            // A connection on a loop the shard was not told of (tests): one hop per batch.
            eventLoop.execute {
                if readAtNanos > 0 { self.sampleInboundHop(readAtNanos: readAtNanos) }
                self.applyPresenceUpdates(connection, updates)
            }
            return
        }
        let gathered = handoff.batches.value
        gathered.pending.append(InboundHandoff.Batch(connection: connection, updates: updates, readAtNanos: readAtNanos))
        let limit = settings.presenceHandoffBatches
        if limit > 0 && gathered.pending.count >= limit {
            // Enough for one hop: they go now. The round's task (if queued) stays queued for what follows.
            metrics.presenceHandoffsFull.increment()
            return hop(gathered)
        }
        if !gathered.scheduled {
            gathered.scheduled = true
            // Runs after the reads of the loop's current round (a task queued from the loop runs in the same round).
            source.execute { self.handOverAtRoundEnd(handoff) }
        }
    }

    /// On `loop`: hands over at once what its connections gathered for this shard (see `updatePresence`).
    func handOverGathered(from loop: EventLoop) {
        guard let handoff = inboundHandoffs.first(where: { $0.loop === loop }) else { return }
        hop(handoff.batches.value)
    }

    /// The round's task on the handoff's loop: what is still gathered goes over.
    private func handOverAtRoundEnd(_ handoff: InboundHandoff) {
        let gathered = handoff.batches.value
        gathered.scheduled = false
        guard !gathered.pending.isEmpty else { return }
        metrics.presenceHandoffsAtRoundEnd.increment()
        hop(gathered)
    }

    /// On the handoff's loop: one hop to this shard with every batch gathered there, in the order gathered.
    private func hop(_ gathered: InboundHandoff.Gathered) {
        guard !gathered.pending.isEmpty else { return }
        let batches = gathered.pending
        gathered.pending = []  // the array goes to the other loop: a new one for the next round
        eventLoop.execute {
            for index in batches.indices {
                let batch = batches[index]
                if batch.readAtNanos > 0 { self.sampleInboundHop(readAtNanos: batch.readAtNanos) }
                self.applyPresenceUpdates(batch.connection, batch.updates)
            }
        }
    }

    /// One in `inboundHopSampleEvery` hops is timed: a locked histogram per read burst (tens of thousands a
    /// second at 2,000 clients) would cost more than the hop it measures.
    static let inboundHopSampleEvery: UInt32 = 16

    private func sampleInboundHop(readAtNanos: UInt64) {
        let local = confined.value
        local.inboundHopsSeen &+= 1
        guard local.inboundHopsSeen % Self.inboundHopSampleEvery == 0 else { return }
        metrics.presenceInboundHop.record(Double(clock.nowNanos() &- readAtNanos) / 1e9)
    }

    /// Applies a read burst's presence updates; on the shard's loop only.
    func applyPresenceUpdates(_ connection: any DocMember, _ updates: [PresenceUpdate]) {
        eventLoop.preconditionInEventLoop()
        var notifiedDoc: String?
        // Counted here and added to the shard's counts once per batch (one access to the loop state).
        var outcomes = PresenceOutcomeCounts()
        defer { presenceOutcomes.add(outcomes) }
        let nowMs = clock.nowMs()
        // By index: iterating the array allocated an iterator per element in a debug build.
        for index in updates.indices {
            let update = updates[index]
            let outcome = applyPresenceUpdate(connection, update, nowMs: nowMs)
            outcomes.add(outcome)
            // One notice per doc per batch is plenty: the connection throttles them again anyway.
            if outcome == .rateLimited && notifiedDoc != update.route.doc {
                notifiedDoc = update.route.doc
                let doc = update.route.doc
                connection.eventLoop.execute { connection.presenceRateLimited(doc: doc) }
            }
        }
    }

    /// Applies one update; the caller counts its outcome.
    private func applyPresenceUpdate(_ connection: any DocMember, _ update: PresenceUpdate, nowMs: UInt64) -> PresenceUpdateOutcome {
        let state = update.state
        if let ticket = update.route.ticket, let docState = ticket.docState {
            // A live membership (see `DocTicket`): the doc and the session's slot without a lookup.
            return docState.presence.offerUpdate(handle: ticket.handle, sid: connection.sessionID, state: state, nowMs: nowMs)
        }
        let doc = update.route.doc
        guard let docState = self.docs[doc], docState.owners[connection.sessionID] == ObjectIdentifier(connection) else {
            // Still loading: the join is queued ahead of this update; apply it as the join's state.
            if let docState = self.docs[doc], docState.isLoading,
                docState.waiting.contains(where: { $0.connection === connection })
            {
                docState.updateWaiting { waiting in
                    guard let index = waiting.lastIndex(where: { $0.connection === connection }) else { return }
                    let join = waiting[index]
                    waiting[index] = DocState.PendingJoin(
                        connection: connection, number: join.number, role: join.role, state: state, since: join.since,
                        presence: join.presence)
                }
                return .accepted
            }
            return .notJoined
        }
        return docState.presence.offerUpdate(sid: connection.sessionID, state: state, nowMs: nowMs)
    }
}

/// Presence updates by outcome, counted on the shard's loop and added to `tandem_presence_updates_total`
/// at each tick.
struct PresenceOutcomeCounts {
    private var counts: (Int64, Int64, Int64, Int64, Int64) = (0, 0, 0, 0, 0)

    mutating func add(_ outcome: PresenceUpdateOutcome) {
        switch outcome {
        case .accepted: counts.0 += 1
        case .rateLimited: counts.1 += 1
        case .suppressed: counts.2 += 1
        case .notJoined: counts.3 += 1
        case .disabled: counts.4 += 1
        }
    }

    /// Adds counts made elsewhere (a batch's).
    mutating func add(_ other: PresenceOutcomeCounts) {
        counts.0 += other.counts.0
        counts.1 += other.counts.1
        counts.2 += other.counts.2
        counts.3 += other.counts.3
        counts.4 += other.counts.4
    }

    /// Adds the counts to the metric and starts again from zero.
    mutating func flush(to metrics: TandemMetrics) {
        let (accepted, rateLimited, suppressed, notJoined, disabled) = counts
        counts = (0, 0, 0, 0, 0)
        if accepted > 0 { metrics.presenceUpdate(.accepted, count: accepted) }
        if rateLimited > 0 { metrics.presenceUpdate(.rateLimited, count: rateLimited) }
        if suppressed > 0 { metrics.presenceUpdate(.suppressed, count: suppressed) }
        if notJoined > 0 { metrics.presenceUpdate(.notJoined, count: notJoined) }
        if disabled > 0 { metrics.presenceUpdate(.disabled, count: disabled) }
    }
}
