import NIOCore
import TandemCore
import TandemRedis

/// Document sync in Redis: group commits, the doc's state and its log (scripts and key layout:
/// `GroupCommitScript`, `SyncReadScripts`). Futures complete on the caller's loop.
final class SyncStore: Sendable {
    /// JSON read back from Redis (record values, ops, batches) may nest this deep: twice what a client's
    /// message may (`ProtocolLimits.maxJSONDepth`, 64, not an option), which leaves room for the wrapping
    /// a batch adds around accepted ops, while a corrupted key still cannot blow the stack.
    static let maxStoredJSONDepth = 128

    let redis: any RedisCommandClient
    let nodeID: String
    let retention: Int
    let maxDocRecords: Int
    /// --doc-ttl in ms (0: never); see `GroupCommitScript` for who refreshes it when.
    let docTTLMs: Int64
    /// --sync-log-mode: `.perCommit` while nodes from before group commit still serve docs.
    let logMode: GroupCommitScript.LogMode
    /// --redis-wait-replicas (nil: 0, commits are answered once the primary has them).
    let replicaAcknowledgement: ReplicaAcknowledgement?

    init(
        redis: any RedisCommandClient, nodeID: String, retention: Int, maxDocRecords: Int, docTTLMs: Int64 = 0,
        logMode: GroupCommitScript.LogMode = .batch, replicaAcknowledgement: ReplicaAcknowledgement? = nil
    ) {
        self.redis = redis
        self.nodeID = nodeID
        self.retention = retention
        self.maxDocRecords = maxDocRecords
        self.docTTLMs = docTTLMs
        self.logMode = logMode
        self.replicaAcknowledgement = replicaAcknowledgement
    }

    /// What a pusher is told when its commit failed in Redis (`unavailable`: retry it).
    static func commitFailureMessage(_ error: any Error) -> String {
        // With maxmemory-policy noeviction a full Redis refuses the commit script's first write, before it
        // changed anything (Redis checks OOM only until a script's first write), so nothing was applied.
        if case RedisError.server(let message) = error, message.hasPrefix("OOM") {
            return "Redis is out of memory (its maxmemory); the push was not applied, retry it later"
        }
        if case SyncStoreError.notReplicated(let acknowledged, let wanted, let timeoutMs) = error {
            return "the commit reached Redis but only \(acknowledged) of \(wanted) replicas acknowledged it within \(timeoutMs) ms"
                + " (--redis-wait-replicas); retry the push (it is not applied twice)"
        }
        return "Redis is unreachable; the push was not acknowledged, retry it"
    }

    /// A doc as read from Redis.
    struct LoadedDoc: Sendable {
        var replica: DocReplica
        /// The oldest clock the log retains.
        var retainedFrom: UInt64
        /// The doc holds re-push records of nodes from before group commit (commits must check them).
        var legacyRePushes: Bool
        /// The checksum Redis stores, when it describes `replica.head` (nil: none, or a stale one).
        var storedSum: DocChecksum? = nil
    }

    /// A consistent copy of the doc. Keeps the doc's keys alive (the caller holds the doc open).
    func load(doc: String, on loop: EventLoop) -> EventLoopFuture<LoadedDoc> {
        redis.evalScript(SyncReadScripts.load, keys: GroupCommitScript.keys(doc), args: [docTTLMs], on: loop).flatMapThrowing {
            [retention] reply in try Self.doc(fromLoadReply: reply, retention: retention)
        }
    }

