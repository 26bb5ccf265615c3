import Logging
import NIOCore
import TandemCore
import TandemRedis

/// Owns the documents whose id hashes to it, on one event loop: their presence state machines, their
/// local members, their ticks, and their traffic with Redis.
///
/// Everything here runs on `eventLoop` (connections and the pub/sub thread hop in with `execute`), so
/// per-doc state needs no locks. One shard per event loop spreads docs over the cores. The shard gets its
/// collaborators explicitly (`DocShardDependencies`) and sees its members only as `DocMember`s.
///
/// Confined to its loop, and the compiler checks it: what changes is in `LoopState` (not `Sendable`),
/// reached only through a `NIOLoopBoundBox` that checks the loop on every access (and stops the process if
/// not), so connections and the subscriber hold the shard but cannot touch its state from elsewhere. The
/// state keeps its old names as properties of the shard (`docs`, `loopLoad`, …); a collection's `_modify`
/// yields the field itself, so a dictionary is changed in place, never copied out and back.
///
/// By job: membership (`DocShard+Membership`), presence ticks and fan-out (`DocShard+Presence`), Redis
/// loading, reconcile and sweep (`DocShard+Redis`), sync requests and catch-up (`DocShard+Sync`), the push
/// pipeline's actions and gap filling (`DocShard+Pipeline`); status, gauges and shutdown here.
final class DocShard: Sendable {
    let index: Int
    let eventLoop: EventLoop
    let settings: DocShardDependencies.Settings
    let metrics: TandemMetrics
    let clock: NodeClock
    let presenceStore: PresenceStore
    let syncStore: SyncStore
    let redis: any RedisCommandClient
    let subscriber: any RedisChannelSubscriber
    let detachedHold: DetachedSessionHold
    let schemas: SchemaStore
    let logger: Logger
    /// The shard's mutable state, on `eventLoop` only (see `LoopState`).
    let confined: NIOLoopBoundBox<LoopState>
    /// One per other event loop: presence batches its connections hand to this shard, gathered on that
    /// loop and handed over once per round of it (`DocShard.updatePresence`).
    let inboundHandoffs: [InboundHandoff]
    /// The commit round this loop pass forms (`CommitRound`), on `eventLoop` only.
    let commitRound: NIOLoopBoundBox<CommitRound>

    /// Everything about the shard that changes. Its fields are reached through the shard's forwarding
    /// properties below; one class (not a struct) so that each field is its own access, as when they were
    /// the shard's stored properties: code that changes `docs` may read `presenceOutcomes` meanwhile.
    final class LoopState {
        var docs: [String: DocState] = [:]
        /// Users whose session in a doc ended recently, by end time (reconnect counting). Kept by the shard,
        /// not the doc: a doc whose last member left is unloaded at the next tick, and its user's reconnect
        /// a second later must still count.
        var recentDepartures: [DocUser: UInt64] = [:]
        var departuresPrunedAtMs: UInt64 = 0
        /// Presence updates applied since the last tick, by outcome: added to the metric once per tick
        /// (`flushPresenceOutcomes`), not once per update (issue 14: a locked counter per update).
        var presenceOutcomes = PresenceOutcomeCounts()
        var tasks: [RepeatedTask] = []
        var stopped = false
        /// How far behind this shard's loop runs; pushes on it are refused while it lags (see `LoopLoad`).
        var loopLoad: LoopLoad
        var loopProbe: NIOScheduledCallback?
        /// When the pending probe is due (`probeLoop`).
        var loopProbeDue: UInt64 = 0
        /// The presence tick's next phase: when it is due (fixed rate, or stretched while the loop is
        /// behind: `TickPace`) and its callback (`scheduleTick`).
        var ticker: NIOScheduledCallback?
        var tickPace: TickPace
        var tickPhase = 0
        /// The phase the next doc without one is given (round robin: phases hold equal numbers of docs).
        var nextDocPhase = 0
        /// Presence hops from connections on other loops, for sampling their time (`sampleInboundHop`).
        var inboundHopsSeen: UInt32 = 0
        /// This shard's share of the node-wide gauges as last published (`updateGauges` adds differences).
        fileprivate var lastReportedSessions = 0
        fileprivate var lastReportedDocs = 0
        fileprivate var lastReportedWaiting = 0
        fileprivate var lastReportedEarly = 0
        fileprivate var lastReportedPushes = 0
        fileprivate var lastReportedMembersByMode = PresenceModeCounts()

