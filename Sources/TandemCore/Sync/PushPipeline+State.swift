// The pipeline's internal bookkeeping types (see `PushPipeline`).

/// Why the next load replaces the doc's replica instead of only moving it forward.
enum Replacement: Equatable {
    /// The replica's checksum differed from Redis's (issue 13): replace it even at the same head.
    case resync
    /// Redis's clock of the doc went back (it lost acknowledged commits): replace it even with a lower
    /// head, and restart every member from it. Also settles a pending resync.
    case regression
}

struct PushKey: Hashable {
    var sessionID: String
    var pushID: JSONValue
}

struct PendingPush<Member: Hashable> {
    /// Arrival order (identifies a push while it waits for the head).
    let seq: UInt64
    let member: Member
    let sessionID: String
    let pushID: JSONValue
    let base: UInt64
    let ops: Ops
    let bytes: Int
    let receivedAt: UInt64
    /// Batches it was in that lost the race.
    var attempts = 0
    /// What it waited in the node before its doc saw it, and the doc's estimate of its wait there when it
    /// was admitted: its answer carries both (the loop learns its admission margin from them).
    var waitedBeforeDoc: UInt64 = 0
    var estimatedWait: UInt64 = 0
}

struct BatchEntry<Member: Hashable> {
    var push: PendingPush<Member>
    var decision: PushDecision
    /// `decision.applied.json`, built once (sent to Redis, compared with commits coming back).
    var appliedJSON: JSONValue
    /// `appliedJSON` serialized, once: the script's argument, and every member's patch.
    var appliedBytes: [UInt8] = []
    /// A commit or rebase (in Redis) rather than a discard held until the commit before it is delivered.
    var isCommit: Bool
    /// A commit's index in the batch; for a held discard, the index of the commit it follows.
    var commitIndex: Int
    /// The hash of each record the commit leaves live (`DocChecksum.record` of `decision.values`), from
    /// `makeBatch`: handed to the replica with the commit so that it does not hash them again.
    var recordHashes: [String: DocChecksum] = [:]
    /// Its commit was delivered (or, for a discard, it was answered).
    var delivered = false
    /// Its member is gone: no answer, and no second attempt.
    var abandoned = false

    /// The commit as this node learns it from the script's reply (with the bytes and parsed ops it has).
    func notice(clock: UInt64, node: String, atMs: UInt64, sum: DocChecksum? = nil) -> CommitNotice {
        CommitNotice(
            clock: clock, ops: appliedJSON, by: push.sessionID, node: node, pushID: push.pushID, committedAtMs: atMs,
            encodedOps: appliedBytes, parsedOps: decision.applied, sum: sum, recordHashes: recordHashes)
    }
}

struct InFlightBatch<Member: Hashable> {
    let id: UInt64
    let sentAt: UInt64
    var entries: [BatchEntry<Member>]
    let commitCount: Int
    /// The entry of each commit, by commit index (delivery finds a commit's entry without a search).
    let commitEntries: [Int]
    /// Discards held until a commit of the batch is delivered (usually none). A void push decided behind
    /// a batch still in Redis is held in that batch.
    var heldDiscards: Int
    /// `knownRedisHead` when it was sent: Redis held at least this much before running it, so a reply
    /// naming a lower head (or a first clock at or below it) means Redis lost commits (see `clockWentBack`).
    let knownHeadAtSend: UInt64
    /// The first clock it lands at if it was decided against Redis's state: the replica's head + 1 for the
    /// first batch of a chain, the clock after the batch ahead for a pipelined one (which Redis runs only
    /// there).
    let predictedFirst: UInt64
    let token: String
    /// Bytes of ops and record values (`CommitBatch.bytes`): a doc's batches in Redis hold at most
    /// `maxBatchBytes` together.
    let bytes: Int
    var replied = false
    var firstClock: UInt64?
    var deliveredCommits = 0

    var isDone: Bool { replied && deliveredCommits == commitCount }
}

/// A FIFO with cheap removal from the front (batches take the first pushes; lost races put them back).
struct PushQueue<Member: Hashable> {
    private var storage: [PendingPush<Member>] = []
    private var start = 0

    var count: Int { storage.count - start }
    var isEmpty: Bool { count == 0 }
    var first: PendingPush<Member>? { isEmpty ? nil : storage[start] }

    mutating func append(_ push: PendingPush<Member>) { storage.append(push) }

    mutating func popFirst() -> PendingPush<Member>? {
        guard !isEmpty else { return nil }
        let push = storage[start]
        start += 1
        if start >= 64 && start * 2 >= storage.count {
            storage.removeFirst(start)
            start = 0
        }
        return push
    }

    mutating func prepend(_ pushes: [PendingPush<Member>]) {
        guard !pushes.isEmpty else { return }
        storage = pushes + storage[start...]
        start = 0
    }

    /// Removes and returns the pushes that match, in order.
    @discardableResult
    mutating func removeAll(where shouldRemove: (PendingPush<Member>) -> Bool) -> [PendingPush<Member>] {
        var kept: [PendingPush<Member>] = []
        var removed: [PendingPush<Member>] = []
        for push in storage[start...] {
            if shouldRemove(push) { removed.append(push) } else { kept.append(push) }
        }
        storage = kept
        start = 0
        return removed
    }
}
