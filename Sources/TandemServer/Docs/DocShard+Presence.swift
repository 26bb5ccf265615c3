import Logging
import NIOCore
import TandemCore

/// Presence: messages from other nodes, the tick (deltas out, writes to Redis, idle docs dropped) and its
/// fan-out to members, one encoded buffer and one hop per event loop.

extension DocShard {
    /// - Parameter arrivedNanos: when the message came off the pub/sub connection (`NodeClock.nowNanos`;
    ///   0: not from pub/sub), for `tandem_presence_remote_forward_seconds`.
    func received(_ message: NodeMessage, doc: String, arrivedNanos: UInt64 = 0) {
        onLoop {
            guard let docState = self.docs[doc] else { return }
            // Another node serves the doc: this node's presence writes are made every tick again.
            docState.presence.alone = false
            switch message {
            case .commit(let commit): return self.received([commit], doc: doc, docState)
            case .commits(let commits): return self.received(commits, doc: doc, docState)
            default: break
            }
            if arrivedNanos > 0 { self.metrics.remotePresenceShardHop.record(Double(self.clock.nowNanos() &- arrivedNanos) / 1e9) }
            // Another node's delta goes to members at once when the presence state allows it (one hop
            // instead of waiting for this node's tick too; see `PresenceDoc.receive`).
            let loading = docState.isLoading
            let effect = docState.presence.receive(message, nowMs: self.clock.nowMs(), forwarding: !loading)
            if effect.expired > 0 { self.metrics.presenceExpired.increment(by: Int64(effect.expired)) }
            if case .presence = message {
                if let forward = effect.forward {
                    self.metrics.remotePresenceForwarded.increment()
                    self.deliver(forward, docState, remoteArrivedNanos: arrivedNanos)
                } else if effect.forwardDeferred || loading {
                    self.metrics.remotePresenceAtTick.increment()
                }
            }
            for sid in effect.takenOver {
                guard let owner = docState.owners.removeValue(forKey: sid),
                    let member = docState.removeMember(owner)
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

    /// Every doc's tick at once (every phase; tests and tools: the shard's timer ticks one phase at a time).
    func tick() { tick(phase: nil) }

    /// The time between two phases of the tick: `--tick-ms` / `--tick-phases`.
    var tickPhaseInterval: TimeAmount { .nanoseconds(Int64(Self.tickPhaseNanos(settings))) }

    static func tickPhaseNanos(_ settings: DocShardDependencies.Settings) -> UInt64 {
        UInt64(settings.tickMs) * 1_000_000 / UInt64(max(1, settings.tickPhases))
    }

    /// Schedules the tick's next phase for `deadline`.
    func scheduleTick(at deadline: NIODeadline) {
        let local = confined.value
        guard !local.stopped else { return }
        local.tickPace.restart(dueNanos: deadline.uptimeNanoseconds)
        local.ticker = try? eventLoop.scheduleCallback(at: deadline, handler: TickCallback(shard: self))
    }

    /// The timer: this phase's docs, then the next phase. At a fixed rate while the loop keeps up: a timer
    /// that rescheduled itself after each tick (`scheduleRepeatedTask`) added the tick's own time and the
    /// loop's lag to every period, and at 2,000 clients / 40 docs with both cores busy the docs were
    /// ticked at ~19 Hz, not 20 (issue 14). While a phase starts more than `--presence-stretch-lag-ms`
    /// late, the next comes two intervals after this one's work: fewer, fresher entries while the node
    /// is behind (`TickPace`).
    func tickPhaseDue() {
        let local = confined.value
        guard !local.stopped else { return }
        let started = eventLoop.now.uptimeNanoseconds
        let phases = max(1, settings.tickPhases)
        let phase = local.tickPhase
        local.tickPhase = (phase + 1) % phases
        tick(phase: phases > 1 ? phase : nil)
        let next = local.tickPace.next(startedNanos: started, finishedNanos: eventLoop.now.uptimeNanoseconds)
        if local.tickPace.stretched { metrics.presenceTicksStretched.increment() }
        local.ticker = try? eventLoop.scheduleCallback(at: .uptimeNanoseconds(next), handler: TickCallback(shard: self))
    }

    /// One pass of the tick: the docs of `phase` (nil: every doc). Each doc is in one phase, given at its
    /// first tick in turn, so the shard's docs are spread evenly over the phases and each doc is still
    /// ticked once per `--tick-ms`. Spread this way, the deltas of a shard's docs go out (and their Redis
    /// writes are made) in `--tick-phases` smaller bursts: one tick of 20 docs × 50 members was 1,000
    /// writes and 20 Redis commands at once (issue 14).
    func tick(phase: Int?) {
        guard !stopped else { return }
        let started = clock.nowNanos()
        let nowMs = started / 1_000_000
        // First: the updates this tick delivers are counted before their deltas are (on members' loops).
        presenceOutcomes.flush(to: metrics)
        let phases = max(1, settings.tickPhases)
        // The deltas for members on other loops, handed over once the phase's docs are done (`deliver`).
        var elsewhere: [LoopDeliveries] = []
        for (doc, docState) in docs where !docState.isLoading {
            if docState.tickPhase < 0 {
                let local = confined.value
                docState.tickPhase = local.nextDocPhase
                local.nextDocPhase = (local.nextDocPhase + 1) % phases
            }
            if let phase, docState.tickPhase != phase { continue }
            let tick = docState.presence.tick(nowMs: nowMs)
            if tick.expired > 0 { metrics.presenceExpired.increment(by: Int64(tick.expired)) }
            if tick.writeDeferred { metrics.presenceWritesDeferred.increment() }
            // The write (and its publish) is handed to the Redis thread before the local deltas go out, so
            // other nodes' copies start on their way while this node's members are written to (issue 11).
            if let write = tick.write { perform(write, doc: doc, docState, tickStartedNanos: started) }
            deliver(tick, docState, tickStartedNanos: started, elsewhere: &elsewhere)
            if nowMs >= docState.upkeep.nextReconcileMs { reconcile(doc, docState, nowMs: nowMs) }
            if settings.checksumCheckMs > 0 && nowMs >= docState.upkeep.nextChecksumCheckMs {
                checkChecksum(doc, docState, nowMs: nowMs)
            }
            if docState.members.isEmpty && docState.waiting.isEmpty && docState.presence.isIdle && tick.write == nil
                && docState.sync.isIdle
            {
                docState.cancelSyncTimer()
                docs.removeValue(forKey: doc)
                unsubscribe(doc: doc)
            }
        }
        deliverElsewhere(elsewhere, tickStartedNanos: started)
        pruneDepartures(nowMs: nowMs)
        // Once per tick, not per phase: the gauges walk every doc.
        if phase ?? 0 == 0 { updateGauges() }
        metrics.presenceTick.record(Double(clock.nowNanos() - started) / 1e9)
    }

    /// Sends a tick's (or another node's) deltas to the doc's members: encoded once, the same buffer written
    /// to every member. Members on the shard's own loop are written to at once; those on other loops are
    /// left in `elsewhere`, which the caller hands over with one hop per loop (`deliverElsewhere`) once the
    /// phase's docs are done: one wake-up per loop and phase, not per doc (issue 14).
    /// - Parameters:
    ///   - remoteArrivedNanos: for another node's forwarded delta, when it came off pub/sub (each loop
    ///     records the time to its members' flush); 0 for a tick.
    ///   - tickStartedNanos: for a tick's delta, when the tick started (`tandem_presence_delivery_seconds`,
    ///     per loop); 0 otherwise.
    func deliver(
        _ tick: PresenceTick, _ docState: DocState, remoteArrivedNanos: UInt64 = 0, tickStartedNanos: UInt64 = 0,
        elsewhere: inout [LoopDeliveries]
    ) {
        guard tick.delta != nil || tick.viewerDelta != nil, !docState.members.isEmpty else { return }
        let allocator = ByteBufferAllocator()
        let delivery = PresenceDelivery(
            delta: tick.delta.map { ($0, ServerFrame.text($0.encoded, allocator: allocator)) },
            viewerDelta: tick.viewerDelta.map { ($0, ServerFrame.text($0.encoded, allocator: allocator)) },
            viewersGetDelta: tick.viewersGetDelta, editors: [], viewers: [])
        for (loop, editors, viewers) in deliveryGroups(docState) {
            var forLoop = delivery
            forLoop.editors = editors
            forLoop.viewers = viewers
            if loop === eventLoop {
                // Members of this loop: written now, no task (a same-loop `execute` queued a closure per doc).
                var counts = (messages: 0, bytes: 0)
                Self.writeDelivery(forLoop, counts: &counts)
                Self.record(counts, metrics: metrics, clock: clock, remoteArrivedNanos: remoteArrivedNanos, tickStartedNanos: tickStartedNanos)
            } else if let index = elsewhere.firstIndex(where: { $0.loop === loop }) {
                elsewhere[index].deliveries.append(forLoop)
            } else {
                elsewhere.append(LoopDeliveries(loop: loop, deliveries: [forLoop]))
            }
        }
    }

    /// `deliver` for one delta on its own (another node's forward): its other loops get their hop at once.
    func deliver(_ tick: PresenceTick, _ docState: DocState, remoteArrivedNanos: UInt64) {
        var elsewhere: [LoopDeliveries] = []
        deliver(tick, docState, remoteArrivedNanos: remoteArrivedNanos, elsewhere: &elsewhere)
        deliverElsewhere(elsewhere, remoteArrivedNanos: remoteArrivedNanos)
    }

    /// One hop per loop with every delivery `deliver` left for it, in the order the docs were ticked.
    func deliverElsewhere(_ elsewhere: [LoopDeliveries], remoteArrivedNanos: UInt64 = 0, tickStartedNanos: UInt64 = 0) {
        let metrics = self.metrics
        let clock = self.clock
        for index in elsewhere.indices {
            let deliveries = elsewhere[index].deliveries
            elsewhere[index].loop.execute {
                Self.writeDeliveries(deliveries, metrics: metrics, clock: clock, remoteArrivedNanos: remoteArrivedNanos, tickStartedNanos: tickStartedNanos)
            }
        }
    }

    /// On the members' loop: every delivery's delta written to its members, then each member flushed once
    /// per delivery; the fan-out counters and the timing once per call.
    static func writeDeliveries(
        _ deliveries: [PresenceDelivery], metrics: TandemMetrics, clock: NodeClock, remoteArrivedNanos: UInt64, tickStartedNanos: UInt64
    ) {
        var counts = (messages: 0, bytes: 0)
        // By index: a for-in over the arrays allocated an iterator per element in a debug build.
        for index in deliveries.indices { writeDelivery(deliveries[index], counts: &counts) }
        record(counts, metrics: metrics, clock: clock, remoteArrivedNanos: remoteArrivedNanos, tickStartedNanos: tickStartedNanos)
    }

    /// One delivery's delta written to its members, then each member flushed.
    static func writeDelivery(_ delivery: PresenceDelivery, counts: inout (messages: Int, bytes: Int)) {
        let editors = delivery.editors
        let viewers = delivery.viewers
        if let (d, buffer) = delivery.delta {
            for index in editors.indices where editors[index].deliverPresence(d, buffer: buffer) {
                counts.messages += 1
                counts.bytes += d.encoded.count
            }
        }
        if let (v, buffer) = delivery.viewerDelta {
            for index in viewers.indices where viewers[index].deliverPresence(v, buffer: buffer) {
                counts.messages += 1
                counts.bytes += v.encoded.count
            }
        }
        if delivery.viewersGetDelta, let (d, buffer) = delivery.delta {
            for index in viewers.indices where viewers[index].deliverPresence(d, buffer: buffer) {
                counts.messages += 1
                counts.bytes += d.encoded.count
            }
        }
        for index in editors.indices { editors[index].flushPresence() }
        for index in viewers.indices { viewers[index].flushPresence() }
    }

    /// The fan-out counters, once per hop or same-loop write: a shared counter incremented per member from
    /// every loop kept its cache line moving between the cores (issue 14).
    static func record(
        _ counts: (messages: Int, bytes: Int), metrics: TandemMetrics, clock: NodeClock, remoteArrivedNanos: UInt64, tickStartedNanos: UInt64
    ) {
        guard counts.messages > 0 else { return }
        metrics.fanoutMessages.increment(by: Int64(counts.messages))
        metrics.fanoutBytes.increment(by: Int64(counts.bytes))
        if remoteArrivedNanos > 0 {
            metrics.remotePresenceForwardDelay.record(Double(clock.nowNanos() &- remoteArrivedNanos) / 1e9)
        }
        if tickStartedNanos > 0 {
            metrics.presenceDelivery.record(Double(clock.nowNanos() &- tickStartedNanos) / 1e9)
        }
    }

    func deliveryGroups(_ docState: DocState) -> [(EventLoop, editors: [any DocMember], viewers: [any DocMember])] {
        if let groups = docState.deliveryGroups { return groups }
        var byLoop: [ObjectIdentifier: (EventLoop, editors: [any DocMember], viewers: [any DocMember])] = [:]
        // Members that joined with `"presence":"none"` get no presence deltas (issue 13).
        for member in docState.members.values where member.presence.receivesPresence {
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

    /// - Parameter tickStartedNanos: for a tick's write that publishes a delta, when the tick started
    ///   (`tandem_presence_publish_seconds`); 0 otherwise.
    @discardableResult
    func perform(_ write: PresenceWrite, doc: String, _ docState: DocState, tickStartedNanos: UInt64 = 0) -> EventLoopFuture<Void> {
        let keys = presenceKeys(doc, docState)
        guard redis.isAvailable(forKey: keys.channel) else {
            docState.presence.writeFailed()
            return eventLoop.makeSucceededVoidFuture()
        }
        // The publish is skipped while no other node listens on the doc's channel (`PresenceScripts.docWrite`);
        // this node counts as a listener only while its own subscription is known to stand.
        let ownSubscribers = settings.presenceAlwaysPublish ? -1 : ownChannelSubscribers(docState)
        let written = presenceStore.write(keys: keys, write, ownSubscribers: ownSubscribers, on: eventLoop)
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        let hasPublish = write.publish != nil
        let timesPublish = tickStartedNanos > 0 && hasPublish
        // One callback for both outcomes: a tick's write runs per doc per tick, and a second closure for the
        // publish timing would be a second allocation there.
        let future = written.map { _ in }
        written.whenComplete { result in
            switch result {
            case .success(let published):
                if hasPublish {
                    let docState = bound.value
                    if self.docs[doc] === docState { docState.presence.alone = !published }
                }
                if !published {
                    self.metrics.presencePublishSkipped.increment()
                } else if timesPublish {
                    self.metrics.presencePublish.record(Double(self.clock.nowNanos() &- tickStartedNanos) / 1e9)
                }
            case .failure(let error):
                let docState = bound.value
                guard self.docs[doc] === docState else { return }
                self.logger.debug("presence write failed; will rewrite", metadata: ["doc": "\(doc)", "error": "\(error)"])
                docState.presence.writeFailed()
            }
        }
        return future
    }

    /// The doc's presence key names, made once per doc.
    func presenceKeys(_ doc: String, _ docState: DocState) -> PresenceStore.Keys {
        if let keys = docState.presenceKeys { return keys }
        let keys = presenceStore.keys(doc: doc)
        docState.presenceKeys = keys
        return keys
    }

    /// `redisIsUp(doc)` without making the doc's channel name again (the presence paths ask at every tick).
    func redisIsUp(_ doc: String, _ docState: DocState) -> Bool {
        redis.isAvailable(forKey: presenceKeys(doc, docState).channel)
    }

    /// Forgets departures older than the window, once a second (they are only read at joins, where the
    /// window is checked again).
    func pruneDepartures(nowMs: UInt64) {
        guard !recentDepartures.isEmpty, nowMs >= departuresPrunedAtMs + 1_000 else { return }
        departuresPrunedAtMs = nowMs
        recentDepartures = recentDepartures.filter { nowMs < $0.value + Self.departureWindowMs }
    }
}

/// One doc's deltas for the members of one loop (`DocShard.deliver`).
struct PresenceDelivery: Sendable {
    var delta: (PresenceDelta, ByteBuffer)?
    var viewerDelta: (PresenceDelta, ByteBuffer)?
    var viewersGetDelta: Bool
    var editors: [any DocMember]
    var viewers: [any DocMember]
}

/// A tick phase's deliveries for one other loop, handed over in one hop (`DocShard.deliverElsewhere`).
struct LoopDeliveries {
    let loop: EventLoop
    var deliveries: [PresenceDelivery]
}
