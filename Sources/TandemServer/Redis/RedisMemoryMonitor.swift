import Logging
import NIOConcurrencyHelpers
import NIOCore
import TandemRedis

/// Samples Redis's memory and key counts (`INFO memory`, `INFO keyspace`) into gauges every few seconds,
/// so operators see Redis approach its `maxmemory` before writes are refused. Warns once when the Redis
/// evicts keys under memory pressure (any `maxmemory-policy` but `noeviction`): eviction would silently
/// drop sync keys, i.e. acknowledged edits, where a refused write is only a retryable `unavailable`.
///
/// Also Redis's own work (`INFO stats`, `INFO cpu`): commands processed (those scripts run included) and
/// CPU seconds, as counters, so Redis commands and Redis CPU per commit can be read beside the commit
/// counters (issue 8's cost targets) without access to Redis.
///
/// In a Redis Cluster every primary is read: keys, commands and CPU add up over the primaries, while
/// memory is the fullest primary's (a doc's writes are refused when its own shard is full, however
/// empty the others are).
final class RedisMemoryMonitor: Sendable {
    static let intervalNanos: UInt64 = 5_000_000_000

    private let redis: any RedisCommandClient
    private let metrics: TandemMetrics
    private let logger: Logger
    private let database: Int
    /// `work`: each node's cumulative totals (by `host:port`; a primary that is new, e.g. promoted by a
    /// failover, starts its own baseline).
    private let state = NIOLockedValueBox(
        (nextNanos: UInt64(0), inFlight: false, warnedPolicy: false, work: [String: RedisWorkCounters]()))

    init(redis: any RedisCommandClient, database: Int, metrics: TandemMetrics, logger: Logger) {
        self.redis = redis
        self.metrics = metrics
        self.logger = logger
        self.database = database
    }

    /// One primary's INFO sections.
    struct NodeInfo {
        var memory: [String: String]
        var keyspace: [String: String]
        var stats: [String: String]
        var cpu: [String: String]
    }

    /// Called every second by the node's housekeeping; reads Redis at most every `intervalNanos`.
    func sample(nowNanos: UInt64, on loop: EventLoop) {
        let due = state.withLockedValue { state -> Bool in
            guard !state.inFlight, nowNanos >= state.nextNanos, redis.isConnected else { return false }
            state.inFlight = true
            state.nextNanos = nowNanos + Self.intervalNanos
            return true
        }
        guard due else { return }
        let sections = ["memory", "keyspace", "stats", "cpu"].map { RedisCommand("INFO", $0) }
        // The completion runs on the Redis command thread, which reads every commit's reply: it only hands
        // the replies over. Parsing four INFO sections (~2.6 M instructions, ~1 ms natively, callgrind,
        // issue 8) there held back every doc's commit reply behind it once every five seconds.
        redis.sendToEachPrimary(sections) { replies in
            loop.execute { self.record(replies: replies) }
        }
    }

    /// INFO's replies, parsed and recorded (on an event loop, never the Redis thread).
    private func record(replies: [(node: String, results: [Result<RedisValue, RedisError>])]) {
        var infos: [String: NodeInfo] = [:]
        for (node, results) in replies {
            let texts = results.map { (try? $0.get())?.string }
            guard texts.count == 4, let memory = texts[0].map(Self.fields), let keyspace = texts[1].map(Self.fields) else { continue }
            infos[node] = NodeInfo(
                memory: memory, keyspace: keyspace, stats: texts[2].map(Self.fields) ?? [:], cpu: texts[3].map(Self.fields) ?? [:])
        }
        state.withLockedValue { $0.inFlight = false }
        guard !infos.isEmpty else { return }
        record(infos)
    }

