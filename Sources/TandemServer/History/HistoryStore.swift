import NIOCore
import NIOPosix
import TandemCore
import TandemRedis

/// A doc's history in Redis (issue 15, docs/history.md; keys and scripts: `HistoryScripts`). Reads and
/// writes are thin: the scripts fetch raw blobs and entries, the decoding, replay and compression run on
/// NIO's shared thread pool (never on an event loop that serves clients), the logic is TandemCore's
/// (`HistoryCodec`, `HistoryReplay`, `HistoryPolicy`). Futures complete on the caller's loop.
final class HistoryStore: Sendable {
    let redis: any RedisCommandClient
    let policy: HistoryPolicy
    /// `--history-retention` in ms (0: keep everything while the doc lives).
    let retentionMs: UInt64
    let metrics: HistoryMetrics
    /// `--history-format`: what the sealer writes (every format reads).
    let format: HistoryFormat

    /// Segments one read may combine: the sealer writes a checkpoint at least every `checkpointSegments`
    /// segments, so a read within history needs at most that many; more means something is off.
    static let maxReadSegments = 256
    /// A checkpoint at least every this many segments (small `--log-retention` makes small segments).
    static let checkpointSegments = 64
    /// Live-log entries (and their bytes) one read may replay after the last sealed commit: the sealer
    /// keeps this near one segment; a read beyond it is refused with 503 `busy` rather than held.
    static let maxReadLogEntries = 20_000
    static let maxReadLogBytes = 64 << 20
    /// Bytes of log entries one seal round reads.
    static let maxSealBytes = 8 << 20
    /// Checkpoints a read walks back from a delta to the full one it stands on (`maxChain` in the
    /// scripts); the sealer writes a full one every `HistoryPolicy.fullCheckpointEvery` (8).
    static let maxCheckpointChain = 64

    init(redis: any RedisCommandClient, policy: HistoryPolicy, retentionMs: UInt64, metrics: HistoryMetrics, format: HistoryFormat = .v5) {
        self.redis = redis
        self.policy = policy
        self.retentionMs = retentionMs
        self.metrics = metrics
        self.format = format
    }

    /// The policy `--history-format` implies on top of the options: up to v3, segments of 1,024 commits
    /// that end at their checkpoint; up to v4, no deltas.
    static func policy(_ base: HistoryPolicy, format: HistoryFormat) -> HistoryPolicy {
        var policy = base
        if format <= .v3 {
            policy.segmentCommits = 1_024
            policy.checkpointsInsideSegments = false
        }
        if format <= .v4 { policy.fullCheckpointEvery = 1 }
        return policy
    }

    /// A blob as `format` writes it: v3 nodes inflate only zlib.
    func pack(_ parts: [[UInt8]]) -> [UInt8] { format <= .v3 ? HistoryBlob.packZlib(parts) : HistoryBlob.pack(parts) }

    static func keys(_ doc: String) -> [String] { GroupCommitScript.keys(doc) }

    /// Runs `work` on the shared thread pool, completing on `loop`.
    static func offLoop<T: Sendable>(_ loop: EventLoop, _ work: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        NIOThreadPool.singleton.runIfActive(eventLoop: loop, work)
    }

    // MARK: Reading

    enum ReadFailure: Error, Equatable {
        case unknownDoc
        /// The clock is after the head.
        case beyond(head: UInt64)
        /// Not in the history (before its start; `oldest`: the first clock it holds).
        case missing(head: UInt64, oldest: UInt64?)
        /// More than one read may do (the sealer is far behind).
        case busy(head: UInt64)
        case corrupt(String)
    }

    /// The state after commit `clock`, and the commits that led there from the checkpoint it started at.
    struct StateAt: Sendable {
        var head: UInt64
        var checkpoint: HistoryCheckpoint
        /// Commits after the checkpoint up to `clock`, in order.
        var commits: [CommitNotice]
        var replica: DocReplica
        /// Delta checkpoints applied to a full one to get `checkpoint` (0: it is full).
        var checkpointDepth = 0
        /// Segments decompressed for it.
        var segments = 0
        /// When commit `clock` was made (the checkpoint's time when it is the checkpoint).
        var atMs: UInt64 { commits.last?.committedAtMs ?? checkpoint.atMs }
    }

