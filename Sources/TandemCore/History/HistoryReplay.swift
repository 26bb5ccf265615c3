/// Reading the past (issue 15): the state at a clock is the nearest checkpoint at or before it plus the
/// commits after it, replayed with the same `DocReplica.apply` every node uses, so a replay equals what
/// the nodes held at that clock byte for byte. Pure.
public enum HistoryReplay {
    /// The records after commit `clock`: `checkpoint` (at or before `clock`) with `commits` applied in
    /// order. `commits` must hold every clock from `checkpoint.clock + 1` through `clock` (more on either
    /// side is ignored); a missing one throws `.missing`, ops that do not parse throw `.corrupt`. The
    /// replica keeps no checksum (`sum` is zero): its `records` and `head` are what it is for.
    public static func state(from checkpoint: HistoryCheckpoint, commits: [CommitNotice], to clock: UInt64)
        throws(HistoryError) -> DocReplica
    {
        guard checkpoint.clock <= clock else {
            throw .missing("the checkpoint at \(checkpoint.clock) is after clock \(clock)")
        }
        // Untracked: history reads only the records, and hashing every record at the start and each changed
        // one per commit (issue 13's checksum) was most of the sealer's replay on a hot doc whose shared
        // records are long (issue 8 stop 25: the records' canonical JSON hashed once per commit).
        var replica = DocReplica.untracked(head: checkpoint.clock, records: checkpoint.records)
        for commit in commits where commit.clock > replica.head && commit.clock <= clock {
            guard commit.clock == replica.head + 1 else {
                throw .missing("commit \(replica.head + 1) is not in the history")
            }
            let ops: Ops
            do { ops = try commit.parsedOps ?? Ops(json: commit.ops) } catch { throw .corrupt("commit \(commit.clock) holds malformed ops") }
            replica.apply(clock: commit.clock, ops: ops)
        }
        guard replica.head == clock else { throw .missing("commit \(replica.head + 1) is not in the history") }
        return replica
    }

    /// The ops of one commit that turn `current` into `target`: a `put` of every record whose value
    /// differs (or is missing), a `remove` of every record `target` does not hold. Empty when they are
    /// equal. A put (not a field-level patch) says exactly "this record as it was", whatever happened in
    /// between, which is what a restore means.
    public static func restoreOps(from current: [String: JSONValue], to target: [String: JSONValue]) -> Ops {
        var ops: [String: RecordOp] = [:]
        for (id, value) in target where current[id] != value { ops[id] = .put(value) }
        for id in current.keys where target[id] == nil { ops[id] = .remove }
        return Ops(ops)
    }

    /// The commit at or before `timeMs`: the last of `commits` (in clock order) committed at or before it,
    /// with times made monotonic first (nodes' clocks differ a little, so a commit may carry an earlier
    /// time than the one before it: it counts as no earlier than that one). Nil when the first is later.
    public static func lastCommit(atOrBefore timeMs: UInt64, in commits: [CommitNotice], notBefore floorMs: UInt64 = 0) -> UInt64? {
        var found: UInt64?
        var seen = floorMs
        for commit in commits {
            seen = max(seen, commit.committedAtMs)
            if seen > timeMs { break }
            found = commit.clock
        }
        return found
    }
}

