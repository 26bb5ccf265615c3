import Logging
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
import TandemRedis

/// Moves each doc's commits from the live log into sealed, compressed history segments (with a
/// checkpoint every `--checkpoint-every` commits or `--checkpoint-interval`), outside the commit path:
/// the commit script only refrains from trimming what is not sealed yet (docs/history.md).
///
/// Every node seals the docs it holds open, from housekeeping (once a second). Nodes holding the same doc
/// race harmlessly: a seal writes only if `hsealed` is still what it read (`HistoryScripts.sealWrite`).
/// A doc this node stops holding, and one it wrote without holding it (restore, fork from the ops port:
/// `wrote`), is flushed: everything up to its last head is sealed at once, whatever the segment size, so
/// no commit waits in the live log of a doc that no node will seal. Decoding, checkpoint replay and
/// compression run on the shared thread pool.
final class HistorySealer: Sendable {
    private struct DocSeal {
        /// The sealed clock as last seen (nil: unknown, read it).
        var sealed: UInt64?
        /// Do not look before this time unless a segment's worth of commits is waiting.
        var notBeforeMs: UInt64 = 0
        /// After a failed round: not before this time, whatever waits (a failing Redis is not hammered).
        var retryAfterMs: UInt64 = 0
        var running = false
        /// Bytes of Redis memory the doc's history took after this node's last seal (sampled).
        var historyBytes: Int?
        /// The last head seen: from the tick while the node holds the doc open, else the last one it had
        /// (or wrote). A doc not held open is flushed up to it.
        var head: UInt64 = 0
        var open = false
        /// Failed rounds of a doc not held open: it is given up after `maxFlushFailures`.
        var flushFailures = 0

        /// Whether a doc not held open still has commits to flush.
        var flushPending: Bool { !open && head > (sealed ?? 0) && flushFailures < HistorySealer.maxFlushFailures }
    }

    private let store: HistoryStore
    private let logger: Logger
    private let docs = NIOLockedValueBox<[String: DocSeal]>([:])
    /// What the last round this sealer wrote for a doc left (`SealedState`): the next round starts from
    /// it instead of reading the state at the sealed clock back from Redis. At most `maxKeptStates` docs.
    private let states = NIOLockedValueBox<[String: SealedState]>([:])
    /// Rounds that started from a kept state (tests: the path a hot doc takes).
    let keptRounds = NIOLockedValueBox(0)
    /// Docs sealed at once (each round is a few Redis calls and some pool work).
    static let maxConcurrentDocs = 8
    /// Segments one doc may seal in a row before others get their turn (the next tick continues).
    static let maxRounds = 64
    /// How long a doc whose seal round failed waits before the next.
    static let retryDelayMs: UInt64 = 5_000
    /// Docs not held open that a node keeps flushing at once (more wait for their turn: `wrote` of a
    /// doc beyond it is dropped, the commit stays in the live log until a node opens the doc).
    static let maxFlushDocs = 10_000
    /// Failed rounds after which a doc not held open is given up (Redis keeps its commits in the live log).
    static let maxFlushFailures = 5
    /// Docs whose sealed state the sealer keeps between rounds (each holds one parsed copy of the doc's
    /// records, as a loaded doc's replica does): twice the docs sealed at once.
    static let maxKeptStates = 2 * maxConcurrentDocs
    /// Commits after the last checkpoint a kept state may carry (for the next version's summary); a doc
    /// that goes longer without a checkpoint is read back as before.
    static let maxKeptCommits = 4_096

    /// Where a seal round can be cut short as if its node died there (tests only: `killHook`).
    enum KillPoint: Sendable {
        /// The round has read what waits and is about to build its checkpoints (asked with no arguments;
        /// a hook may let another sealer run here, the race `lostRace` answers).
        case afterRead
        /// The segment and checkpoints are computed; nothing is written.
        case beforeWrite
        /// The write ran in Redis; its reply is lost.
        case afterWrite
    }

    /// Tests only: asked at each `KillPoint` with the doc and the seal write's arguments; `true` ends the
    /// round there and this sealer never seals that doc again (a dead node's sealer).
    typealias KillHook = @Sendable (KillPoint, _ doc: String, _ writeArgs: [any RedisArgument]) -> Bool
    private let killHook: KillHook?

