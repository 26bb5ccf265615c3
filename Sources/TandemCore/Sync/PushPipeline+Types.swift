/// Settings of a doc's push pipeline (from `tandem serve` flags; the defaults are the flags' defaults).
public struct PushPipelineSettings: Sendable, Equatable {
    /// This node's id: commits it executed carry it, which is how the pipeline recognises its own.
    public var nodeID: String
    public var limits = SyncLimits()
    /// `--log-retention`: commits the Redis log keeps (the ordered delivery needs it for catch-up plans).
    public var retention: UInt64 = 10_000
    /// `--max-queued-pushes`: pushes waiting in one doc. A memory bound only: admission by waiting time
    /// (below) normally refuses long before it.
    public var maxQueuedPushes = 1_000
    /// `--max-push-wait-ms`: a push whose estimated wait before its commit exceeds this is refused at once
    /// (`unavailable` with `retryAfterMs`) instead of queueing.
    public var maxPushWaitNanos: UInt64 = 250_000_000
    /// Most pushes in one group commit. Bounds one script call's time in Redis (Redis runs nothing else
    /// meanwhile), its arguments, and the batch message every node decodes.
    public var maxBatchPushes = 128
    /// Most bytes of ops and record values in one group commit (a single larger push still goes alone).
    public var maxBatchBytes = 1 << 20
    /// Most pushes of one session in Redis at once (in all the doc's batches in flight): half the 64 push
    /// ids Redis remembers per session (`GroupCommitScript`). When a connection drops, the pushes of its
    /// batches in Redis commit unanswered and the client re-sends them; with at most 32 in flight, those
    /// and the ones answered just before (whose answers may have been lost with the socket) are still
    /// remembered when the re-sent copies arrive, so they are recognised as duplicates instead of being
    /// applied twice.
    public var maxSessionPushesPerBatch = 32
    /// `--max-batches-in-flight`: group commits of one doc in Redis at once. The second and later are
    /// decided against the state the ones ahead will leave and run only if they left it (see
    /// `PushPipeline`): a doc's commit rate is no longer one batch per round trip. 1 turns pipelining off.
    public var maxBatchesInFlight = 2
    /// `--commit-linger-ms`: longest a doc holds its first queued push so that the pushes arriving
    /// meanwhile ride the same group commit (0: never). Only while the loop is busy and the doc busy enough
    /// for another push to come (see `PushPipeline.startLinger`): an idle node commits a lone push at once.
    public var commitLingerNanos: UInt64 = 20_000_000
    /// `--commit-linger-pushes`: a linger ends as soon as this many pushes wait (a batch worth sending).
    public var commitLingerPushes = 4
    /// `--commit-linger-min-lag-ms`: the loop counts as busy — lingering pays — while its smoothed lag
    /// (`LoopLoad.lagNanos`) is at least this (0: whenever the doc is busy, like Kafka's `linger.ms`).
    public var commitLingerMinLagNanos: UInt64 = 2_000_000
    /// Commit attempts of one push that lost the race for its records before it is refused `unavailable`.
    public var maxAttempts = 16
    /// How long the pipeline waits for the replica to reach a clock Redis is known to have (a push's
    /// base, or the head a lost race reported) before it gives up on that wait.
    public var headWaitNanos: UInt64 = 2_000_000_000
    /// Pub/sub is ordered, so a gap means lost messages (a resubscribe); stragglers get this long before
    /// the log is read.
    public var gapGraceNanos: UInt64 = 100_000_000
    /// Log entries read at once when filling a gap.
    public var logReadCount = 1_000
    /// The service-time model's starting point, before any batch was measured: one round trip to
    /// Redis, and the extra time each further push of a batch adds (see `ServiceTimeModel`).
    public var initialRoundTripNanos: UInt64 = 1_000_000
    public var initialPerPushNanos: UInt64 = 50_000
    /// Weight of the newest measurement in the service-time averages.
    public var serviceTimeWeight = 0.2
    /// `retryAfterMs` never exceeds this.
    public var maxRetryAfterMs: UInt64 = 30_000

    public init(nodeID: String) { self.nodeID = nodeID }
}