/// When the sealer moves commits from the live log into history, and which segment ends get a
/// checkpoint. Pure (time passed in).
public struct HistoryPolicy: Equatable, Sendable {
    /// Most commits in one segment (and the count that seals one as soon as it is reached). 2,048 by
    /// default: with the default `--checkpoint-every` (1,000) a segment holds the commits of two
    /// checkpoint intervals and the checkpoint in its middle (`segmentEnd`, `checkpointClocks`), so a read
    /// decompresses one checkpoint and one segment and replays at most 1,000 commits, and the compressor
    /// pays its start-up (each segment's sessions, record ids, field names) once per 2,000 commits:
    /// the history in 1,000-commit segments took 11 % more Redis memory on the history bench.
    public var segmentCommits: Int
    /// `--checkpoint-every`: a checkpoint every this many commits after the last (inside a segment or at its end).
    public var checkpointEvery: UInt64
    /// `--checkpoint-interval`: a checkpoint at the first segment end at least this long after the last
    /// (so a doc that changes gets one at least this often), and commits older than this are sealed even
    /// when they fill no segment.
    public var checkpointIntervalMs: UInt64
    /// `--log-retention`: commits the live log keeps. Commits beyond it are sealed at once (the log's trim
    /// waits for them), so a small retention gets small segments and a log of its own size.
    public var retention: UInt64
    /// Every this many checkpoints one is full, the others deltas of the one before
    /// (`HistoryCodec.encodeCheckpointDelta`; 1: all full, as blobs up to v4 wrote them). A read
    /// decompresses one full checkpoint and at most `fullCheckpointEvery - 1` deltas.
    public var fullCheckpointEvery: Int
    /// Whether a segment spans several checkpoint intervals with the checkpoints inside it (blobs v4 on),
    /// or ends at the first checkpoint due in it (up to v3, whose readers need a segment to start right
    /// after its checkpoint).
    public var checkpointsInsideSegments: Bool

    /// Full checkpoints every 8 (blobs v5): on the `history-at` doc (1,000 records, each commit patching
    /// one field of a random one) a delta is half a full checkpoint (2.5 against 5.0 KB compressed), so 8
    /// take the checkpoints' Redis memory from 612 to 316 KB (that doc's history from 2.12× to 1.50× its
    /// compressed ops) while a read decompresses and applies 3.5 deltas on average, 7 at most: node CPU
    /// per `/at` 9.6 → 12.7 ms on a loaded machine (docs/benchmarks.md). Not an option: what it trades is
    /// bytes against read time, both measured there, and `--checkpoint-every` already lets an operator
    /// move that line.
    public static let defaultFullCheckpointEvery = 8

    public init(
        segmentCommits: Int = 2_048, checkpointEvery: UInt64 = 1_000, checkpointIntervalMs: UInt64 = 3_600_000, retention: UInt64 = 10_000,
        fullCheckpointEvery: Int = defaultFullCheckpointEvery, checkpointsInsideSegments: Bool = true
    ) {
        self.segmentCommits = max(1, segmentCommits)
        self.checkpointEvery = max(1, checkpointEvery)
        self.checkpointIntervalMs = checkpointIntervalMs
        self.retention = max(1, retention)
        self.fullCheckpointEvery = max(1, fullCheckpointEvery)
        self.checkpointsInsideSegments = checkpointsInsideSegments
    }

    /// Whether to seal now: `unsealed` commits wait after the last sealed one, the oldest committed at
    /// `oldestUnsealedAtMs`.
    public func shouldSeal(unsealed: UInt64, oldestUnsealedAtMs: UInt64, nowMs: UInt64) -> Bool {
        guard unsealed > 0 else { return false }
        if unsealed >= min(UInt64(segmentCommits), retention) { return true }
        return nowMs >= oldestUnsealedAtMs && nowMs - oldestUnsealedAtMs >= checkpointIntervalMs
    }

    /// Checkpoints one segment may hold (its ends at the last of them).
    public static let maxCheckpointsPerSegment = 16

    /// The last clock of the next segment after `sealed`, with commits through `available` waiting: at
    /// most `segmentCommits` of them, ending at the last clock where a checkpoint is due by count
    /// (`lastCheckpoint + k × checkpointEvery`) when one falls in that span, so checkpoints fall exactly
    /// every `checkpointEvery` commits (inside or at the end of segments) and no segment straddles the
    /// next segment's first checkpoint: a read replays at most `checkpointEvery` commits from one segment.
    public func segmentEnd(sealed: UInt64, available: UInt64, lastCheckpoint: UInt64) -> UInt64 {
        guard available > sealed else { return sealed }
        let end = min(available, sealed + UInt64(segmentCommits))
        let due = dueClocks(after: sealed, through: end, lastCheckpoint: lastCheckpoint)
        return (checkpointsInsideSegments ? due.last : due.first) ?? end
    }