        init(loopLoad: LoopLoad, tickPace: TickPace) {
            self.loopLoad = loopLoad
            self.tickPace = tickPace
        }
    }

    // The loop state under its old names. The collections' `_modify` yields the field itself, so
    // `docs[doc] = state` changes the dictionary in place: a get/set pair would hand out a second
    // reference to its storage and copy all of it on every change. The plain values (a few words, no
    // storage of their own) are read and written whole: nothing to copy, and no coroutine (whose frame a
    // debug build allocates on the heap, which the presence allocation tests would count per update).

    var docs: [String: DocState] {
        get { confined.value.docs }
        _modify { yield &confined.value.docs }
    }
    var recentDepartures: [DocUser: UInt64] {
        get { confined.value.recentDepartures }
        _modify { yield &confined.value.recentDepartures }
    }
    var departuresPrunedAtMs: UInt64 {
        get { confined.value.departuresPrunedAtMs }
        set { confined.value.departuresPrunedAtMs = newValue }
    }
    var presenceOutcomes: PresenceOutcomeCounts {
        get { confined.value.presenceOutcomes }
        set { confined.value.presenceOutcomes = newValue }
    }
    var tasks: [RepeatedTask] {
        get { confined.value.tasks }
        _modify { yield &confined.value.tasks }
    }
    var stopped: Bool {
        get { confined.value.stopped }
        set { confined.value.stopped = newValue }
    }
    var loopLoad: LoopLoad {
        get { confined.value.loopLoad }
        // In place (its margin window holds an array: a get-and-set would copy it on every commit).
        _modify { yield &confined.value.loopLoad }
    }
    var loopProbe: NIOScheduledCallback? {
        get { confined.value.loopProbe }
        set { confined.value.loopProbe = newValue }
    }

    /// - Parameter peerLoops: the node's event loops (this one among them), whose connections hand presence
    ///   to this shard.
    init(index: Int, eventLoop: EventLoop, peerLoops: [EventLoop] = [], dependencies: DocShardDependencies) {
        self.index = index
        self.eventLoop = eventLoop
        self.inboundHandoffs = peerLoops.filter { $0 !== eventLoop }.map { InboundHandoff(loop: $0) }
        self.settings = dependencies.settings
        self.metrics = dependencies.metrics
        self.clock = dependencies.clock
        self.presenceStore = dependencies.presenceStore
        self.syncStore = dependencies.syncStore
        self.redis = dependencies.redis
        self.subscriber = dependencies.subscriber
        self.detachedHold = dependencies.detachedHold
        self.schemas = dependencies.schemas
        var logger = dependencies.logger
        logger[metadataKey: "shard"] = "\(index)"
        self.logger = logger
        // Made off the loop (the node makes its shards before they start): the new state is handed over
        // (`sending`), so nothing else can hold it.
        commitRound = .makeBoxSendingValue(CommitRound(), eventLoop: eventLoop)
        confined = .makeBoxSendingValue(
            LoopState(
                loopLoad: LoopLoad(
                    maxLagNanos: UInt64(dependencies.settings.maxLoopLagMs) * 1_000_000,
                    maxRetryAfterMs: dependencies.settings.pushPipelineSettings.maxRetryAfterMs,
                    randomSeed: UInt64.random(in: 0...UInt64.max),
                    maxMarginNanos: UInt64(max(dependencies.settings.maxPushWaitMarginMs, 0)) * 1_000_000),
                tickPace: TickPace(
                    intervalNanos: DocShard.tickPhaseNanos(dependencies.settings),
                    tickNanos: UInt64(dependencies.settings.tickMs) * 1_000_000,
                    lagBoundNanos: UInt64(dependencies.settings.presenceStretchLagMs) * 1_000_000, firstDueNanos: 0)),
            eventLoop: eventLoop)
    }

