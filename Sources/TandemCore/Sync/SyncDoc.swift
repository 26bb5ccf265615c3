/// Ordered commit delivery for one document on one node: a pure state machine.
///
/// Commits reach a node over pub/sub (in commit order) and, after gaps, from the Redis log. `SyncDoc`
/// applies them to the doc's replica strictly in clock order and says which members get each one, so
/// every member receives every clock exactly once, in order, from the point its catch-up ended.
///
/// Members are identified by any hashable key (the shard uses connection identities).
public struct SyncDoc<Member: Hashable> {
    public private(set) var replica: DocReplica?
    /// The oldest clock the Redis log still holds; a member further behind needs a snapshot.
    public private(set) var retainedFrom: UInt64 = 1
    public let retention: UInt64
    private let recentCapacity: Int
    /// How far `recent` may grow past `recentCapacity` before it is trimmed back (amortizes the trim).
    private var recentSlack: Int { recentCapacity / 8 }
    /// The most recent commits, contiguous and ending at `replica.head` (serves most catch-ups).
    private var recent: [CommitNotice] = []
    /// Commits that arrived ahead of a gap.
    private var ahead: [UInt64: CommitNotice] = [:]
    /// Live members and the clock they have been sent up to.
    private var cursors: [Member: UInt64] = [:]
    /// Members catching up from the Redis log, and the next clock they need.
    private var catchingUp: [Member: UInt64] = [:]
    /// The first commit since the last load after which the replica's checksum differed from the one
    /// Redis computed for that clock (issue 13): the replica diverged and must be read again.
    public private(set) var divergence: Divergence?

    /// A commit after which the replica's checksum was not Redis's.
    public struct Divergence: Equatable, Sendable {
        public var clock: UInt64
        /// What Redis's commit script computed, and what the replica holds.
        public var expected: DocChecksum
        public var actual: DocChecksum
    }

    public init(retention: UInt64, recentCapacity: Int = 2048) {
        self.retention = retention
        self.recentCapacity = recentCapacity
    }

    // The replica is only looked at here, never bound: `replica != nil` or `guard let replica` copied it
    // (each of its dictionaries retained, then released: ~600 instructions), and the pipeline asks these
    // several times per push and per commit (callgrind, issue 8).
    public var isLoaded: Bool {
        switch replica {
        case .some: true
        case .none: false
        }
    }
    public var head: UInt64 { replica?.head ?? 0 }
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public func cursor(of member: Member) -> UInt64? { cursors[member] }
    /// The member is reading its catch-up from the Redis log (not live yet).
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public func isCatchingUp(_ member: Member) -> Bool { catchingUp[member] != nil }

    /// The first missing clock and the clock before the next one we hold, when commits wait behind a gap.
    public var gap: ClosedRange<UInt64>? {
        // `ahead` only holds clocks above head + 1 (head + 1 is applied at once), so the range is never
        // empty; checked anyway, since clocks come from Redis and pub/sub.
        guard !ahead.isEmpty, let head = replica?.head, let next = ahead.keys.min(), next > head, next - head >= 2 else {
            return nil
        }
        return (head + 1)...(next - 1)
    }

    /// One commit and the live members it goes to.
    public struct Dispatch: Equatable {
        public var commit: CommitNotice
        public var recipients: [Member]
    }

    // MARK: Loading

    /// Installs the state read from Redis. Commits that arrived while loading are applied if they are
    /// newer. Returns their dispatches (nobody is live yet, so recipients are empty).
    /// - Parameter replacing: install it even at the replica's own head (a replica that diverged is read
    ///   again: same clock, other records).
    public mutating func load(_ loaded: DocReplica, retainedFrom: UInt64, replacing: Bool = false) -> [Dispatch] {
        if let replica, replica.head > loaded.head || (replica.head == loaded.head && !replacing) { return [] }
        replica = loaded
        divergence = nil
        self.retainedFrom = max(1, retainedFrom)
        recent.removeAll()
        ahead = ahead.filter { $0.key > loaded.head }
        return drainAhead()
    }

    /// Replaces the replica after Redis lost commits (see `PushPipeline.clockWentBack`): unlike `load`,
    /// also with a lower head. Members must be attached again (their cursors are past this head).
    public mutating func replace(_ loaded: DocReplica, retainedFrom: UInt64) {
        replica = loaded
        divergence = nil  // whatever the old replica disagreed with Redis about is gone with it
        self.retainedFrom = max(1, retainedFrom)
        recent.removeAll()
        ahead.removeAll()
    }

    /// `commit` is at a clock already delivered, but is not the commit delivered there (another node,
    /// session or push id): Redis's history was rewritten. Checked against the commits kept in memory.
    public func contradicts(_ commit: CommitNotice) -> Bool {
        guard let head = replica?.head, commit.clock <= head, let first = recent.first, commit.clock >= first.clock else {
            return false
        }
        let offset = commit.clock - first.clock
        guard offset < UInt64(recent.count) else { return false }
        let known = recent[Int(offset)]
        return known.node != commit.node || known.by != commit.by || known.pushID != commit.pushID
    }

    // MARK: Commits

    /// A commit from pub/sub or the log. Applies it (and any that were waiting behind it) in order.
    public mutating func receive(_ commit: CommitNotice) -> [Dispatch] {
        guard let head = replica?.head else {
            ahead[commit.clock] = commit
            return []
        }
        guard commit.clock > head else { return [] }
        ahead[commit.clock] = commit
        return drainAhead()
    }