    static func doc(fromLoadReply reply: RedisValue, retention: Int = .max) throws -> LoadedDoc {
        // A head clock no client could have been sent (above 2^53 − 1) means the key was corrupted (by
        // hand or by an attacker with Redis access): refuse to load the doc rather than do arithmetic on
        // it. The doc stays unloaded; pushes get `unavailable` and the node keeps running.
        guard let parts = reply.array, parts.count >= 5, let head = parts[0].string.flatMap(UInt64.init),
            head <= ClientMessage.maxClock
        else {
            throw SyncStoreError.unexpectedReply("load: head clock \(Self.parts0(reply)) is not a clock")
        }
        var records: [String: JSONValue] = [:]
        for (id, json) in Self.pairs(parts[1]) {
            guard let value = try? JSONParser.parse(json, maxDepth: SyncStore.maxStoredJSONDepth) else { continue }
            records[String(decoding: id, as: UTF8.self)] = value
        }
        var versions: [String: UInt64] = [:]
        for (id, clock) in Self.pairs(parts[2]) {
            versions[String(decoding: id, as: UTF8.self)] = UInt64(String(decoding: clock, as: UTF8.self)) ?? 0
        }
        var tombstones: [String: UInt64] = [:]
        for (id, clock) in Self.pairs(parts[3]) {
            tombstones[String(decoding: id, as: UTF8.self)] = UInt64(String(decoding: clock, as: UTF8.self)) ?? 0
        }
        var first = parts[4].string.flatMap(UInt64.init) ?? head + 1  // head <= maxClock: no overflow
        // The log may hold more than --log-retention commits while the history sealer catches up (its
        // trim waits for it, docs/history.md); catch-ups serve the retention, as on a node that followed.
        if head > UInt64(retention) { first = max(first, head - UInt64(retention) + 1) }
        return LoadedDoc(
            replica: DocReplica(head: head, records: records, versions: versions, tombstones: tombstones), retainedFrom: first,
            legacyRePushes: parts.count < 6 || parts[5].int != 0,
            storedSum: parts.count > 6 ? parts[6].string.flatMap { Self.storedSum($0, at: head) } : nil)
    }

    /// A stored checksum `CLOCK:HEX` if it describes `head`.
    static func storedSum(_ text: String, at head: UInt64) -> DocChecksum? {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, UInt64(parts[0]) == head else { return nil }
        return DocChecksum(hex: parts[1])
    }

    /// Redis's head and the checksum it stores for it (nil: none, or stale) — the periodic comparison.
    func storedSum(doc: String, on loop: EventLoop) -> EventLoopFuture<(head: UInt64, sum: DocChecksum?)> {
        redis.evalScript(SyncReadScripts.sum, keys: GroupCommitScript.keys(doc), args: [], on: loop).flatMapThrowing { reply in
            guard let parts = reply.array, parts.count == 2, let head = parts[0].string.flatMap(UInt64.init) else {
                throw SyncStoreError.unexpectedReply("sum: \(reply)")
            }
            return (head, parts[1].string.flatMap { Self.storedSum($0, at: head) })
        }
    }

    /// Stores `sum` as the checksum of `head` (see `SyncReadScripts.seedSum`). True when stored.
    func seedSum(doc: String, head: UInt64, sum: DocChecksum, replace: Bool, on loop: EventLoop) -> EventLoopFuture<Bool> {
        redis.evalScript(
            SyncReadScripts.seedSum, keys: GroupCommitScript.keys(doc), args: [String(head), sum.hex, replace ? "1" : "0"], on: loop
        ).map { $0.int == 1 }
    }

    /// What one log read returned.
    struct LogRead: Sendable {
        /// Commits in clock order, from the one asked for (unless trimmed away), at most the count asked.
        var entries: [CommitNotice]
        /// The read stopped at its byte budget with fewer commits than asked: read on after the last.
        var truncated: Bool
    }