    /// The clocks from `sealed + 1` through `end` where a checkpoint is due by count.
    private func dueClocks(after sealed: UInt64, through end: UInt64, lastCheckpoint: UInt64) -> [UInt64] {
        var clock = lastCheckpoint + checkpointEvery
        if clock <= sealed { clock += (sealed - clock) / checkpointEvery * checkpointEvery + checkpointEvery }
        var out: [UInt64] = []
        while clock <= end, out.count < Self.maxCheckpointsPerSegment {
            out.append(clock)
            clock += checkpointEvery
        }
        return out
    }

    /// The clocks of the segment `sealed + 1 … end` (its last commit made at `endAtMs`) that get a
    /// checkpoint, in order: every one due by count, and the end when none is and the last checkpoint (at
    /// `lastCheckpoint`, made at `lastCheckpointAtMs`) is `checkpointIntervalMs` old, or `force`.
    public func checkpointClocks(
        sealed: UInt64, end: UInt64, endAtMs: UInt64, lastCheckpoint: UInt64, lastCheckpointAtMs: UInt64, force: Bool = false
    ) -> [UInt64] {
        let due = dueClocks(after: sealed, through: end, lastCheckpoint: lastCheckpoint)
        if !due.isEmpty { return due }
        return force || checkpointDue(clock: end, atMs: endAtMs, lastCheckpoint: lastCheckpoint, lastCheckpointAtMs: lastCheckpointAtMs)
            ? [end] : []
    }

    /// Whether a segment ending at `clock` (committed at `atMs`) also gets a checkpoint, the last one
    /// being at `lastCheckpoint` (committed at `lastCheckpointAtMs`).
    public func checkpointDue(clock: UInt64, atMs: UInt64, lastCheckpoint: UInt64, lastCheckpointAtMs: UInt64) -> Bool {
        guard clock > lastCheckpoint else { return false }
        if clock - lastCheckpoint >= checkpointEvery { return true }
        return atMs >= lastCheckpointAtMs && atMs - lastCheckpointAtMs >= checkpointIntervalMs
    }
}

/// One entry of a doc's version list (`/api/docs/{id}/versions`, protocol `history`): the state after
/// `clock`, committed at `atMs`, reached by `commits` commits since the previous entry, made by the
/// sessions `by` (sorted, at most `maxAuthors`; `moreAuthors` says there were more).
public struct HistoryVersion: Equatable, Sendable {
    public var clock: UInt64
    public var atMs: UInt64
    public var commits: UInt64
    public var by: [String]
    public var moreAuthors: Bool

    /// Authors listed per version: bounds the entry whatever the number of sessions that wrote.
    public static let maxAuthors = 32

    public init(clock: UInt64, atMs: UInt64, commits: UInt64, by: [String], moreAuthors: Bool = false) {
        self.clock = clock
        self.atMs = atMs
        self.commits = commits
        self.by = by
        self.moreAuthors = moreAuthors
    }

    /// The entry for a checkpoint at the last of `commits`, the previous entry being at `previous`.
    public static func summarizing(_ commits: [CommitNotice], since previous: UInt64, authors: Set<String>) -> HistoryVersion? {
        guard let last = commits.last else { return nil }
        let sorted = authors.sorted()
        return HistoryVersion(
            clock: last.clock, atMs: last.committedAtMs, commits: last.clock - min(previous, last.clock),
            by: Array(sorted.prefix(maxAuthors)), moreAuthors: sorted.count > maxAuthors)
    }

    /// `{"clock":…,"at":…,"commits":…,"by":[…],"moreAuthors":…}` — how it is served (and was stored, as
    /// a sorted-set member, before v4: `member`).
    public var json: [UInt8] {
        var w = JSONWriter(capacity: 96 + by.count * 24)
        w.openObject()
        w.key("clock"); w.integer(clock); w.comma()
        w.key("at"); w.integer(atMs); w.comma()
        w.key("commits"); w.integer(commits); w.comma()
        w.key("by"); w.array(by) { w, sid in w.string(sid) }; w.comma()
        w.key("moreAuthors"); w.bool(moreAuthors)
        w.closeObject()
        return w.bytes
    }