    private mutating func drainAhead() -> [Dispatch] {
        var dispatches: [Dispatch] = []
        // The head is read, not the replica bound: a bound copy would share the replica's storage while
        // `apply` changes it in place, so every commit would copy the doc's records.
        // `head < UInt64.max` keeps `head + 1` from trapping on a clock read from a corrupted Redis key.
        while let head = replica?.head, head < UInt64.max, let next = ahead.removeValue(forKey: head + 1) {
            guard let ops = next.parsedOps ?? (try? Ops(json: next.ops)) else {
                // Cannot happen for commits written by Tandem; skipping would break every replica the
                // same way, so apply it as empty to keep clocks contiguous.
                replica?.apply(clock: next.clock, ops: Ops([:]))
                continue
            }
            replica?.apply(clock: next.clock, ops: ops, knownHashes: next.parsedOps == nil ? nil : next.recordHashes)
            if divergence == nil, let expected = next.sum, let actual = replica?.sum, expected != actual {
                divergence = Divergence(clock: next.clock, expected: expected, actual: actual)
            }
            recent.append(next.withoutCaches)
            // Trimmed in steps: removing one from the front of a full array moved all 2,048 others on
            // every commit (a memmove of a quarter MB per commit on a busy doc).
            if recent.count > recentCapacity + recentSlack { recent.removeFirst(recent.count - recentCapacity) }
            let floor = next.clock > retention ? next.clock - retention : 0
            retainedFrom = max(retainedFrom, floor + 1)
            if next.clock % 64 == 0 { replica?.compact(floor: floor) }
            // Cursors are advanced in place, by index: assigning `cursors[member]` inside a `for … in cursors`
            // copied the whole dictionary (the loop holds its storage) and hashed each member again, per
            // commit (callgrind, issue 8).
            // Sized for every member at once: grown one append at a time, it was reallocated four or five
            // times per commit for a doc of 10-50 members (callgrind, issue 8 stop 28).
            var recipients: [Member] = []
            recipients.reserveCapacity(cursors.count)
            var index = cursors.startIndex
            while index != cursors.endIndex {
                if cursors.values[index] == next.clock - 1 {
                    recipients.append(cursors.keys[index])
                    cursors.values[index] = next.clock
                }
                cursors.formIndex(after: &index)
            }
            dispatches.append(Dispatch(commit: next, recipients: recipients))
        }
        return dispatches
    }

    // MARK: Members

    /// How a member gets from its `since` to the head.
    public enum CatchUp: Equatable {
        /// The full state (no `since`, or `since` older than the retained history).
        case snapshot(head: UInt64, records: [String: JSONValue])
        /// These commits, all in memory; the member is live afterwards.
        case log([CommitNotice], head: UInt64)
        /// Read the Redis log from `from` (inclusive), then call `continueCatchUp`.
        case fetch(from: UInt64, head: UInt64)
    }

    /// A member joins with `since`; it is live (receives dispatches) as soon as the returned catch-up
    /// is sent, unless it must `fetch` first.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func attach(_ member: Member, since: UInt64?) -> CatchUp {
        guard let replica else { preconditionFailure("attach after load") }
        let head = replica.head
        cursors.removeValue(forKey: member)
        catchingUp.removeValue(forKey: member)
        // retainedFrom >= 1 always; comparing with `retainedFrom - 1` instead of `since + 1` keeps a client's
        // `since` out of any addition until it is known to be below head.
        guard let since, since <= head, since >= retainedFrom - 1 else {
            cursors[member] = head
            return .snapshot(head: head, records: replica.records)
        }
        guard since < head else {
            cursors[member] = head
            return .log([], head: head)
        }
        return plan(member, from: since + 1, head: head)
    }

    /// The member received commits up to `through` from the Redis log; what next.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func continueCatchUp(_ member: Member, through: UInt64) -> CatchUp? {
        guard let replica, catchingUp[member] != nil else { return nil }
        catchingUp.removeValue(forKey: member)
        if through < retainedFrom - 1 {
            // The log moved on while we read it: start over from a snapshot.
            cursors[member] = replica.head
            return .snapshot(head: replica.head, records: replica.records)
        }
        guard through < replica.head else {
            cursors[member] = replica.head
            return .log([], head: replica.head)
        }
        return plan(member, from: through + 1, head: replica.head)
    }

    private mutating func plan(_ member: Member, from: UInt64, head: UInt64) -> CatchUp {
        if from > head {
            cursors[member] = head
            return .log([], head: head)
        }
        // `recent` is contiguous and ends at head, so the offset is below its count; checked rather than
        // trusted, as an out-of-range index would trap.
        if let first = recent.first, first.clock <= from, from - first.clock < UInt64(recent.count) {
            cursors[member] = head
            return .log(Array(recent[Int(from - first.clock)...]), head: head)
        }
        catchingUp[member] = from
        return .fetch(from: from, head: head)
    }

    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func detach(_ member: Member) {
        cursors.removeValue(forKey: member)
        catchingUp.removeValue(forKey: member)
    }

    /// Commits `from...through` (clamped to what is in memory), for explicit `sync` requests.
    public func recentCommits(from: UInt64, through: UInt64) -> [CommitNotice]? {
        guard let first = recent.first, first.clock <= from else { return from > head ? [] : nil }
        let upper = min(through, head)
        guard from <= upper else { return [] }
        guard upper - first.clock < UInt64(recent.count) else { return nil }
        return Array(recent[Int(from - first.clock)...Int(upper - first.clock)])
    }

    public var liveMembers: Int { cursors.count }

    /// Every attached member: live or catching up.
    public var members: [Member] { Array(cursors.keys) + Array(catchingUp.keys) }
}