    /// Commits from `from` (inclusive): at most `count`, and no more than about `maxBytes` of them (at
    /// least one, whatever its size) — see `SyncReadScripts.readLog`. Both kinds of log entry.
    func log(doc: String, from: UInt64, count: Int, maxBytes: Int = ServerMessage.maxChunkBytes, on loop: EventLoop)
        -> EventLoopFuture<LogRead>
    {
        let count = max(count, 1)
        return redis.evalScript(
            SyncReadScripts.readLog, keys: [GroupCommitScript.keys(doc)[4]], args: [String(from), count, max(maxBytes, 1)],
            on: loop
        ).map { reply in
            let parts = reply.array ?? []
            var notices: [CommitNotice] = []
            for entry in parts.count == 2 ? parts[1].array ?? [] : [] {
                for notice in Self.notices(fromStreamEntry: entry) where notice.clock >= from {
                    guard notices.count < count else { break }
                    notices.append(notice)
                }
            }
            let truncated = (parts.first?.int ?? 0) == 1 && notices.count < count
            return LogRead(entries: notices, truncated: truncated)
        }
    }

    func head(doc: String, on loop: EventLoop) -> EventLoopFuture<UInt64> {
        redis.send(RedisCommand("GET", GroupCommitScript.keys(doc)[0]), on: loop).map { $0.string.flatMap(UInt64.init) ?? 0 }
    }

    /// The head clock, read by a node that holds the doc open: also keeps the doc's keys alive, so they
    /// never expire under the node's replica (`head` is the plain read, e.g. for the ops API).
    func headKeepingAlive(doc: String, on loop: EventLoop) -> EventLoopFuture<UInt64> {
        redis.evalScript(SyncReadScripts.head, keys: GroupCommitScript.keys(doc), args: [docTTLMs], on: loop)
            .map { $0.string.flatMap(UInt64.init) ?? 0 }
    }

    /// Record and tombstone counts straight from Redis (ops API for docs without local members).
    func counts(doc: String, on loop: EventLoop) -> EventLoopFuture<(head: UInt64, records: Int, tombstones: Int)> {
        let keys = GroupCommitScript.keys(doc)
        return redis.send(
            [RedisCommand("GET", keys[0]), RedisCommand("HLEN", keys[1]), RedisCommand("ZCARD", keys[3])], on: loop
        ).map { replies in
            (replies[0].string.flatMap(UInt64.init) ?? 0, Int(replies[1].int ?? 0), Int(replies[2].int ?? 0))
        }
    }

    /// The first element of a reply, for error messages (at most 32 characters of it).
    private static func parts0(_ reply: RedisValue) -> String {
        String((reply.array?.first?.string ?? "?").prefix(32))
    }

    private static func pairs(_ value: RedisValue) -> [([UInt8], [UInt8])] {
        let items = value.array ?? []
        return stride(from: 0, to: items.count - 1, by: 2).compactMap { i in
            guard let a = items[i].bytes, let b = items[i + 1].bytes else { return nil }
            return (a, b)
        }
    }

    /// `[id, [field, value, …]]` of a classic single-commit stream entry (batches of one, the per-commit
    /// log mode, and nodes from before group commit).
    static func notice(fromStreamEntry entry: RedisValue) -> CommitNotice? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let clock = id.split(separator: "-").first.flatMap({ UInt64($0) })
        else { return nil }
        var fields: [String: [UInt8]] = [:]
        for (key, value) in pairs(parts[1]) { fields[String(decoding: key, as: UTF8.self)] = value }
        guard let opsBytes = fields["ops"], let ops = try? JSONParser.parse(opsBytes, maxDepth: SyncStore.maxStoredJSONDepth),
            let by = fields["by"], let node = fields["node"]
        else { return nil }
        return CommitNotice(
            clock: clock, ops: ops, by: String(decoding: by, as: UTF8.self), node: String(decoding: node, as: UTF8.self),
            pushID: fields["id"].flatMap { try? JSONParser.parse($0) },
            committedAtMs: fields["at"].flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0,
            sum: fields["sum"].flatMap { DocChecksum(hex: String(decoding: $0, as: UTF8.self)) })
    }
}

enum SyncStoreError: Error {
    case unexpectedReply(String)
    /// `--redis-wait-replicas`: the commit is in the primary, but fewer replicas acknowledged it in time.
    case notReplicated(acknowledged: Int, wanted: Int, timeoutMs: Int)
}
