import Prometheus

/// The history's metrics (issue 15), made once per node on the node's registry.
final class HistoryMetrics: Sendable {
    /// Commits moved from the live log into sealed segments by this node.
    let sealedCommits: Counter
    /// Segments and checkpoints this node wrote, and their bytes (compressed, as stored).
    let segments: Counter
    let checkpoints: Counter
    let bytesWritten: Counter
    /// Commits waiting to be sealed in the doc furthest behind among those this node holds open.
    let sealLag: Gauge
    /// Seal rounds that failed (Redis errors, undecodable entries) or lost the race to another node.
    let sealFailures: Counter
    let sealRaces: Counter
    /// Commits a doc's history lacks because they left the live log before any node sealed them (a node
    /// of a version before history trimmed them): the history restarted at the head (`sealRead`'s rebase).
    let lostCommits: Counter
    /// History reads by kind (at, time, versions, log, restore, fork, protocol), and the commits they
    /// replayed (the work a read costs).
    let reads: [String: Counter]
    let replayedCommits: Counter
    /// Segments decompressed to answer state reads (`/at`, restore, fork, protocol `at`, the sealer's
    /// checkpoints): with `replayedCommits`, the work per read (at most one checkpoint, the segments after
    /// it and the live tail: docs/history.md).
    let readSegments: Counter
    /// Reads refused because they would take more than the bounds (the sealer is far behind).
    let readsRefused: Counter

    static let readKinds = ["at", "time", "versions", "log", "restore", "fork", "protocol"]

    init(registry: PrometheusCollectorRegistry) {
        func name(_ metric: String, _ unit: String = "", _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "tandem", metricName: metric, unitName: unit, helpText: help)
        }
        sealedCommits = registry.makeCounter(
            descriptor: name("history_sealed_commits", "total", "Commits this node moved from the live log into sealed history segments."))
        segments = registry.makeCounter(descriptor: name("history_segments_written", "total", "History segments this node wrote."))
        checkpoints = registry.makeCounter(
            descriptor: name("history_checkpoints_written", "total", "History checkpoints (full doc states) this node wrote."))
        bytesWritten = registry.makeCounter(
            descriptor: name("history_written_bytes", "total", "Bytes of compressed history (segments and checkpoints) this node wrote."))
        sealLag = registry.makeGauge(
            descriptor: name(
                "history_seal_lag", "commits",
                "Commits not yet sealed into history in the doc furthest behind among those this node holds open (the live log keeps them)."))
        sealFailures = registry.makeCounter(descriptor: name("history_seal_failures", "total", "History seal rounds that failed."))
        sealRaces = registry.makeCounter(
            descriptor: name("history_seal_races", "total", "History seal rounds another node finished first (nothing written twice)."))
        lostCommits = registry.makeCounter(
            descriptor: name(
                "history_lost_commits", "total",
                "Commits missing from version history: trimmed from the live log before any node sealed them (the history restarted at the head)."))
        let readDescriptor = name("history_reads", "total", "History reads and writes served, by route (at, time, versions, log, restore, fork, protocol).")
        reads = Dictionary(uniqueKeysWithValues: Self.readKinds.map { ($0, registry.makeCounter(descriptor: readDescriptor, labels: [("route", $0)])) })
        replayedCommits = registry.makeCounter(
            descriptor: name("history_replayed_commits", "total", "Commits replayed from checkpoints to serve history reads and checkpoints."))
        readSegments = registry.makeCounter(
            descriptor: name("history_read_segments", "total", "History segments decompressed to serve state reads and checkpoints."))
        readsRefused = registry.makeCounter(
            descriptor: name("history_reads_refused", "total", "History reads refused as too large for one request (503 busy: the sealer is behind)."))
    }

    func read(_ kind: String) { reads[kind]?.increment() }
}