    /// False: every round reads its start back from Redis, as a round after another sealer's does (tests
    /// compare the two paths).
    private let keepsStates: Bool

    init(store: HistoryStore, logger: Logger, killHook: KillHook? = nil, keepsStates: Bool = true) {
        self.store = store
        self.logger = logger
        self.killHook = killHook
        self.keepsStates = keepsStates
    }

    /// One pass over the docs this node holds open (`heads`: doc → head clock), from housekeeping, and
    /// over those it stopped holding or wrote with commits left to flush.
    func tick(heads: [String: UInt64], nowMs: UInt64, on loop: EventLoop) {
        let policy = store.policy
        let threshold = min(UInt64(policy.segmentCommits), policy.retention)
        let due: [(doc: String, flush: Bool)] = docs.withLockedValue { docs in
            for (doc, head) in heads {
                docs[doc, default: DocSeal()].head = head
                docs[doc]!.open = true
            }
            for doc in docs.keys where heads[doc] == nil { docs[doc]!.open = false }
            // Forget docs no longer open once flushed (or given up).
            docs = docs.filter { $0.value.open || $0.value.running || $0.value.flushPending }
            var lag: UInt64 = 0
            var due: [(doc: String, flush: Bool)] = []
            let running = docs.values.filter(\.running).count
            for (doc, seal) in docs.sorted(by: { $0.key < $1.key }) {
                let head = seal.head
                let unsealed = seal.sealed.map { head > $0 ? head - $0 : 0 } ?? head
                lag = max(lag, unsealed)
                guard !seal.running, unsealed > 0, running + due.count < Self.maxConcurrentDocs, nowMs >= seal.retryAfterMs else {
                    continue
                }
                let flush = !seal.open
                guard flush || seal.sealed == nil || unsealed >= threshold || nowMs >= seal.notBeforeMs else { continue }
                docs[doc]!.running = true
                due.append((doc, flush))
            }
            store.metrics.sealLag.set(to: Double(lag))
            return due
        }
        let tracked = docs.withLockedValue { Set($0.keys) }
        states.withLockedValue { states in states = states.filter { tracked.contains($0.key) } }
        for (doc, flush) in due { seal(doc, round: 0, flush: flush, on: loop) }
    }

    /// This node committed to `doc` up to `head` without (necessarily) holding it open — a restore or a
    /// fork from the ops port: flushed like a doc it stopped holding, unless it holds it open.
    func wrote(_ doc: String, head: UInt64) {
        docs.withLockedValue { docs in
            guard docs[doc] != nil || docs.count < Self.maxFlushDocs else { return }
            var seal = docs[doc] ?? DocSeal()
            seal.head = max(seal.head, head)
            seal.flushFailures = 0
            docs[doc] = seal
        }
    }

    /// Bytes of Redis memory `doc`'s history took after this node last sealed it (for the status page).
    func historyBytes(_ doc: String) -> Int? { docs.withLockedValue { $0[doc]?.historyBytes } }

    private enum Outcome: Sendable {
        case sealed(UInt64, more: Bool, bytes: Int?)
        case wait(sealed: UInt64, untilMs: UInt64)
        case moved
        /// Cut by the kill hook (tests): the doc stays `running`, never sealed again by this sealer.
        case killed
        case nothing(sealed: UInt64?)
    }

    private func seal(_ doc: String, round: Int, flush: Bool, on loop: EventLoop) {
        sealOnce(doc, flush: flush, on: loop).whenComplete { result in
            let again: Bool = self.docs.withLockedValue { docs in
                var seal = docs[doc] ?? DocSeal()
                var again = false
                switch result {
                case .success(.sealed(let clock, let more, let bytes)):
                    seal.sealed = clock
                    seal.historyBytes = bytes ?? seal.historyBytes
                    again = more && round + 1 < Self.maxRounds
                case .success(.wait(let sealed, let until)):
                    seal.sealed = sealed
                    seal.notBeforeMs = until
                case .success(.killed):
                    docs[doc] = seal
                    return false
                case .success(.moved):
                    seal.sealed = nil
                    self.store.metrics.sealRaces.increment()
                case .success(.nothing(let sealed)):
                    seal.sealed = sealed
                    // Nothing (more) to seal: the head read then is as far as a flush needs to go.
                    if !seal.open { seal.head = sealed ?? 0 }
                case .failure(let error):
                    seal.sealed = nil
                    seal.retryAfterMs = NodeClock().wallMs() + Self.retryDelayMs
                    if !seal.open { seal.flushFailures += 1 }
                    self.store.metrics.sealFailures.increment()
                    self.logger.warning("history seal failed", metadata: ["doc": "\(doc)", "error": "\(error)"])
                }
                seal.running = again
                docs[doc] = seal
                return again
            }
            if again { self.seal(doc, round: round + 1, flush: flush, on: loop) }
        }
    }

