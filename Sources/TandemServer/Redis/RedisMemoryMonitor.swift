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
final class RedisMemoryMonitor: Sendable {
    static let intervalNanos: UInt64 = 5_000_000_000

    private let redis: RedisClient
    private let metrics: TandemMetrics
    private let logger: Logger
    private let database: Int
    private let state = NIOLockedValueBox(
        (nextNanos: UInt64(0), inFlight: false, warnedPolicy: false, work: RedisWorkCounters()))

    init(redis: RedisClient, metrics: TandemMetrics, logger: Logger) {
        self.redis = redis
        self.metrics = metrics
        self.logger = logger
        self.database = redis.configuration.endpoint.database
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
        redis.send(sections, on: loop).whenComplete { result in
            self.state.withLockedValue { $0.inFlight = false }
            guard case .success(let replies) = result, replies.count == 4,
                let memory = replies[0].string.map(Self.fields), let keyspace = replies[1].string.map(Self.fields)
            else { return }
            self.record(memory: memory, keyspace: keyspace)
            let stats = replies[2].string.map(Self.fields) ?? [:]
            let cpu = replies[3].string.map(Self.fields) ?? [:]
            let commands = stats["total_commands_processed"].flatMap(UInt64.init)
            let cpuSeconds = Self.cpuSeconds(cpu)
            let added = self.state.withLockedValue { $0.work.advance(commands: commands, cpuSeconds: cpuSeconds) }
            if added.commands > 0 { self.metrics.redisCommandsProcessed.increment(by: Int64(clamping: added.commands)) }
            if added.cpuSeconds > 0 { self.metrics.redisCPUSeconds.increment(by: added.cpuSeconds) }
        }
    }

    /// `used_cpu_sys` + `used_cpu_user` of INFO cpu (nil when Redis does not say).
    static func cpuSeconds(_ cpu: [String: String]) -> Double? {
        guard let system = cpu["used_cpu_sys"].flatMap(Double.init), let user = cpu["used_cpu_user"].flatMap(Double.init) else {
            return nil
        }
        return system + user
    }

    private func record(memory: [String: String], keyspace: [String: String]) {
        if let used = memory["used_memory"].flatMap(Double.init) { metrics.redisMemoryUsedBytes.set(to: used) }
        if let max = memory["maxmemory"].flatMap(Double.init) { metrics.redisMemoryMaxBytes.set(to: max) }
        let (keys, expiring) = Self.keyCounts(keyspace["db\(database)"])
        metrics.redisKeys.set(to: Double(keys))
        metrics.redisKeysWithoutTTL.set(to: Double(keys - min(keys, expiring)))
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
