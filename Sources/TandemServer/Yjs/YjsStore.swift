import NIOCore
import TandemCore
import TandemRedis

/// A Yjs room in Redis: a merged snapshot plus the log of updates appended since, one order per room.
///
/// Keys (all hash-tagged by the room, so one script touches them together in a cluster too; `yjs:` keeps
/// them apart from the protocol-v1 doc of the same id, a different document):
///
/// - `tandem:yjs:{room}:meta` hash: `seq` (updates ever appended), `base` (the last seq folded into the
///   snapshot), `bytes` (snapshot + log bytes, for `--yjs-max-room-bytes`);
/// - `tandem:yjs:{room}:snap` the snapshot (a v1 update: everything up to `base`, merged);
/// - `tandem:yjs:{room}:log` list of updates `base+1 … seq`;
/// - channel `tandem:yjs:{room}`: each appended update as `SEQ WALLMS UPDATE` (decimal, space, bytes).
///
/// Every write renews the keys' expiry (`--doc-ttl`, 0: none), as live rooms do through `head`.
enum YjsKeys {
    static func meta(_ room: String) -> String { "tandem:yjs:{\(room)}:meta" }
    static func snapshot(_ room: String) -> String { "tandem:yjs:{\(room)}:snap" }
    static func log(_ room: String) -> String { "tandem:yjs:{\(room)}:log" }
    static func channel(_ room: String) -> String { "tandem:yjs:{\(room)}" }

    /// The room of a Yjs channel name, if it is one.
    static func room(fromChannel channel: String) -> String? {
        guard channel.hasPrefix("tandem:yjs:{"), channel.hasSuffix("}") else { return nil }
        return String(channel.dropFirst("tandem:yjs:{".count).dropLast())
    }

    static func all(_ room: String) -> [any RedisArgument] { [meta(room), snapshot(room), log(room)] }
}

/// The scripts of `YjsStore`. KEYS are always meta, snap, log.
enum YjsScripts {
    /// ARGV: update, max room bytes, channel, publish command, ttl ms.
    /// Returns {seq, log length} or {-1, room bytes} when the update would pass the room limit.
    static let append = RedisScript(
        """
        local len = #ARGV[1]
        local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
        if bytes + len > tonumber(ARGV[2]) then return {-1, bytes} end
        local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
        redis.call('HINCRBY', KEYS[1], 'bytes', len)
        local n = redis.call('RPUSH', KEYS[3], ARGV[1])
        local t = redis.call('TIME')
        local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call(ARGV[4], ARGV[3], seq .. ' ' .. ms .. ' ' .. ARGV[1])
        local ttl = tonumber(ARGV[5])
        if ttl > 0 then
          for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
        end
        return {seq, n}
        """)

    /// Returns {seq, base, snapshot ('' for none: a nil would end the Lua array), entries...}.
    static let load = RedisScript(
        """
        local m = redis.call('HMGET', KEYS[1], 'seq', 'base')
        local out = {tonumber(m[1] or '0'), tonumber(m[2] or '0'), redis.call('GET', KEYS[2]) or ''}
        for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do out[#out + 1] = e end
        return out
        """)

    /// ARGV: expected base, new base, snapshot, ttl ms. Replaces the snapshot and drops the log entries it
    /// folds in, only if the base is still the one the caller merged on (else another node compacted first:
    /// nothing is written). Returns {1, base} or {0, current base}.
    static let compact = RedisScript(
        """
        local base = tonumber(redis.call('HGET', KEYS[1], 'base') or '0')
        local upto = tonumber(ARGV[2])
        if base ~= tonumber(ARGV[1]) or upto <= base then return {0, base} end
        local n = upto - base
        local entries = redis.call('LRANGE', KEYS[3], 0, n - 1)
        if #entries ~= n then return {0, base} end
        local freed = redis.call('STRLEN', KEYS[2])
        for _, e in ipairs(entries) do freed = freed + #e end
        redis.call('SET', KEYS[2], ARGV[3])
        redis.call('LTRIM', KEYS[3], n, -1)
        redis.call('HSET', KEYS[1], 'base', upto)
        redis.call('HINCRBY', KEYS[1], 'bytes', #ARGV[3] - freed)
        local ttl = tonumber(ARGV[4])
        if ttl > 0 then
          for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
        end
        return {1, upto}
        """)