    /// One round: read what waits, and seal one segment of it if the policy says so (`flush`: whatever
    /// waits, however little).
    private func sealOnce(_ doc: String, flush: Bool, on loop: EventLoop) -> EventLoopFuture<Outcome> {
        let store = self.store
        let policy = store.policy
        let nowMs = NodeClock().wallMs()
        return store.redis.evalScript(
            HistoryScripts.sealRead, keys: HistoryStore.keys(doc),
            args: [policy.segmentCommits, String(nowMs), HistoryStore.maxSealBytes, store.format <= .v3 ? "json" : ""], on: loop
        ).flatMap { reply -> EventLoopFuture<Outcome> in
            let parts = reply.array ?? []
            guard parts.first?.string == "ok", parts.count == 7, let head = parts[1].string.flatMap(UInt64.init),
                let sealed = parts[2].string.flatMap(UInt64.init)
            else {
                if parts.first?.string == "empty" { return loop.makeSucceededFuture(.nothing(sealed: nil)) }
                return loop.makeFailedFuture(HistoryStore.ReadFailure.corrupt("unexpected reply to the seal read"))
            }
            let entries = parts[4].array ?? []
            let lastVersion = try? HistoryVersion(member: parts[3].bytes ?? [], authors: nil)
            let segmentsSince = Int(parts[6].int ?? 0)
            if let lost = parts[5].int, lost > 0 {
                // Never silent: the history now lacks these commits (reads of them answer 404).
                store.metrics.lostCommits.increment(by: lost)
                self.logger.error(
                    "history restarted at the head: commits left the live log before they were sealed",
                    metadata: ["doc": "\(doc)", "from": "\(head - UInt64(lost) + 1)", "to": "\(head)"])
            }
            return HistoryStore.offLoop(loop) { () throws -> Plan? in
                var commits = entries.flatMap { SyncStore.notices(fromStreamEntry: $0) }.filter { $0.clock > sealed }
                guard let oldest = commits.first else { return nil }
                guard oldest.clock == sealed + 1 else { throw HistoryError.missing("the live log lacks commit \(sealed + 1)") }
                guard flush || policy.shouldSeal(unsealed: head - sealed, oldestUnsealedAtMs: oldest.committedAtMs, nowMs: nowMs) else {
                    return Plan(head: head, sealed: sealed, commits: [], waitUntilMs: oldest.committedAtMs + policy.checkpointIntervalMs)
                }
                for k in commits.indices.dropFirst() where commits[k].clock != commits[k - 1].clock + 1 {
                    commits = Array(commits[..<k])
                    break
                }
                let end = policy.segmentEnd(sealed: sealed, available: commits[commits.count - 1].clock, lastCheckpoint: lastVersion?.clock ?? 0)
                commits = commits.filter { $0.clock <= end }
                let last = commits[commits.count - 1]
                let checkpoints = policy.checkpointClocks(
                    sealed: sealed, end: last.clock, endAtMs: last.committedAtMs, lastCheckpoint: lastVersion?.clock ?? 0,
                    lastCheckpointAtMs: lastVersion?.atMs ?? 0, force: segmentsSince + 1 >= HistoryStore.checkpointSegments)
                return Plan(
                    head: head, sealed: sealed, commits: commits, segment: store.pack(Self.segmentParts(commits)),
                    checkpointClocks: checkpoints, previousVersion: lastVersion?.clock ?? 0, lastVersion: lastVersion.map(SealedState.key))
            }.flatMap { plan in
                guard let plan else { return loop.makeSucceededFuture(.nothing(sealed: sealed)) }
                guard !plan.commits.isEmpty else {
                    return loop.makeSucceededFuture(.wait(sealed: sealed, untilMs: plan.waitUntilMs))
                }
                if let killHook = self.killHook, killHook(.afterRead, doc, []) { return loop.makeSucceededFuture(.killed) }
                return self.checkpoints(for: plan, doc: doc, on: loop).flatMap { checkpoints, next in
                    self.write(plan, checkpoints: checkpoints, next: next, flush: flush, doc: doc, on: loop)
                }.flatMapError { error in
                    self.lostRace(error, plan: plan, doc: doc, on: loop)
                }
            }
        }
    }

