import NIOConcurrencyHelpers
import Prometheus

// The status sampler reads a dozen of the node's metrics every second. swift-prometheus keeps their values
// private (only the text exposition shows them), and rendering the whole exposition and parsing it back
// every second cost 19 M instructions per second — 85 % of an idle node's. The wrappers below hold a copy
// of the value next to the Prometheus metric and update both in one call, with the methods of
// swift-prometheus's types, so call sites read the same; the sampler reads the copies.
//
// Both are updated under the wrapper's lock, so they change together and in the same order: whenever no
// update is in progress the copy equals what the exposition shows (a set racing an increment could
// otherwise leave an atomic copy and the metric apart). Every update is one lock more than swift-prometheus
// already pays (an atomic or its own lock), and these metrics change at most once per message.
// `SampledMetricsTests` checks the copies against the exposition on a node with traffic.

/// A Prometheus counter whose value the node can read without rendering the exposition.
public final class SampledCounter: Sendable {
    private let counter: Counter
    private let total = NIOLockedValueBox<Int64>(0)

    init(_ counter: Counter) { self.counter = counter }

    public func increment(by amount: Int64 = 1) {
        total.withLockedValue { total in
            counter.increment(by: amount)
            total &+= amount  // wraps like swift-prometheus's counter
        }
    }

    /// What the exposition shows.
    var value: Int64 { total.withLockedValue { $0 } }
}

/// A Prometheus gauge whose value the node can read without rendering the exposition.
public final class SampledGauge: Sendable {
    private let gauge: Gauge
    private let current = NIOLockedValueBox<Double>(0)

    init(_ gauge: Gauge) { self.gauge = gauge }

    public func set(to value: Double) {
        current.withLockedValue { current in
            gauge.set(to: value)
            current = value
        }
    }

    public func increment(by amount: Double = 1) {
        current.withLockedValue { current in
            gauge.increment(by: amount)
            current += amount
        }
    }

    public func decrement(by amount: Double = 1) { increment(by: -amount) }

    /// What the exposition shows.
    var value: Double { current.withLockedValue { $0 } }
}

/// A Prometheus histogram of Doubles that the node renders itself (`emit(into:)`, appended to the registry's
/// exposition by `TandemMetrics.exposition()`), so that its bucket counts can be read without rendering the
/// exposition and `count` equal observations cost one update.
///
/// It was a swift-prometheus histogram with a copy of the counts beside it; that histogram can only record
/// one value at a time, so `record(_:count:)` recorded `count` times under its lock — ~250 instructions per
/// frame for the sync lag, which every patch of every commit to every member records (callgrind, issue 8
/// stops 27 and 28). The exposition is the same text (`SampledHistogramTests` compares it with
/// swift-prometheus's for the same observations), with the metric's HELP and TYPE lines.
public final class SampledHistogram: Sendable {
    /// The full metric name (`tandem_sync_lag_seconds`) and its help text.
    private let name: String
    private let help: String
    /// The buckets' upper bounds, ascending, and each as the exposition writes it (`le="…"`).
    private let bounds: [Double]
    private let boundLabels: [String]
    private struct State {
        /// Observations per bucket, not cumulative; the last one is above every bound (or NaN).
        var counts: [Int]
        var sum: Double = 0
    }
    private let state: NIOLockedValueBox<State>

    init(_ descriptor: MetricNameDescriptor, buckets: [Double]) {
        self.name = descriptor.name
        self.help = descriptor.helpText ?? ""
        self.bounds = buckets
        self.boundLabels = buckets.map(\.description)  // swift-prometheus's `bucketRepresentation` of a Double
        self.state = NIOLockedValueBox(State(counts: Array(repeating: 0, count: buckets.count + 1)))
    }

    public func record(_ value: Double) { record(value, count: 1) }

    /// Records `value` `count` times: one search of the buckets and one lock (issue 8 stop 26: a hot doc's
    /// sync lag is the same for every frame of a commit written in one pass, tens of frames per member per
    /// round).
    public func record(_ value: Double, count: Int) {
        guard count > 0 else { return }
        // Counted in the first bucket whose bound is >= it (the exposition's cumulative counts add up the rest).
        let index = bounds.firstIndex { $0 >= value } ?? bounds.count
        state.withLockedValue { state in
            state.counts[index] += count
            state.sum += value * Double(count)  // exact for count 1
        }
    }

    /// The cumulative counts the exposition shows.
    var buckets: HistogramBuckets {
        let counts = state.withLockedValue { $0.counts }
        var cumulative: [Int] = []
        cumulative.reserveCapacity(counts.count)
        var sum = 0
        for count in counts {
            sum += count
            cumulative.append(sum)
        }
        return HistogramBuckets(bounds: bounds + [.infinity], counts: cumulative)
    }

    /// The Prometheus text exposition of the histogram, as swift-prometheus writes one without labels.
    func emit(into buffer: inout [UInt8]) {
        let state = state.withLockedValue { $0 }
        if !help.isEmpty {
            buffer.append(contentsOf: "# HELP \(name) ".utf8)
            for byte in help.utf8 {
                if byte == UInt8(ascii: "\\") { buffer.append(contentsOf: #"\\"#.utf8) } else { buffer.append(byte) }
            }
            buffer.append(UInt8(ascii: "\n"))
        }
        buffer.append(contentsOf: "# TYPE \(name) histogram\n".utf8)
        var cumulative = 0
        for (i, label) in boundLabels.enumerated() {
            cumulative += state.counts[i]
            buffer.append(contentsOf: "\(name)_bucket{le=\"\(label)\"} \(cumulative)\n".utf8)
        }
        cumulative += state.counts[bounds.count]
        buffer.append(contentsOf: "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n".utf8)
        buffer.append(contentsOf: "\(name)_sum \(state.sum.description)\n".utf8)
        buffer.append(contentsOf: "\(name)_count \(cumulative)\n".utf8)
    }
}

/// A histogram's buckets as Prometheus exposes them: `counts[i]` observations were at most `bounds[i]`; the
/// last bound is +Inf (its count is the total).
struct HistogramBuckets: Equatable, Sendable {
    var bounds: [Double] = []
    var counts: [Int] = []

    /// The `q` quantile of the observations between `previous` and `self`, interpolated within buckets like
    /// PromQL's `histogram_quantile` (nil without observations in the interval). `previous` may be empty
    /// (no earlier reading: every count was 0).
    func quantile(_ q: Double, since previous: HistogramBuckets) -> Double? {
        let deltas = counts.indices.map { Double(counts[$0] - (previous.counts.indices.contains($0) ? previous.counts[$0] : 0)) }
        guard let total = deltas.last, total > 0 else { return nil }
        let rank = q * total
        var lowerBound = 0.0
        var lowerCount = 0.0
        for (le, count) in zip(bounds, deltas) {
            if count >= rank {
                if le == .infinity { return lowerBound }
                let inBucket = count - lowerCount
                guard inBucket > 0 else { return le }
                return lowerBound + (le - lowerBound) * (rank - lowerCount) / inBucket
            }
            lowerBound = le
            lowerCount = count
        }
        return lowerBound
    }
}
