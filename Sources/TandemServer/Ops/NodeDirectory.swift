import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
import TandemRedis

/// Every node heartbeats a summary of itself into Redis once a second (with a deadline), and reads
/// everyone's back, so `/api/status` on any node lists all nodes sharing the Redis — also the ones that
/// stopped answering in the last minute, marked as down.
final class NodeDirectory: Sendable {
    /// What a node says about itself.
    struct Entry: Codable, Sendable {
        var node: String
        var wsPort: Int
        var opsPort: Int
        var connections: Int
        var docs: Int
        var presenceSessions: Int
        var redisUp: Bool
        /// Redis commands and pub/sub both up (what /readyz says).
        var ready: Bool?
        var storm: Bool?
        var reconnectsPerSecond: Double?
        var startedAt: Date
        var state: String
        /// Filled in when read back: whether the heartbeat is within its deadline, and its age.
        var alive: Bool?
        var lastSeenSecondsAgo: Double?
    }

    /// KEYS: live zset, status hash. ARGV: node, ttlMs, entry JSON, remove(0|1), keptStoppedMs.
    /// Returns {nowMs, [node, deadline, …], [node, json, …]}.
    private static let heartbeat = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        if ARGV[4] == '1' then
          redis.call('ZADD', KEYS[1], now, ARGV[1])
        else
          redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
        local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
        if #old > 0 then
          redis.call('ZREM', KEYS[1], unpack(old))
          redis.call('HDEL', KEYS[2], unpack(old))
        end
        -- Issue 7: once every node has stopped, nothing prunes these; let them go with the last entry.
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[5]))
        redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[5]))
        return {tostring(now), redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2])}
        """)

    static let liveKey = "tandem:{nodes}:live"
    static let statusKey = "tandem:{nodes}:status"
    static let ttlMs = 5_000
    /// Entries of nodes gone (stopped or silent) this long are pruned: the status page shows a node that
    /// just stopped or died for a minute, then forgets it.
    static let keptStoppedMs = 60_000

    private let redis: any RedisCommandClient
    private let known = NIOLockedValueBox<[Entry]>([])

    init(redis: any RedisCommandClient) { self.redis = redis }

    /// Writes this node's entry and refreshes the list of all nodes.
    func beat(_ entry: Entry, stopping: Bool = false, on loop: EventLoop) -> EventLoopFuture<Void> {
        guard redis.isConnected else { return loop.makeSucceededVoidFuture() }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let json = (try? encoder.encode(entry)).map { Array($0) } ?? []
        return redis.evalScript(
            Self.heartbeat, keys: [Self.liveKey, Self.statusKey], args: [entry.node, Self.ttlMs, json, stopping ? "1" : "0", Self.keptStoppedMs],
            on: loop
        ).map { reply in
            guard let parts = reply.array, parts.count == 3, let now = parts[0].string.flatMap(Double.init) else { return }
            var deadlines: [String: Double] = [:]
            let live = parts[1].array ?? []
            for i in stride(from: 0, to: live.count - 1, by: 2) {
                if let node = live[i].string, let deadline = live[i + 1].string.flatMap(Double.init) { deadlines[node] = deadline }
            }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let statuses = parts[2].array ?? []
            var entries: [Entry] = []
            for i in stride(from: 0, to: statuses.count - 1, by: 2) {
                guard let bytes = statuses[i + 1].bytes, var entry = try? decoder.decode(Entry.self, from: Data(bytes)),
                    let deadline = deadlines[entry.node]
                else { continue }
                entry.alive = deadline > now
                entry.lastSeenSecondsAgo = max(0, (now - (deadline - Double(Self.ttlMs))) / 1000)
                entries.append(entry)
            }
            self.known.withLockedValue { $0 = entries.sorted { $0.node < $1.node } }
        }
    }

    /// The nodes as of the last heartbeat.
    var nodes: [Entry] { known.withLockedValue { $0 } }
}
