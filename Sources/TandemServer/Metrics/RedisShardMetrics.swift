import NIOConcurrencyHelpers
import Prometheus
import TandemRedis

/// Per-shard Redis Cluster figures: command attempts, errors and redirections by shard (issue 11).
///
/// The `shard` label is the shard's index in the slot map (shards ordered by their first slot), so it
/// survives a failover (the promoted replica serves the same slots at another address). Its values are
/// bounded by the cluster's size and capped: `0`…`15`, then `other` (a larger shard index, or a node the
/// map does not know yet, e.g. the target of a `MOVED` before the next map fetch). Each label's counters
/// are made once, the first time its shard is seen, so a single Redis exports none.
final class RedisShardMetrics: Sendable {
    /// Shards with a label of their own; the rest count as `other`.
    static let maxLabelledShards = 16

    struct Counters: Sendable {
        let commands: Counter
        let errors: Counter
        let redirections: Counter
    }

    private let registry: PrometheusCollectorRegistry
    /// Index `maxLabelledShards` is `other`.
    private let counters = NIOLockedValueBox<[Counters?]>(Array(repeating: nil, count: RedisShardMetrics.maxLabelledShards + 1))

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    /// Counts one command attempt (a redis owner thread calls this for every attempt in cluster mode).
    func record(shard: Int?, _ outcome: ClusterAttemptOutcome) {
        let counters = counters(for: shard.map { min($0, Self.maxLabelledShards) } ?? Self.maxLabelledShards)
        counters.commands.increment()
        switch outcome {
        case .reply: break
        case .error: counters.errors.increment()
        case .redirect: counters.redirections.increment()
        }
    }

    private func counters(for slot: Int) -> Counters {
        counters.withLockedValue { all in
            if let existing = all[slot] { return existing }
            let label = slot == Self.maxLabelledShards ? "other" : String(slot)
            func name(_ metric: String, _ help: String) -> MetricNameDescriptor {
                MetricNameDescriptor(namespace: "tandem", metricName: metric, unitName: "total", helpText: help)
            }
            let made = Counters(
                commands: registry.makeCounter(
                    descriptor: name("redis_shard_commands", "Redis Cluster command attempts, by shard (index in the slot map)."),
                    labels: [("shard", label)]),
                errors: registry.makeCounter(
                    descriptor: name(
                        "redis_shard_errors",
                        "Redis Cluster command attempts without a usable answer (connection lost, timeout, CLUSTERDOWN, TRYAGAIN), by shard."),
                    labels: [("shard", label)]),
                redirections: registry.makeCounter(
                    descriptor: name("redis_shard_redirections", "Redis Cluster MOVED and ASK replies, by shard."),
                    labels: [("shard", label)]))
            all[slot] = made
            return made
        }
    }
}