    func start() {
        eventLoop.execute { [self] in
            scheduleTick(at: eventLoop.now + tickPhaseInterval)
            let sweep = TimeAmount.milliseconds(Int64(settings.sweepMs))
            tasks.append(eventLoop.scheduleRepeatedTask(initialDelay: sweep, delay: sweep) { [weak self] _ in self?.sweep() })
            probeLoop()
            makeCommitRoundDoorbell()
        }
    }

    /// How often the loop's lag is probed: often enough that admission reacts within a few tenths of a
    /// second, rarely enough to cost nothing (50 tasks a second per loop).
    static let loopProbeNanos: UInt64 = 20_000_000

    /// Schedules the next lag probe: a callback due in `loopProbeNanos`, measured by how late it runs.
    ///
    /// A scheduled callback (`LoopProbe`, one word), not a task: `scheduleTask` made a promise, its future
    /// and two closures per probe, ~6,600 instructions a probe in the callgrind profile of the commit path.
    private func probeLoop() {
        let local = confined.value
        guard !local.stopped else { return }
        local.loopProbeDue = clock.nowNanos() + Self.loopProbeNanos
        local.loopProbe = try? eventLoop.scheduleCallback(in: .nanoseconds(Int64(Self.loopProbeNanos)), handler: LoopProbe(shard: self))
    }

    /// The probe ran: how late, into the loop's load and the lag histogram; then the next one.
    fileprivate func loopProbed() {
        let local = confined.value
        let now = clock.nowNanos()
        let due = local.loopProbeDue
        local.loopLoad.probed(due: due, now: now)  // in place: the state is a class
        metrics.eventLoopLag.record(Double(now > due ? now - due : 0) / 1e9)
        if local.loopLoad.maxMarginNanos > 0 { metrics.syncAdmissionMargin.record(local.loopLoad.marginNanos / 1e9) }
        probeLoop()
    }

    /// A user who comes back to a doc within this long of their session there ending counts as a
    /// reconnect (tandem_reconnects_total, storm detection): long enough for a client's backoff, short
    /// enough that a user reopening the doc later is not one.
    static let departureWindowMs: UInt64 = 60_000

    /// Whether Redis can serve `doc` now: in a cluster, whether its shard's primary is connected (a
    /// failover elsewhere leaves it available).
    func redisIsUp(_ doc: String) -> Bool { redis.isAvailable(forKey: RedisKeys.channel(doc)) }

    func subscribe(doc: String) { subscriber.subscribe(RedisKeys.channel(doc)) }
    func unsubscribe(doc: String) { subscriber.unsubscribe(RedisKeys.channel(doc)) }

    /// How many subscribers of `docState`'s channel are this node, as the presence write and the group
    /// commit tell their scripts (which publish only if `PUBSUB NUMSUB` counts more): 1 while Redis has
    /// confirmed the subscription and the subscriber has not lost its connection since, else 0.
    func ownChannelSubscribers(_ docState: DocState) -> Int {
        docState.channelSubscribed && subscriber.isConnected ? 1 : 0
    }

    // MARK: Status and shutdown

