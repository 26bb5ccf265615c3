import NIOCore
import TandemCore
import TandemRedis

/// Document sync in Redis: runs `SyncScripts` and reads the log. Futures complete on the caller's loop.
final class SyncStore: Sendable {
    let redis: RedisClient
    let nodeID: String
    let retention: Int
    let maxDocRecords: Int
    /// --doc-ttl in ms (0: never); see `SyncScripts` for who refreshes it when.
    let docTTLMs: Int64

    init(redis: RedisClient, nodeID: String, retention: Int, maxDocRecords: Int, docTTLMs: Int64 = 0) {
        self.redis = redis
        self.nodeID = nodeID
        self.retention = retention
        self.maxDocRecords = maxDocRecords
        self.docTTLMs = docTTLMs
    }

    enum CommitOutcome: Equatable {
        case committed(clock: UInt64, atMs: UInt64)
        /// The decision no longer holds: Redis is at `head`.
        case conflict(head: UInt64)
        /// This session already committed this push id, at `clock`.
        case duplicate(clock: UInt64)
        case tooLarge(records: Int)
    }

    func commit(doc: String, sessionID: String, pushID: JSONValue, decision: PushDecision, on loop: EventLoop)
        -> EventLoopFuture<CommitOutcome>
    {
        var args: [any RedisArgument] = [
            nodeID, sessionID, pushID.serialized, decision.applied.json.serialized, retention, maxDocRecords,
            RedisKeys.channel(doc), decision.created, decision.removed, decision.expectations.count,
        ]
        for (id, expectation) in decision.expectations {
            args.append(id)
            switch expectation {
            case .version(let version):
                args.append("v")
                args.append(String(version))
            case .exists:
                args.append("e")
                args.append("")
            case .absent:
                args.append("a")
                args.append("")
            }
        }
        args.append(decision.writes.count)
        for (id, record) in decision.writes {
            args.append(id)
            if let record {
                args.append("p")
                args.append(record)
            } else {
                args.append("r")
                args.append("")
            }
        }
        args.append(docTTLMs)  // always last (see SyncScripts.commit)
        return redis.evalScript(SyncScripts.commit, keys: SyncScripts.keys(doc), args: args, on: loop).flatMapThrowing {
            reply in
            guard let parts = reply.array, let kind = parts.first?.string, parts.count >= 2,
                let number = parts[1].string.flatMap(UInt64.init)
            else { throw SyncStoreError.unexpectedReply("\(reply)") }
            switch kind {
            case "ok":
                return .committed(clock: number, atMs: parts.count > 2 ? parts[2].string.flatMap(UInt64.init) ?? 0 : 0)
            case "conflict": return .conflict(head: number)
            case "duplicate": return .duplicate(clock: number)
            case "too_large": return .tooLarge(records: Int(clamping: number))
            default: throw SyncStoreError.unexpectedReply("\(reply)")
            }
        }
    }

    /// What a pusher is told when its commit failed in Redis (`unavailable`: retry it).
    static func commitFailureMessage(_ error: any Error) -> String {
        // With maxmemory-policy noeviction a full Redis refuses the commit script's first write, before it
        // changed anything (Redis checks OOM only until a script's first write), so nothing was applied.
        if case RedisError.server(let message) = error, message.hasPrefix("OOM") {
            return "Redis is out of memory (its maxmemory); the push was not applied, retry it later"
        }
        return "Redis is unreachable; the push was not acknowledged, retry it"
    }

    /// A consistent copy of the doc: replica at head plus the oldest clock the log retains (either kind
    /// of log entry, see `GroupCommitScript`).
    func load(doc: String, on loop: EventLoop) -> EventLoopFuture<(DocReplica, retainedFrom: UInt64)> {
        loadDoc(doc: doc, on: loop)
    }

    static func replica(fromLoadReply reply: RedisValue) throws -> (DocReplica, retainedFrom: UInt64) {
        // A head clock no client could have been sent (above 2^53 − 1) means the key was corrupted (by
        // hand or by an attacker with Redis access): refuse to load the doc rather than do arithmetic on
        // it. The doc stays unloaded; pushes get `unavailable` and the node keeps running.
        guard let parts = reply.array, parts.count == 5, let head = parts[0].string.flatMap(UInt64.init),
            head <= ClientMessage.maxClock
        else {
            throw SyncStoreError.unexpectedReply("load: head clock \(Self.parts0(reply)) is not a clock")
        }
        var records: [String: JSONValue] = [:]
        for (id, json) in Self.pairs(parts[1]) {
            guard let value = try? JSONParser.parse(json, maxDepth: 128) else { continue }
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
        let first = parts[4].string.flatMap(UInt64.init) ?? head + 1  // head <= maxClock: no overflow
        return (DocReplica(head: head, records: records, versions: versions, tombstones: tombstones), first)
    }

    /// Commits from `from` (inclusive), at most `count` (either kind of log entry).
    func log(doc: String, from: UInt64, count: Int, on loop: EventLoop) -> EventLoopFuture<[CommitNotice]> {
        readLog(doc: doc, from: from, count: count, on: loop)
    }

    func head(doc: String, on loop: EventLoop) -> EventLoopFuture<UInt64> {
        redis.send(RedisCommand("GET", SyncScripts.keys(doc)[0]), on: loop).map { $0.string.flatMap(UInt64.init) ?? 0 }
    }

    /// The head clock, read by a node that holds the doc open: also refreshes the doc's TTL when due, so
    /// its keys never expire under the node's replica (`head` is the plain read, e.g. for the ops API).
    func headKeepingAlive(doc: String, on loop: EventLoop) -> EventLoopFuture<UInt64> {
        redis.evalScript(SyncScripts.head, keys: SyncScripts.keys(doc), args: [docTTLMs], on: loop)
            .map { $0.string.flatMap(UInt64.init) ?? 0 }
    }

    /// Record and tombstone counts straight from Redis (ops API for docs without local members).
    func counts(doc: String, on loop: EventLoop) -> EventLoopFuture<(head: UInt64, records: Int, tombstones: Int)> {
        let keys = SyncScripts.keys(doc)
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

    /// `[id, [field, value, …]]` of a stream entry written by the commit script.
    static func notice(fromStreamEntry entry: RedisValue) -> CommitNotice? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let clock = id.split(separator: "-").first.flatMap({ UInt64($0) })
        else { return nil }
        var fields: [String: [UInt8]] = [:]
        for (key, value) in pairs(parts[1]) { fields[String(decoding: key, as: UTF8.self)] = value }
        guard let opsBytes = fields["ops"], let ops = try? JSONParser.parse(opsBytes, maxDepth: 128),
            let by = fields["by"], let node = fields["node"]
        else { return nil }
        return CommitNotice(
            clock: clock, ops: ops, by: String(decoding: by, as: UTF8.self), node: String(decoding: node, as: UTF8.self),
            pushID: fields["id"].flatMap { try? JSONParser.parse($0) },
            committedAtMs: fields["at"].flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0)
    }
}

enum SyncStoreError: Error {
    case unexpectedReply(String)
}
