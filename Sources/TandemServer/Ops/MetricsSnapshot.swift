/// The few of the node's metrics the status page turns into rates, read from the metrics' own copies
/// (`SampledCounter` and friends): the status page shows exactly what Prometheus would compute, from one
/// source of truth, without rendering and parsing the exposition every second (19 M instructions/s).
/// Sums over a label (closed connections by reason, presence updates by result, pushes by action) are
/// summed here, as `sum()` would. `SampledMetricsTests` checks every field against the exposition.
struct MetricsSnapshot: Equatable, Sendable {
    /// tandem_connections
    var connections = 0.0
    /// tandem_connections_opened_total
    var connectionsOpened = 0.0
    /// tandem_connections_closed_total, every reason
    var connectionsClosed = 0.0
    /// tandem_reconnects_total
    var reconnects = 0.0
    /// tandem_presence_updates_total, every result
    var presenceUpdates = 0.0
    /// tandem_presence_fanout_messages_total
    var presenceFanoutMessages = 0.0
    /// tandem_sync_pushes_total, every action
    var syncPushes = 0.0
    /// tandem_sync_conflicts_total
    var syncConflicts = 0.0
    /// tandem_sync_lag_seconds
    var syncLag = HistogramBuckets()
    /// tandem_queue_depth{queue="outbound"}, {queue="redis"}, {queue="push"}
    var outboundQueueBytes = 0.0
    var redisQueue = 0.0
    var pushQueue = 0.0
    /// tandem_reconnect_storm
    var reconnectStorm = 0.0
}