    /// Publishes this shard's share of the node-wide gauges (shards add up their differences).
    func updateGauges() {
        let local = confined.value
        var sessions = 0
        var waiting = 0
        var early = 0
        var pushes = 0
        var membersByMode = PresenceModeCounts()
        for docState in local.docs.values {
            sessions += docState.presence.localCount
            membersByMode = membersByMode + docState.membersByMode
            waiting += docState.waiting.count
            for requests in docState.earlyRequests.values { early += requests.count }
            pushes += docState.sync.queuedCount  // waiting for a batch (the one in Redis not counted)
        }
        let active = local.docs.count
        metrics.presenceSessions.increment(by: Double(sessions - local.lastReportedSessions))
        metrics.docsActive.increment(by: Double(active - local.lastReportedDocs))
        metrics.pendingJoinsDepth.increment(by: Double(waiting - local.lastReportedWaiting))
        metrics.earlyRequestsDepth.increment(by: Double(early - local.lastReportedEarly))
        metrics.pushQueueDepth.increment(by: Double(pushes - local.lastReportedPushes))
        local.lastReportedSessions = sessions
        local.lastReportedDocs = active
        local.lastReportedWaiting = waiting
        local.lastReportedEarly = early
        local.lastReportedPushes = pushes
        if membersByMode != local.lastReportedMembersByMode {
            for mode in PresenceMode.allCases where membersByMode[mode] != local.lastReportedMembersByMode[mode] {
                metrics.presenceMembers[mode]!.increment(by: Double(membersByMode[mode] - local.lastReportedMembersByMode[mode]))
            }
            local.lastReportedMembersByMode = membersByMode
        }
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
                    presenceUpdates: state.presence.acceptedUpdates, pushes: state.stats.pushes,
                    conflicts: state.stats.conflicts, syncLagP95Ms: state.stats.lagP95Ms,
                    memberConnections: state.members.values.map { $0.connection })
            }
        }
    }

    /// Leaves every local session and writes the deletions to Redis (graceful shutdown).
    func shutdown() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit {
            self.stopped = true
            self.presenceOutcomes.flush(to: self.metrics)
            self.tasks.forEach { $0.cancel() }
            self.loopProbe?.cancel()
            self.confined.value.ticker?.cancel()
            // Rounds waiting for the doorbell go now: closed, it would never answer. Commits decided after this
            // (replies still on their way) go with `execute`.
            self.commitRoundDoorbellAnswered()
            self.commitRound.value.doorbell?.close()
            self.commitRound.value.doorbell = nil
            var writes: [EventLoopFuture<Void>] = []
            let nowMs = self.clock.nowMs()
            for (doc, docState) in self.docs {
                docState.cancelSyncTimer()
                // Every session this node serves leaves, including detached ones (socket lost, kept for a
                // resume): they have no owner connection, and were left in Redis to linger until the TTL.
                for sid in Array(docState.presence.view.keys) where docState.presence.isLocal(sid) {
                    docState.presence.leave(sid: sid)
                }
                docState.owners.removeAll()
                docState.removeAllMembers()
                if let write = docState.presence.tick(nowMs: nowMs).write, self.redisIsUp(doc) {
                    writes.append(self.presenceStore.write(doc: doc, write, on: self.eventLoop))
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
    var memberConnections: [any DocMember]
}

/// A user in a doc (the key of `DocShard.recentDepartures`).
struct DocUser: Hashable {
    var doc: String
    var user: String
}

/// The shard's loop-lag probe (`DocShard.probeLoop`). Weak, as the task's closure was: a shard dropped
/// without `shutdown` (which cancels the probe) stops probing instead of being kept alive by it.
private struct LoopProbe: NIOScheduledCallbackHandler, Sendable {
    weak let shard: DocShard?

    func handleScheduledCallback(eventLoop: some EventLoop) { shard?.loopProbed() }
}

/// The presence tick's callback (`DocShard.scheduleTick`): one word, like `LoopProbe`.
struct TickCallback: NIOScheduledCallbackHandler, Sendable {
    weak let shard: DocShard?

    func handleScheduledCallback(eventLoop: some EventLoop) { shard?.tickPhaseDue() }
}
