import Prometheus
@testable import TandemServer
import Testing

/// `SampledHistogram` renders its own exposition (issue 8 stop 28: `count` equal observations are one
/// update, not `count` records into swift-prometheus's histogram). Prometheus must read exactly what it read
/// before: the same text as swift-prometheus writes for the same observations.
@Suite struct SampledHistogramTests {
    static let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    static func descriptor() -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "tandem", metricName: "sync_lag", unitName: "seconds", helpText: #"Commit to socket (a \ in help)."#)
    }

    /// Observations as (value, count); values are multiples of 1/1024 so that sums are exact either way.
    static let observations: [(Double, Int)] = [
        (0, 1), (0.0009765625, 3), (0.0029296875, 1), (0.0048828125, 40), (0.25, 2), (0.5, 1), (3, 7), (10, 1), (11, 2), (1024, 1),
    ]

    @Test func theExpositionIsSwiftPrometheusesForTheSameObservations() {
        let ours = SampledHistogram(Self.descriptor(), buckets: Self.buckets)
        let registry = PrometheusCollectorRegistry()
        let theirs = registry.makeValueHistogram(descriptor: Self.descriptor(), buckets: Self.buckets)

        var empty: [UInt8] = []
        ours.emit(into: &empty)
        #expect(String(decoding: empty, as: UTF8.self) == registry.emitToString())

        for (value, count) in Self.observations {
            if count == 1 { ours.record(value) } else { ours.record(value, count: count) }
            for _ in 0..<count { theirs.record(value) }
        }
        var bytes: [UInt8] = []
        ours.emit(into: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == registry.emitToString())
        #expect(ours.buckets.counts.last == Self.observations.reduce(0) { $0 + $1.1 })
    }

    @Test func theNodesExpositionHasTheSyncLagOnce() {
        let metrics = TandemMetrics(nodeID: "n")
        metrics.syncLagSeconds.record(0.003, count: 5)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.components(separatedBy: "# TYPE tandem_sync_lag_seconds histogram\n").count == 2)
        #expect(text.contains("tandem_sync_lag_seconds_bucket{le=\"0.005\"} 5\n"))
        #expect(text.contains("tandem_sync_lag_seconds_count 5\n"))
    }
}