    func state(doc: String, at clock: UInt64, on loop: EventLoop) -> EventLoopFuture<StateAt> {
        redis.evalScript(
            HistoryScripts.read, keys: Self.keys(doc),
            args: [String(clock), Self.maxReadLogEntries, Self.maxReadSegments, Self.maxReadLogBytes], on: loop
        ).flatMap { [metrics] reply in
            Self.offLoop(loop) {
                let result = try Self.decodeState(reply, clock: clock)
                metrics.replayedCommits.increment(by: Int64(result.commits.count))
                metrics.readSegments.increment(by: Int64(result.segments))
                return result
            }
        }.flatMapErrorThrowing { [metrics] error in
            if case ReadFailure.busy = error { metrics.readsRefused.increment() }
            throw error
        }
    }

    static func decodeState(_ reply: RedisValue, clock: UInt64) throws -> StateAt {
        let parts = reply.array ?? []
        let kind = parts.first?.string ?? ""
        let head = parts.count > 1 ? parts[1].string.flatMap(UInt64.init) ?? 0 : 0
        switch kind {
        case "ok" where parts.count == 8:
            break
        case "beyond":
            throw head == 0 ? ReadFailure.unknownDoc : ReadFailure.beyond(head: head)
        case "missing":
            throw ReadFailure.missing(head: head, oldest: parts.count > 2 ? parts[2].string.flatMap(UInt64.init) : nil)
        case "busy":
            throw ReadFailure.busy(head: head)
        default:
            throw ReadFailure.corrupt("unexpected reply to the history read")
        }
        switch replay(parts, clock: clock, head: head) {
        case .success(let state): return state
        case .failure(.corrupt(let why)): throw ReadFailure.corrupt(why)
        case .failure(.missing): throw ReadFailure.missing(head: head, oldest: nil)
        }
    }

    private static func replay(_ parts: [RedisValue], clock: UInt64, head: UInt64) -> Result<StateAt, HistoryError> {
        Result { () throws(HistoryError) -> StateAt in
            var checkpoint = try HistoryCodec.decodeCheckpoint(HistoryBlob.unpack(parts[4].bytes ?? []))
            let deltas = parts[7].array ?? []
            for delta in deltas.reversed() {
                checkpoint = try HistoryCodec.applyCheckpointDelta(HistoryBlob.unpack(delta.bytes ?? []), to: checkpoint)
            }
            var commits: [CommitNotice] = []
            for blob in parts[5].array ?? [] {
                commits += try HistoryCodec.decodeSegment(HistoryBlob.unpack(blob.bytes ?? []))
            }
            let sealed = parts[2].string.flatMap(UInt64.init) ?? 0
            for entry in parts[6].array ?? [] {
                commits += SyncStore.notices(fromStreamEntry: entry).filter { $0.clock > sealed }
            }
            commits = commits.filter { $0.clock > checkpoint.clock && $0.clock <= clock }
            let replica = try HistoryReplay.state(from: checkpoint, commits: commits, to: clock)
            return StateAt(
                head: head, checkpoint: checkpoint, commits: commits, replica: replica, checkpointDepth: deltas.count,
                segments: parts[5].array?.count ?? 0)
        }
    }

    /// The clock of the last commit at or before `timeMs` (0 for a time before the first commit, when the
    /// history starts at 0). Fails with `.missing` for a time before the history's start.
    func clock(doc: String, atTime timeMs: UInt64, on loop: EventLoop) -> EventLoopFuture<UInt64> {
        redis.evalScript(HistoryScripts.segmentAtTime, keys: Self.keys(doc), args: [String(timeMs)], on: loop).flatMap { reply in
            let parts = reply.array ?? []
            guard parts.count == 5, let head = parts[0].string.flatMap(UInt64.init) else {
                return loop.makeFailedFuture(ReadFailure.corrupt("unexpected reply to the time lookup"))
            }
            guard head > 0 else { return loop.makeFailedFuture(ReadFailure.unknownDoc) }
            let oldest = (try? HistoryVersion(member: parts[4].bytes ?? [], authors: nil))
            if let oldest, oldest.clock > 0, timeMs < oldest.atMs {
                return loop.makeFailedFuture(ReadFailure.missing(head: head, oldest: oldest.clock))
            }
            let sealed = parts[1].string.flatMap(UInt64.init) ?? 0
            if let first = parts[2].string.flatMap(UInt64.init), let blob = parts[3].bytes, !blob.isEmpty {
                return Self.offLoop(loop) {
                    let commits = try HistoryCodec.decodeSegment(HistoryBlob.unpack(blob))
                    return HistoryReplay.lastCommit(atOrBefore: timeMs, in: commits) ?? first - 1
                }
            }
            // Every sealed commit is at or before the time: look in the live log after it.
            return self.liveClock(doc: doc, after: sealed, atOrBefore: timeMs, head: head, on: loop)
        }
    }