    /// A round whose checkpoint base is gone (`missing`) lost a race when `hsealed` moved meanwhile:
    /// another sealer's write ran, and its `--history-retention` drop took the checkpoint this round
    /// stood on. That is `.moved` — read again at the next tick, counted as a race — not a failure
    /// (which would wait 5 s and, for a doc no node holds, count towards giving it up). A base missing
    /// with `hsealed` where it was is a real failure.
    private func lostRace(_ error: any Error, plan: Plan, doc: String, on loop: EventLoop) -> EventLoopFuture<Outcome> {
        guard case HistoryStore.ReadFailure.missing = error else { return loop.makeFailedFuture(error) }
        return store.redis.send(RedisCommand("GET", HistoryStore.keys(doc)[10]), on: loop).flatMapThrowing { reply in
            guard reply.string.flatMap(UInt64.init) != plan.sealed else { throw error }
            return .moved
        }
    }

    /// Keeps what a written round left for the doc's next round (or forgets the doc's: nil), within
    /// `maxKeptStates` docs.
    private func keep(_ next: SealedState?, for doc: String) {
        states.withLockedValue { states in
            guard let next, keepsStates else {
                states.removeValue(forKey: doc)
                return
            }
            if states[doc] == nil, states.count >= Self.maxKeptStates, let other = states.keys.first {
                states.removeValue(forKey: other)
            }
            states[doc] = next
        }
    }

    private static func segmentParts(_ commits: [CommitNotice]) -> [[UInt8]] {
        // Two bzip2 streams, the columns and the ops: 0.5 % smaller than three (times apart) on the
        // history bench, 3 % smaller than one.
        let parts = HistoryCodec.encodeSegmentParts(commits)
        return [parts.columns + parts.times, parts.ops]
    }

    private struct Plan: Sendable {
        var head: UInt64
        var sealed: UInt64
        var commits: [CommitNotice]
        var segment: [UInt8] = []
        /// Clocks in the segment that get a checkpoint (`HistoryPolicy.checkpointClocks`).
        var checkpointClocks: [UInt64] = []
        var previousVersion: UInt64 = 0
        /// The last version entry as read (`SealedState.key`; nil: none).
        var lastVersion: [UInt8]? = nil
        var waitUntilMs: UInt64 = 0
    }

    /// The state a round left behind, for the next round of the same doc: a hot doc seals a segment every
    /// few hundred ms, and reading the state at the sealed clock back (the last checkpoint, its deltas,
    /// the segment after it, decompressed, decoded and replayed) was most of the sealer's work per
    /// segment (issue 8 stop 25). Used only when the next read finds `hsealed` at `sealed` and the last
    /// version entry the same (`key`): any other sealer's write, a history restarted at the head or a
    /// doc made anew moves one of them, and the round reads as before.
    private struct SealedState: Sendable {
        /// The sealed clock after the write, and the records there (`atMs`: commit `sealed`'s time).
        var sealed: UInt64
        var state: HistoryCheckpoint
        /// The last version entry (`key`) and the checkpoint it stands for, which a delta is taken from
        /// (nil: none to take one from, the next checkpoint is full), with the deltas under it.
        var version: [UInt8]?
        var base: HistoryCheckpoint?
        var depth: Int
        /// The commits after the last version entry's clock through `sealed` (its summary's commits).
        var sinceVersion: [CommitNotice]

        /// A version entry as compared: clock, time, commits and whether authors were left out (the
        /// authors are stored apart since v4 and not read by the seal read).
        static func key(_ version: HistoryVersion) -> [UInt8] {
            HistoryVersion(clock: version.clock, atMs: version.atMs, commits: version.commits, by: [], moreAuthors: version.moreAuthors).member
        }

        func continues(_ plan: Plan) -> Bool { sealed == plan.sealed && version == plan.lastVersion }
    }