    /// ARGV: ttl ms. The room's seq; renews the expiry of a room that exists.
    static let head = RedisScript(
        """
        local seq = redis.call('HGET', KEYS[1], 'seq')
        local ttl = tonumber(ARGV[1])
        if seq and ttl > 0 then
          for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
        end
        return tonumber(seq or '0')
        """)
}

/// Runs `YjsScripts`; futures complete on the loop the caller names (the room's).
final class YjsStore: Sendable {
    enum AppendResult: Sendable {
        case appended(seq: Int64, logLength: Int)
        /// The room would pass `--yjs-max-room-bytes`.
        case roomFull(bytes: Int)
    }

    private let redis: any RedisCommandClient
    private let maxRoomBytes: Int
    private let ttlMs: Int64

    init(redis: any RedisCommandClient, maxRoomBytes: Int, ttlMs: Int64) {
        self.redis = redis
        self.maxRoomBytes = maxRoomBytes
        self.ttlMs = ttlMs
    }

    func append(room: String, update: [UInt8], on loop: EventLoop) -> EventLoopFuture<AppendResult> {
        redis.evalScript(
            YjsScripts.append, keys: YjsKeys.all(room),
            args: [update, maxRoomBytes, YjsKeys.channel(room), redis.publishCommandName, ttlMs], on: loop
        ).flatMapThrowing { reply in
            guard let parts = reply.array, parts.count == 2, let first = parts[0].int, let second = parts[1].int else {
                throw YjsStoreError.unexpectedReply
            }
            return first < 0 ? .roomFull(bytes: Int(second)) : .appended(seq: first, logLength: Int(second))
        }
    }

    func load(room: String, on loop: EventLoop) -> EventLoopFuture<YjsLoadedRoom> {
        redis.evalScript(YjsScripts.load, keys: YjsKeys.all(room), args: [], on: loop).flatMapThrowing { reply in
            guard let parts = reply.array, parts.count >= 3, let seq = parts[0].int, let base = parts[1].int else {
                throw YjsStoreError.unexpectedReply
            }
            let entries = try parts.dropFirst(3).map { value in
                guard let bytes = value.bytes else { throw YjsStoreError.unexpectedReply }
                return bytes
            }
            guard seq - base == Int64(entries.count) else { throw YjsStoreError.unexpectedReply }
            return YjsLoadedRoom(seq: seq, base: base, snapshot: parts[2].bytes.flatMap { $0.isEmpty ? nil : $0 }, entries: entries)
        }
    }

    /// Replaces the snapshot with `snapshot` (everything up to `upto`) if the room's base is still `base`.
    /// Returns whether it did, and the room's base after.
    func compact(room: String, base: Int64, upto: Int64, snapshot: [UInt8], on loop: EventLoop)
        -> EventLoopFuture<(compacted: Bool, base: Int64)>
    {
        redis.evalScript(YjsScripts.compact, keys: YjsKeys.all(room), args: [base, upto, snapshot, ttlMs], on: loop)
            .flatMapThrowing { reply in
                guard let parts = reply.array, parts.count == 2, let done = parts[0].int, let base = parts[1].int else {
                    throw YjsStoreError.unexpectedReply
                }
                return (done == 1, base)
            }
    }

    /// The room's seq in Redis (0 for a room never written); keeps a live room's keys from expiring.
    func head(room: String, on loop: EventLoop) -> EventLoopFuture<Int64> {
        redis.evalScript(YjsScripts.head, keys: YjsKeys.all(room), args: [ttlMs], on: loop).flatMapThrowing { reply in
            guard let seq = reply.int else { throw YjsStoreError.unexpectedReply }
            return seq
        }
    }
}

enum YjsStoreError: Error {
    case unexpectedReply
}

/// The `/yjs/{room}` path (y-websocket connects to `serverUrl + '/' + room`).
enum YjsPath {
    static let prefix = "/yjs/"

    /// The room of a `/yjs/{room}` path, if the room is a valid doc id (not percent-decoded: doc ids
    /// need no escaping).
    static func room(inPath path: some StringProtocol) -> String? {
        guard path.hasPrefix(prefix) else { return nil }
        let room = String(path.dropFirst(prefix.count))
        return DocID.isValid(room) ? room : nil
    }
}