/// How the pipeline answers one push. Results carry a clock and sit in the member's ordered stream;
/// errors do not (nothing of the push was applied, or, for `unavailable`, nothing acknowledged).
public enum PushAnswer: Equatable, Sendable {
    /// `{"t":"result",…}`: commit/rebase at the push's clock, or discard at the member's position.
    case result(action: PushDecision.Action, clock: UInt64, applied: JSONValue?, reason: String?)
    /// `{"t":"error",…}` with the push's id.
    case error(code: ErrorCode, message: String, retryAfterMs: UInt64?)

    static func refusal(_ code: ErrorCode, _ message: String, retryAfterMs: UInt64? = nil) -> PushAnswer {
        .error(code: code, message: message, retryAfterMs: retryAfterMs)
    }
}

/// One answer, with what the owner needs for metrics.
public struct PushReply<Member: Hashable>: Equatable {
    public var member: Member
    public var pushID: JSONValue
    public var answer: PushAnswer
    /// When the push arrived (push → answer latency).
    public var receivedAtNanos: UInt64
    /// A rebase or discard caused by a change the pusher had not seen.
    public var conflicted: Bool
    /// For a discard with reason `invalid`: the record and the path that failed the doc's schema.
    public var violation: RecordViolation? = nil
    /// For a commit or rebase: the doc's checksum after it, as Redis computed it (`"sum"`, issue 13).
    public var sum: DocChecksum? = nil
    /// For a commit or rebase answered from this node's group commit: when that batch was sent to Redis
    /// (splits the push's time in its doc into its wait in the queue and its commit).
    public var sentAtNanos: UInt64? = nil
    /// For a commit or rebase answered from this node's group commit: what the push waited in the node
    /// before its doc saw it (`push`'s `waitedNanos`), and the doc's estimate of its wait there when it
    /// was admitted (`estimatedWaitNanos`). The owner's `LoopLoad.answered` learns the admission margin
    /// from how much longer it took.
    public var waitedNanos: UInt64 = 0
    public var estimatedNanos: UInt64? = nil
}

/// One group commit for `GroupCommitScript`: consecutive commits, all or nothing.
public struct CommitBatch: Equatable, Sendable {
    public struct Commit: Equatable, Sendable {
        public var sessionID: String
        public var pushID: JSONValue
        /// The ops as applied (published and logged).
        public var ops: JSONValue
        /// `ops` serialized (what the script writes and publishes).
        public var encodedOps: [UInt8]
        /// What this commit adds to the doc's checksum (new record hashes minus old ones, issue 13): the
        /// script adds it to the checksum stored with the clock.
        public var sumDelta: DocChecksum = .zero
    }

    /// The final state of one record after the batch.
    public struct Write: Equatable, Sendable {
        /// Canonical JSON of the record, nil if the batch removed it.
        public var value: [UInt8]?
        /// The commit (index into `commits`) that wrote it last: its clock is the record's version or
        /// tombstone clock.
        public var commitIndex: Int
        /// The record was missing before the batch (a put may revive a tombstone).
        public var wasMissing: Bool
    }

    /// Identifies the batch in `commitReplied`.
    public var id: UInt64
    public var commits: [Commit]
    /// What must hold in Redis before the batch, for each record the batch touches first (later touches
    /// depend on the batch's own writes and are not checked).
    public var expectations: [String: PushDecision.Expectation]
    /// For each `.exists` expectation, the version the replica had (issue 13): the commits' checksum deltas
    /// subtract the hash of the value the replica holds, which is only Redis's if the version is the same
    /// (a put or remove does not pin the version; another node may have changed the record meanwhile).
    public var assumedVersions: [String: UInt64] = [:]
    public var writes: [String: Write]
    /// Records the batch creates and removes, net (for `--max-doc-records`).
    public var created: Int
    public var removed: Int
    /// Bytes of ops and record values (a proxy for the script's work).
    public var bytes: Int
    /// Names this batch in Redis: the script records `token@lastClock` as the doc's tail, which is what a
    /// batch pipelined behind this one checks.
    public var token: String = ""
    /// Pipelined behind a batch still in Redis: run only if Redis's head is `lastClock` and that batch
    /// (`token`) wrote it — the state it was decided against. Otherwise nothing is written (`conflict`).
    public var after: Predecessor? = nil