    /// Where a round's checkpoints start: the state at the sealed clock, the checkpoint a delta is taken
    /// from (nil: the next is full) with its depth, and the commits after the previous version entry.
    private struct SealStart {
        var state: HistoryCheckpoint
        var base: HistoryCheckpoint?
        var depth: Int
        var sinceVersion: [CommitNotice]
    }

    /// The checkpoints (blob and version entry) the plan wants: the state at the last sealed clock
    /// (what this sealer's last round of the doc left, `SealedState`, else a history read) with the
    /// segment's commits applied up to each. Each is a delta of the checkpoint before it (blobs v5) unless
    /// that would make a chain of `policy.fullCheckpointEvery` or the one before is not the checkpoint the
    /// read started from (then it is full). Also the state the segment leaves, for the next round (nil
    /// when there is nothing to start from without a read).
    private func checkpoints(for plan: Plan, doc: String, on loop: EventLoop) -> EventLoopFuture<([Checkpoint], SealedState?)> {
        let kept = states.withLockedValue { $0[doc] }.flatMap { $0.continues(plan) ? $0 : nil }
        if let kept {
            keptRounds.withLockedValue { $0 += 1 }
            let start = SealStart(state: kept.state, base: kept.base, depth: kept.depth, sinceVersion: kept.sinceVersion)
            return HistoryStore.offLoop(loop) { try self.checkpoints(for: plan, from: start) }
        }
        guard !plan.checkpointClocks.isEmpty else { return loop.makeSucceededFuture(([], nil)) }
        return store.state(doc: doc, at: plan.sealed, on: loop).flatMap { before in
            HistoryStore.offLoop(loop) {
                let start = SealStart(
                    state: HistoryCheckpoint(clock: before.replica.head, atMs: before.atMs, records: before.replica.records),
                    // The last checkpoint, as the chain of the next delta starts from it.
                    base: before.checkpoint.clock == plan.previousVersion ? before.checkpoint : nil,
                    depth: before.checkpointDepth, sinceVersion: before.commits.filter { $0.clock > plan.previousVersion })
                return try self.checkpoints(for: plan, from: start)
            }
        }
    }

    /// On the thread pool: the plan's checkpoints from `start`, and the state at the segment's end.
    private func checkpoints(for plan: Plan, from start: SealStart) throws -> ([Checkpoint], SealedState?) {
        let metrics = store.metrics
        let format = store.format
        let fullEvery = store.policy.fullCheckpointEvery
        var state = start.state
        var base = start.base
        var depth = start.depth
        var previous = plan.previousVersion
        var version = plan.lastVersion
        var out: [Checkpoint] = []
        let all = start.sinceVersion + plan.commits
        for clock in plan.checkpointClocks {
            let step = plan.commits.filter { $0.clock > state.clock && $0.clock <= clock }
            guard let last = step.last else { continue }
            state = HistoryCheckpoint(
                clock: clock, atMs: last.committedAtMs, records: try HistoryReplay.state(from: state, commits: step, to: clock).records)
            metrics.replayedCommits.increment(by: Int64(step.count))
            let since = all.filter { $0.clock > previous && $0.clock <= clock }
            let summary = HistoryVersion.summarizing(since, since: previous, authors: Set(since.map(\.by)))
            let delta: Bool
            let blob: [UInt8]
            if let base, depth + 1 < fullEvery {
                delta = true
                depth += 1
                blob = store.pack([HistoryCodec.encodeCheckpointDelta(from: base, to: state)])
            } else {
                delta = false
                depth = 0
                blob = store.pack([HistoryCodec.encodeCheckpoint(state)])
            }
            out.append(
                Checkpoint(
                    clock: clock, delta: delta, blob: blob,
                    // Up to v3 the entry is its JSON, authors included (what those nodes read).
                    version: format <= .v3 ? summary?.json ?? [] : summary?.member ?? [],
                    authors: format <= .v3 ? [] : summary?.authorsJSON ?? []))
            base = state
            previous = clock
            version = summary.map(SealedState.key)
        }
        // The state the segment leaves (it usually ends at its last checkpoint: nothing more to replay),
        // kept while the commits since the last version entry stay few.
        let rest = plan.commits.filter { $0.clock > state.clock }
        let sinceVersion = all.filter { $0.clock > previous }
        guard version != nil || previous == 0, sinceVersion.count <= Self.maxKeptCommits, let last = plan.commits.last else {
            return (out, nil)
        }
        if !rest.isEmpty {
            state = HistoryCheckpoint(
                clock: last.clock, atMs: last.committedAtMs, records: try HistoryReplay.state(from: state, commits: rest, to: last.clock).records)
            metrics.replayedCommits.increment(by: Int64(rest.count))
        }
        return (out, SealedState(sealed: last.clock, state: state, version: version, base: base, depth: depth, sinceVersion: sinceVersion))
    }

