import NIOCore
import TandemCore
import TandemRedis

/// Everything a shard holds for one document. Confined to the shard's event loop like the shard itself,
/// and not `Sendable`: a future completing there gets it through a `NIOLoopBound`, which checks the loop.
///
/// What only exists in one phase of the doc lives in that phase's case (`phase`, `replicaRead`), so a
/// loaded doc with waiting joins, or a read replica with members waiting for it, cannot be written.
final class DocState {
    /// A local connection in the doc.
    struct Member {
        let connection: any DocMember
        let role: Role
        /// `hidden` and `none` members have no presence entry; `none` members get no presence deltas.
        let presence: PresenceMode
        /// The member's direct way to its session here (only with a presence entry); invalidated when the
        /// member is removed or replaced (`addMember`, `removeMember`, `removeAllMembers`).
        let ticket: DocTicket?
    }

    /// A join waiting for the doc's first Redis read.
    struct PendingJoin {
        let connection: any DocMember
        /// The connection's number for this join, handed back with its `joined` (`DocMember.joinConfirmed`).
        let number: UInt64
        let role: Role
        let state: PresenceState?
        let since: UInt64?
        let presence: PresenceMode
    }

    /// Where the doc is in its first read from Redis (presence and records).
    enum Phase {
        /// Being read: joins wait (answered together once the read completes or fails).
        case loading(Loading)
        /// Read (or its read failed and the doc answers from local state): joins are answered at once.
        case live
    }

    struct Loading {
        /// At most one per connection (a newer join replaces it); bounded by the connections joining.
        var waiting: [PendingJoin] = []
    }

    /// The replica's first read (a reload after lost history is the pipeline's: `PushAction.reload`).
    enum ReplicaRead {
        /// Not read yet, or the read failed (Redis down): members that joined meanwhile wait here.
        case unread(Unread)
        /// The pipeline holds the replica.
        case read
    }

    struct Unread {
        /// Members that joined before the replica could be read, with their `since`.
        var awaiting: [ObjectIdentifier: UInt64?] = [:]
        /// The read (or a retry after it failed) is in flight.
        var inFlight = false
    }

    /// The doc's one pipeline timer, set for `sync.nextDeadline` (see `DocShard.scheduleSyncTimer`).
    struct SyncTimer {
        var task: Scheduled<Void>
        var deadline: UInt64
    }

    /// The Redis upkeep of a doc: periodic reconcile and sweep.
    struct Upkeep {
        var reconcileInFlight = false
        var sweepInFlight = false
        var nextReconcileMs: UInt64 = 0
        /// The doc's channel subscription was confirmed while its first read was in flight. That read and
        /// the SUBSCRIBE travel on different connections, so the read may predate the subscription and
        /// miss what was published in between: reconcile once the read is in.
        var subscribedWhileLoading = false
        /// Until then reconcile does not drop other nodes' sessions missing from Redis: set when the Redis
        /// connection comes back, since Redis may have restarted empty and the other nodes need up to a
        /// presence TTL to re-register theirs (dropping them meanwhile showed every remote session as
        /// `left`, then `joined` again).
        var keepRemoteUntilMs: UInt64 = 0
        /// Integrity checksums (issue 13, `DocShard+Checksums`): the periodic comparison with Redis…
        var checksumInFlight = false
        var nextChecksumCheckMs: UInt64 = 0
        /// …and the last time a divergence made the node read the doc again (at most once a second).
        var lastResyncMs: UInt64 = 0
    }

    /// The catch-up each member is being sent (a counter per attach): a Redis log read that completes
    /// after a re-join started a newer catch-up is dropped instead of being sent as well.
    struct CatchUps {
        private var generation: [ObjectIdentifier: UInt64] = [:]
        private var next: UInt64 = 0

        /// A new catch-up for `member`; returns its generation.
        mutating func start(for member: ObjectIdentifier) -> UInt64 {
            next &+= 1
            generation[member] = next
            return next
        }

        func isCurrent(_ value: UInt64, for member: ObjectIdentifier) -> Bool { generation[member] == value }

        mutating func forget(_ member: ObjectIdentifier) { generation.removeValue(forKey: member) }
    }