    private func record(_ infos: [String: NodeInfo]) {
        // Memory: the primary closest to its maxmemory (or, without limits, the one using most).
        func fullness(_ info: NodeInfo) -> Double {
            let used = info.memory["used_memory"].flatMap(Double.init) ?? 0
            let max = info.memory["maxmemory"].flatMap(Double.init) ?? 0
            return max > 0 ? used / max : used / 1e18
        }
        if let fullest = infos.values.max(by: { fullness($0) < fullness($1) }) {
            record(memory: fullest.memory)
        }
        var (keys, withoutTTL) = (0, 0)
        for info in infos.values {
            let (nodeKeys, expiring) = Self.keyCounts(info.keyspace["db\(database)"])
            keys += nodeKeys
            withoutTTL += nodeKeys - min(nodeKeys, expiring)
        }
        metrics.redisKeys.set(to: Double(keys))
        metrics.redisKeysWithoutTTL.set(to: Double(withoutTTL))
        let added = state.withLockedValue { state -> (commands: UInt64, cpuSeconds: Double) in
            var added: (commands: UInt64, cpuSeconds: Double) = (0, 0)
            state.work = state.work.filter { infos[$0.key] != nil }
            for (node, info) in infos {
                let commands = info.stats["total_commands_processed"].flatMap(UInt64.init)
                let step = state.work[node, default: RedisWorkCounters()].advance(commands: commands, cpuSeconds: Self.cpuSeconds(info.cpu))
                added.commands += step.commands
                added.cpuSeconds += step.cpuSeconds
            }
            return added
        }
        if added.commands > 0 { metrics.redisCommandsProcessed.increment(by: Int64(clamping: added.commands)) }
        if added.cpuSeconds > 0 { metrics.redisCPUSeconds.increment(by: added.cpuSeconds) }
    }

    /// `used_cpu_sys` + `used_cpu_user` of INFO cpu (nil when Redis does not say).
    static func cpuSeconds(_ cpu: [String: String]) -> Double? {
        guard let system = cpu["used_cpu_sys"].flatMap(Double.init), let user = cpu["used_cpu_user"].flatMap(Double.init) else {
            return nil
        }
        return system + user
    }

    private func record(memory: [String: String]) {
        if let used = memory["used_memory"].flatMap(Double.init) { metrics.redisMemoryUsedBytes.set(to: used) }
        if let max = memory["maxmemory"].flatMap(Double.init) { metrics.redisMemoryMaxBytes.set(to: max) }
        if let policy = memory["maxmemory_policy"], policy != "noeviction" {
            let first = state.withLockedValue { state -> Bool in
                defer { state.warnedPolicy = true }
                return !state.warnedPolicy
            }
            if first {
                logger.warning(
                    "Redis maxmemory-policy is \(policy): at its maxmemory Redis evicts keys, which silently loses synced edits; set maxmemory-policy noeviction (then full Redis means pushes get unavailable instead)")
            }
        }
    }

    /// `key:value` lines of an INFO section (comments and blank lines skipped).
    static func fields(_ info: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in info.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return fields
    }

    /// `keys=N,expires=M,avg_ttl=…` of one database line of INFO keyspace; (0, 0) for an empty database.
    static func keyCounts(_ line: String?) -> (keys: Int, expiring: Int) {
        var values: [Substring: Int] = [:]
        for part in (line ?? "").split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            if pair.count == 2, let value = Int(pair[1]) { values[pair[0]] = max(0, value) }
        }
        return (values["keys"] ?? 0, values["expires"] ?? 0)
    }
}

/// Turns Redis's cumulative totals into counter increments. The first reading is only a baseline (the
/// counters count from when the node started sampling), and a total that went down (Redis restarted,
/// `CONFIG RESETSTAT`) starts a new baseline rather than a negative or huge increment.
struct RedisWorkCounters: Sendable, Equatable {
    var commands: UInt64?
    var cpuSeconds: Double?

    mutating func advance(commands newCommands: UInt64?, cpuSeconds newCPU: Double?) -> (commands: UInt64, cpuSeconds: Double) {
        var added: (commands: UInt64, cpuSeconds: Double) = (0, 0)
        if let newCommands {
            if let old = commands, newCommands >= old { added.commands = newCommands - old }
            commands = newCommands
        }
        if let newCPU {
            if let old = cpuSeconds, newCPU >= old { added.cpuSeconds = newCPU - old }
            cpuSeconds = newCPU
        }
        return added
    }
}
