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

/// A Prometheus histogram of Doubles whose bucket counts the node can read without rendering the exposition.
public final class SampledHistogram: Sendable {
    private let histogram: ValueHistogram
    /// The buckets' upper bounds, ascending (as given to swift-prometheus).
    private let bounds: [Double]
    /// Observations per bucket, not cumulative; the last one is above every bound (or NaN).
    private let counts: NIOLockedValueBox<[Int]>

    init(_ histogram: ValueHistogram, buckets: [Double]) {
        self.histogram = histogram
        self.bounds = buckets
        self.counts = NIOLockedValueBox(Array(repeating: 0, count: buckets.count + 1))
    }

    public func record(_ value: Double) {
        // swift-prometheus counts a value in every bucket whose bound is >= it: the first such bucket here.
        let index = bounds.firstIndex { $0 >= value } ?? bounds.count
        counts.withLockedValue { counts in
            histogram.record(value)
            counts[index] += 1
        }
    }

    /// Records `value` `count` times: one search of the buckets and one lock of the copy for what would
    /// otherwise be `count` records (issue 8 stop 26: a hot doc's sync lag is the same for every frame of
    /// a commit written in one pass, tens of frames per member per round).
    public func record(_ value: Double, count: Int) {
        guard count > 0 else { return }
        let index = bounds.firstIndex { $0 >= value } ?? bounds.count
        counts.withLockedValue { counts in
            for _ in 0..<count { histogram.record(value) }
            counts[index] += count
        }
    }

    /// The cumulative counts the exposition shows.
    var buckets: HistogramBuckets {
        let counts = counts.withLockedValue { $0 }
        var cumulative: [Int] = []
        cumulative.reserveCapacity(counts.count)
        var sum = 0
        for count in counts {
            sum += count
            cumulative.append(sum)
        }
        return HistogramBuckets(bounds: bounds + [.infinity], counts: cumulative)
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