    /// How an entry is stored since blobs v4: the sorted-set member `CLOCK:AT:COMMITS:MORE` (MORE `1` when
    /// there were more authors than listed) — short, so a doc's version set stays a listpack in Redis
    /// rather than a skiplist (about 3 KB less per doc) — and the authors apart (`authorsJSON`, a JSON
    /// array, in the checkpoints hash under `a:CLOCK`).
    public var member: [UInt8] { Array("\(clock):\(atMs):\(commits):\(moreAuthors ? 1 : 0)".utf8) }

    public var authorsJSON: [UInt8] {
        var w = JSONWriter(capacity: 8 + by.count * 24)
        w.array(by) { w, sid in w.string(sid) }
        return w.bytes
    }

    /// An entry as stored: a `member` with its `authorsJSON` (nil or empty: none stored), or the JSON
    /// member of history written before v4 (it holds its authors).
    public init(member: some Collection<UInt8>, authors: [UInt8]?) throws(HistoryError) {
        if member.first == UInt8(ascii: "{") {
            try self.init(json: member)
            return
        }
        let fields = String(decoding: member, as: UTF8.self).split(separator: ":", omittingEmptySubsequences: false)
        guard fields.count == 4, let clock = UInt64(fields[0]), let atMs = UInt64(fields[1]), let commits = UInt64(fields[2])
        else { throw .corrupt("a version entry is malformed") }
        var by: [String] = []
        if let authors, !authors.isEmpty {
            guard let list = (try? JSONParser.parse(authors))?.arrayValue else { throw .corrupt("a version's authors are malformed") }
            by = list.compactMap(\.stringValue)
        }
        self.init(clock: clock, atMs: atMs, commits: commits, by: by, moreAuthors: fields[3] == "1")
    }

    public init(json bytes: some Collection<UInt8>) throws(HistoryError) {
        guard let o = (try? JSONParser.parse(bytes))?.objectValue, let clock = o["clock"]?.uint64Value else {
            throw .corrupt("a version entry is malformed")
        }
        self.init(
            clock: clock, atMs: o["at"]?.uint64Value ?? 0, commits: o["commits"]?.uint64Value ?? 0,
            by: (o["by"]?.arrayValue ?? []).compactMap(\.stringValue), moreAuthors: o["moreAuthors"] == .bool(true))
    }
}

extension HistoryReplay {
    /// The one commit of a restore (`restoreOps` from `current` to `target`) as a group-commit batch,
    /// checked like any push: each record it touches must still be at the version `current` had (or
    /// absent), so a commit in between makes it a conflict rather than overwriting it. Nil when nothing
    /// changes.
    public static func restoreBatch(current: DocReplica, target: [String: JSONValue], sessionID: String, pushID: JSONValue) -> CommitBatch? {
        let ops = restoreOps(from: current.records, to: target)
        guard !ops.isEmpty else { return nil }
        let encoded = ops.json.serialized
        var expectations: [String: PushDecision.Expectation] = [:]
        var writes: [String: CommitBatch.Write] = [:]
        var created = 0
        var removed = 0
        // The checksum's change (issue 13): exact, since every record it touches is pinned to its version.
        var sumDelta = DocChecksum.zero
        for (id, op) in ops.records {
            let existing = current.records[id] != nil
            expectations[id] = existing ? .version(current.version(of: id)) : .absent
            if let old = current.records[id] { sumDelta -= DocChecksum.record(id: id, value: old) }
            if case .put(let value) = op {
                sumDelta += DocChecksum.record(id: id, value: value)
                writes[id] = CommitBatch.Write(value: value.serialized, commitIndex: 0, wasMissing: !existing)
                if !existing { created += 1 }
            } else {
                writes[id] = CommitBatch.Write(value: nil, commitIndex: 0, wasMissing: false)
                removed += 1
            }
        }
        return CommitBatch(
            id: 0, commits: [
                CommitBatch.Commit(sessionID: sessionID, pushID: pushID, ops: ops.json, encodedOps: encoded, sumDelta: sumDelta)
            ],
            expectations: expectations, writes: writes, created: created, removed: removed, bytes: encoded.count)
    }
}