    var phase: Phase = .loading(Loading())
    var replicaRead: ReplicaRead = .unread(Unread())
    var presence: PresenceDoc
    /// Document sync: ordered delivery, the replica and the push pipeline (`PushPipeline`); the shard
    /// carries out its actions and nothing else decides pushes.
    var sync: PushPipeline<ObjectIdentifier>
    /// Changed through `addMember`, `removeMember` and `removeAllMembers` (which keep tickets honest).
    private(set) var members: [ObjectIdentifier: Member] = [:] {
        didSet { countMembersByMode() }
    }
    /// `members` by presence mode (for `tandem_presence_members`), recounted when membership changes, which
    /// is rare next to the ticks that read it.
    private(set) var membersByMode = PresenceModeCounts()
    /// Which connection currently owns each local session id (a resumed session may briefly have two).
    var owners: [String: ObjectIdentifier] = [:]
    /// The members this doc refused with a `retryAfterMs`, until when: their pushes that reach the doc sooner
    /// were on their way before their connection heard, and are refused before admission (`MemberPushBackoff`).
    var pushBackoff = MemberPushBackoff<ObjectIdentifier>()
    /// Sync requests (push, sync, ack) of connections that are not live members yet (the doc is loading,
    /// the joiner's presence is being written, or its catch-up is being read from the Redis log), handled
    /// once they are. At most `--max-pending-requests` per connection; beyond: `unavailable`.
    var earlyRequests: [ObjectIdentifier: [(message: ClientMessage, role: Role, bytes: Int)]] = [:]
    var catchUps = CatchUps()
    var syncTimer: SyncTimer?
    /// Redis held re-push records of nodes from before group commit when the doc was read: commits check
    /// them (a client may re-push what such a node committed). New nodes never write them.
    var legacyRePushes = true
    /// The pipeline's counters as last turned into metric increments.
    var reportedCounters = PushPipelineCounters()
    var upkeep = Upkeep()
    /// Members grouped by event loop, rebuilt when membership changes.
    var deliveryGroups: [(EventLoop, editors: [any DocMember], viewers: [any DocMember])]?
    /// The doc's presence key names, made at its first presence write (`DocShard.perform`).
    var presenceKeys: PresenceStore.Keys?
    /// The phase of the shard's tick this doc is ticked in (`DocShard.tick(phase:)`; -1: not given one yet).
    var tickPhase = -1
    /// Whether Redis confirmed this node's subscription of the doc's channel and the subscriber has not
    /// lost its connection since (`DocShard.channelResubscribed`, `channelsLost`): a presence write then
    /// counts this node as one of the channel's subscribers when deciding whether to publish (issue 14),
    /// and so does a group commit (`DocShard.ownChannelSubscribers`).
    var channelSubscribed = false
    /// The doc's group-commit keys as the script call carries them, encoded at its first commit
    /// (`DocShard.commit`; fifteen keys written byte by byte per commit otherwise).
    var commitKeys: RedisEncodedArguments?
    var stats = DocStats()

    /// Asks the pipeline in place. A query made on `sync` itself (`sync.nextDeadline`,
    /// `sync.estimatedWaitNanos(now:)`: functions of a struct of another module) ran on a copy of the
    /// whole pipeline, every reference in it retained and then released (~600 instructions; the shard
    /// asks after every input, callgrind, issue 8): `sync` is a class's property, which the compiler does
    /// not lend to a function it cannot see into. `inout`, it does.
    @inline(__always)
    func askSync<T>(_ query: (inout PushPipeline<ObjectIdentifier>) -> T) -> T { query(&sync) }

    init(presence: PresenceDoc, sync: PushPipeline<ObjectIdentifier>) {
        self.presence = presence
        self.sync = sync
    }

    /// Adds (or replaces) the member `id`; a replaced member's ticket is invalidated. Members change
    /// only through these three, so a valid ticket always belongs to a member in `members`.
    func addMember(_ id: ObjectIdentifier, _ member: Member) {
        members.updateValue(member, forKey: id)?.ticket?.invalidate()
    }

    /// Removes the member `id` and invalidates its ticket.
    @discardableResult
    func removeMember(_ id: ObjectIdentifier) -> Member? {
        pushBackoff.forget(id)  // (its identity may be reused by a later connection)
        guard let member = members.removeValue(forKey: id) else { return nil }
        member.ticket?.invalidate()
        return member
    }

    func removeAllMembers() {
        for member in members.values { member.ticket?.invalidate() }
        members.removeAll()
        pushBackoff.removeAll()
    }

    private func countMembersByMode() {
        var counts = PresenceModeCounts()
        for member in members.values { counts[member.presence] += 1 }
        membersByMode = counts
    }

    // MARK: Phase helpers

    var isLoading: Bool {
        if case .loading = phase { return true }
        return false
    }

    /// The joins waiting for the first read (none once live).
    var waiting: [PendingJoin] {
        if case .loading(let loading) = phase { return loading.waiting }
        return []
    }

    /// Changes the waiting joins (nothing once live).
    func updateWaiting(_ body: (inout [PendingJoin]) -> Void) {
        guard case .loading(var loading) = phase else { return }
        body(&loading.waiting)
        phase = .loading(loading)
    }

    /// The first read completed (or failed): the doc is live; returns the joins to answer now.
    func becomeLive() -> [PendingJoin] {
        let waiting = self.waiting
        phase = .live
        return waiting
    }

    /// Members waiting for the replica's first read (none once read).
    var awaitingReplica: [ObjectIdentifier: UInt64?] {
        if case .unread(let unread) = replicaRead { return unread.awaiting }
        return [:]
    }

    /// Changes what waits for the replica's first read (nothing once read).
    func updateUnread(_ body: (inout Unread) -> Void) {
        guard case .unread(var unread) = replicaRead else { return }
        body(&unread)
        replicaRead = .unread(unread)
    }

    var replicaReadInFlight: Bool {
        if case .unread(let unread) = replicaRead { return unread.inFlight }
        return false
    }

    /// Cancels the pipeline timer.
    func cancelSyncTimer() {
        syncTimer?.task.cancel()
        syncTimer = nil
    }
}

/// Per-doc activity counters for the status page (rates are computed from two readings).
struct DocStats {
    var pushes: UInt64 = 0
    var conflicts: UInt64 = 0
    /// Recent commit → socket lags of this doc (the last `lagSamples`, a ring), for its p95 on the status page.
    var lagSamplesMs: [Double] = []
    private var nextLagSample = 0
    /// Enough samples for a stable p95 of a busy doc; 4 KiB per doc.
    static let lagSamples = 512

    mutating func recordLag(_ ms: Double) {
        if lagSamplesMs.count < Self.lagSamples {
            lagSamplesMs.append(ms)
        } else {
            lagSamplesMs[nextLagSample] = ms
            nextLagSample = (nextLagSample + 1) % Self.lagSamples
        }
    }

    var lagP95Ms: Double? {
        guard !lagSamplesMs.isEmpty else { return nil }
        let sorted = lagSamplesMs.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.95))]
    }
}