    private func liveClock(doc: String, after sealed: UInt64, atOrBefore timeMs: UInt64, head: UInt64, on loop: EventLoop)
        -> EventLoopFuture<UInt64>
    {
        guard head > sealed else { return loop.makeSucceededFuture(head) }
        return redis.evalScript(
            HistoryScripts.read, keys: Self.keys(doc),
            args: [String(head), Self.maxReadLogEntries, Self.maxReadSegments, Self.maxReadLogBytes], on: loop
        ).flatMap { reply in
            Self.offLoop(loop) {
                let parts = reply.array ?? []
                guard parts.first?.string == "ok", parts.count == 8 else { throw ReadFailure.busy(head: head) }
                let live = (parts[6].array ?? []).flatMap { SyncStore.notices(fromStreamEntry: $0) }.filter { $0.clock > sealed }
                return HistoryReplay.lastCommit(atOrBefore: timeMs, in: live) ?? sealed
            }
        }
    }

    /// Up to `limit` versions (checkpoints) before clock `before`, newest first, and the head.
    func versions(doc: String, before: UInt64, limit: Int, on loop: EventLoop) -> EventLoopFuture<(head: UInt64, versions: [HistoryVersion])> {
        redis.evalScript(HistoryScripts.versionList, keys: Self.keys(doc), args: [String(before), limit], on: loop).flatMapThrowing { reply in
            let parts = reply.array ?? []
            guard parts.count == 4, let head = parts[0].string.flatMap(UInt64.init) else {
                throw ReadFailure.corrupt("unexpected reply to the version list")
            }
            guard head > 0 else { throw ReadFailure.unknownDoc }
            let members = parts[2].array ?? []
            let authors = parts[3].array ?? []
            return (
                head,
                members.indices.compactMap { k in
                    try? HistoryVersion(member: members[k].bytes ?? [], authors: k < authors.count ? authors[k].bytes : nil)
                }
            )
        }
    }

    /// Sealed commits from `from` on (at most `count`, from at most a few segments), for log reads before
    /// the live log's start. Empty when `from` is not sealed (the live log holds it).
    func sealedLog(doc: String, from: UInt64, count: Int, on loop: EventLoop) -> EventLoopFuture<[CommitNotice]> {
        redis.evalScript(HistoryScripts.segments, keys: Self.keys(doc), args: [String(from), 4], on: loop).flatMap { reply in
            let blobs = (reply.array ?? []).count == 3 ? reply.array![2].array ?? [] : []
            guard !blobs.isEmpty else { return loop.makeSucceededFuture([]) }
            return Self.offLoop(loop) {
                var out: [CommitNotice] = []
                for blob in blobs where out.count < count {
                    let commits = try HistoryCodec.decodeSegment(HistoryBlob.unpack(blob.bytes ?? []))
                    for commit in commits where commit.clock >= from && out.count < count {
                        if let last = out.last, commit.clock != last.clock + 1 { return out }
                        out.append(commit)
                    }
                }
                return out
            }
        }
    }

    /// Bytes of Redis memory the doc's history takes (sampled), its segments and checkpoints.
    func size(doc: String, on loop: EventLoop) -> EventLoopFuture<(bytes: Int, segments: Int, checkpoints: Int, sealed: UInt64?)> {
        redis.evalScript(HistoryScripts.size, keys: Self.keys(doc), args: [], on: loop).map { reply in
            let parts = reply.array ?? []
            guard parts.count == 4 else { return (0, 0, 0, nil) }
            return (Int(parts[0].int ?? 0), Int(parts[1].int ?? 0), Int(parts[2].int ?? 0), parts[3].string.flatMap(UInt64.init))
        }
    }
}
