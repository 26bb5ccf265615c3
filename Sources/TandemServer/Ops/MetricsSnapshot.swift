/// The node's own Prometheus exposition, read back as numbers: the status page shows exactly what
/// Prometheus would compute, from one source of truth (the metrics), without a second set of counters.
struct MetricsSnapshot: Sendable {
    /// Series (`name{labels}`) → value.
    private(set) var series: [String: Double] = [:]

    init(exposition: [UInt8]) {
        for line in String(decoding: exposition, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            series[String(line[..<space])] = value
        }
    }

    init() {}

    /// Sum over all label sets of `name` (or the exact series when `name` has labels).
    func total(_ name: String) -> Double {
        if let exact = series[name] { return exact }
        var sum = 0.0
        for (key, value) in series where key.hasPrefix(name + "{") { sum += value }
        return sum
    }

    /// The `q` quantile of a histogram over the interval between `previous` and `self`, interpolated
    /// within buckets like PromQL's `histogram_quantile` (nil without observations in the interval).
    func quantile(_ q: Double, histogram name: String, since previous: MetricsSnapshot) -> Double? {
        var buckets: [(le: Double, count: Double)] = []
        for (key, value) in series where key.hasPrefix(name + "_bucket{") {
            guard let range = key.range(of: "le=\""), let end = key[range.upperBound...].firstIndex(of: "\"") else { continue }
            let bound = key[range.upperBound..<end]
            let le = bound == "+Inf" ? Double.infinity : Double(bound) ?? .infinity
            buckets.append((le, value - (previous.series[key] ?? 0)))
        }
        buckets.sort { $0.le < $1.le }
        guard let total = buckets.last?.count, total > 0 else { return nil }
        let rank = q * total
        var lowerBound = 0.0
        var lowerCount = 0.0
        for bucket in buckets {
            if bucket.count >= rank {
                if bucket.le == .infinity { return lowerBound }
                let inBucket = bucket.count - lowerCount
                guard inBucket > 0 else { return bucket.le }
                return lowerBound + (bucket.le - lowerBound) * (rank - lowerCount) / inBucket
            }
            lowerBound = bucket.le
            lowerCount = bucket.count
        }
        return lowerBound
    }
}