    private struct Checkpoint: Sendable {
        var clock: UInt64
        /// A delta of the checkpoint before it (`d:CLOCK`), else full.
        var delta: Bool
        var blob: [UInt8]
        /// `HistoryVersion.member` and `.authorsJSON`.
        var version: [UInt8]
        var authors: [UInt8]
    }

    private func write(_ plan: Plan, checkpoints: [Checkpoint], next: SealedState?, flush: Bool, doc: String, on loop: EventLoop)
        -> EventLoopFuture<Outcome>
    {
        let store = self.store
        let first = plan.commits[0].clock
        let last = plan.commits[plan.commits.count - 1].clock
        let maxAt = plan.commits.map(\.committedAtMs).max() ?? 0
        let cutoff = store.retentionMs > 0 ? NodeClock().wallMs() - min(store.retentionMs, NodeClock().wallMs()) : 0
        var args: [any RedisArgument] = [String(plan.sealed), String(first), String(last), plan.segment, String(maxAt), String(cutoff)]
        for checkpoint in checkpoints {
            args += [String(checkpoint.clock), checkpoint.delta ? "d" : "", checkpoint.blob, checkpoint.version, checkpoint.authors]
                as [any RedisArgument]
        }
        if let killHook, killHook(.beforeWrite, doc, args) { return loop.makeSucceededFuture(.killed) }
        return store.redis.evalScript(
            HistoryScripts.sealWrite, keys: HistoryStore.keys(doc), args: args, on: loop
        ).map { [killHook, args] reply in
            if let killHook, killHook(.afterWrite, doc, args) { return .killed }
            guard let parts = reply.array, parts.first?.string == "ok" else {
                self.states.withLockedValue { _ = $0.removeValue(forKey: doc) }
                return .moved
            }
            self.keep(next, for: doc)
            store.metrics.sealedCommits.increment(by: Int64(plan.commits.count))
            store.metrics.segments.increment()
            store.metrics.bytesWritten.increment(by: Int64(plan.segment.count + checkpoints.reduce(0) { $0 + $1.blob.count }))
            store.metrics.checkpoints.increment(by: Int64(checkpoints.count))
            let threshold = min(UInt64(store.policy.segmentCommits), store.policy.retention)
            return .sealed(
                last, more: plan.head > last && (flush || plan.head - last >= threshold), bytes: parts.count > 2 ? parts[2].int.map { Int($0) } : nil)
        }
    }
}

extension HistorySealer {
    /// Seals `doc` up to its head now, whatever the policy says about waiting (a flush: segments end at
    /// the head, checkpoints still fall every `--checkpoint-every` commits), and succeeds with the sealed
    /// clock once nothing is left in the live log. For tests (`TandemNode.sealHistory`): what they read
    /// from history must not depend on where in their pushes housekeeping's once-a-second tick fell.
    /// A round that races a tick of this node or another node's sealer is read again: the loser's write
    /// is refused (`.moved`), or its checkpoint's base was just dropped by `--history-retention`.
    func sealToHead(_ doc: String, on loop: EventLoop, round: Int = 0) -> EventLoopFuture<UInt64> {
        let promise = loop.makePromise(of: UInt64.self)
        @Sendable func again(_ error: any Error) {
            guard round + 1 < Self.maxRounds else { return promise.fail(error) }
            sealToHead(doc, on: loop, round: round + 1).cascade(to: promise)
        }
        sealOnce(doc, flush: true, on: loop).whenComplete { result in
            switch result {
            case .success(.nothing(let sealed)): promise.succeed(sealed ?? 0)
            case .success(.sealed(let clock, more: false, _)): promise.succeed(clock)
            // More to seal (a segment ends at each due checkpoint), or another sealer moved first.
            case .success: again(HistoryError.missing("\(doc) not sealed to its head in \(Self.maxRounds) rounds"))
            case .failure(let error): again(error)
            }
        }
        return promise.futureResult
    }
}