    /// The batch a pipelined batch runs behind, and the head it must have left.
    public struct Predecessor: Equatable, Sendable {
        public var token: String
        public var lastClock: UInt64

        public init(token: String, lastClock: UInt64) {
            self.token = token
            self.lastClock = lastClock
        }

        /// What the script compares with the doc's recorded tail.
        public var tail: String { "\(token)@\(lastClock)" }
    }
}

/// What Redis answered to a `CommitBatch`.
public enum CommitBatchOutcome: Equatable, Sendable {
    /// Committed at `firstClock…firstClock + commits.count - 1`.
    case committed(firstClock: UInt64, atMs: UInt64)
    /// An expectation failed: nothing was written. Redis is at `head`.
    case conflict(head: UInt64)
    /// These commits (by index) were committed before by the same session with the same push id, at
    /// these clocks: nothing was written.
    case duplicate(head: UInt64, clocks: [Int: UInt64])
    /// The doc would exceed `--max-doc-records`: nothing was written.
    case tooLarge(head: UInt64, records: Int)
    /// Redis failed or timed out: the batch may or may not have been executed.
    case failed
}

/// What the owner of a pipeline must do, in order.
public enum PushAction<Member: Hashable>: Equatable {
    /// Run the group commit; report with `commitReplied(batch.id, …)`.
    case commit(CommitBatch)
    /// A commit in clock order: the same `patch` to `patchTo`, and the pusher's `result` if it is one of
    /// this node's pushes whose pusher is live.
    case deliver(CommitNotice, patchTo: [Member], result: PushReply<Member>?)
    /// An answer outside a commit (discard at the member's position, or an error).
    case answer(PushReply<Member>)
    /// Read the Redis log from `from` (`logReadCount` commits at most); report with `logRead` or
    /// `logReadFailed`.
    case readLog(from: UInt64, count: Int)
    /// Read the doc from Redis again (the commits it missed are gone from the log); report with `load`
    /// or `loadFailed`.
    case reload
    /// Send a member this catch-up (after a reload every member restarts from a snapshot).
    case catchUp(Member, SyncDoc<Member>.CatchUp)
}

/// Cumulative counts for metrics (the owner turns differences into counter increments).
public struct PushPipelineCounters: Equatable, Sendable {
    /// Group commits sent, and the commits in them.
    public var batches: UInt64 = 0
    public var batchedCommits: UInt64 = 0
    /// Batches that lost the race for their records (re-decided), were over the doc limit, or hit
    /// a duplicate.
    public var batchConflicts: UInt64 = 0
    /// Pushes refused because their wait would have exceeded `maxPushWaitNanos`...
    public var overloadRefusals: UInt64 = 0
    /// ... or because `maxQueuedPushes` were queued (whatever the wait).
    public var queueFullRefusals: UInt64 = 0
    /// ... or because the time they had waited in the node before their doc saw them, added to their wait
    /// in the doc, passed `maxPushWaitNanos` (the doc's own estimate alone was within it).
    public var delayedRefusals: UInt64 = 0
    /// ... or because their wait was within `maxPushWaitNanos` but not within it less the loop's admission
    /// margin (`LoopLoad.marginNanos`, `--max-push-wait-margin-ms`).
    public var marginRefusals: UInt64 = 0
    /// Pushes decided against a replica that had moved past their base.
    public var concurrentPushes: UInt64 = 0
    /// Gap-fill log reads requested.
    public var logReads: UInt64 = 0
    /// Times Redis was found to hold less of the doc than this node had seen (see `clockWentBack`).
    public var clockRegressions: UInt64 = 0
    /// Batches sent while another batch of the doc was still in Redis (`maxBatchesInFlight`)...
    public var pipelinedBatches: UInt64 = 0
    /// ... and batches taken back unanswered because one ahead of them did not leave the state they were
    /// decided against (it lost a race, failed, or landed after another node's commit): re-decided.
    public var pipelineBreaks: UInt64 = 0
    /// Commit lingers that ended (`commitLingerNanos`): at their deadline, or cut short once
    /// `commitLingerPushes` waited; and the time they held the queue, in all.
    public var lingersExpired: UInt64 = 0
    public var lingersFilled: UInt64 = 0
    public var lingerNanos: UInt64 = 0

    public init() {}
}
