/// Detects reconnect storms: the reconnect rate over the last `windowSeconds` above `threshold` per
/// second. Counts live in one-second buckets, so memory is constant whatever the rate.
public struct ReconnectStormDetector: Sendable {
    public let threshold: Double
    public let windowSeconds: Int
    private var buckets: [UInt64]
    private var bucketSecond: [UInt64]

    public private(set) var inStorm = false
    public private(set) var stormStartedMs: UInt64 = 0
    public private(set) var peakRate: Double = 0

    public enum Transition: Equatable, Sendable {
        case started(rate: Double)
        case ended(peakRate: Double, durationMs: UInt64)
    }

    public init(threshold: Double, windowSeconds: Int = 10) {
        self.threshold = threshold
        self.windowSeconds = windowSeconds
        buckets = Array(repeating: 0, count: windowSeconds)
        bucketSecond = Array(repeating: UInt64.max, count: windowSeconds)
    }

    public mutating func record(nowMs: UInt64, count: UInt64 = 1) {
        let second = nowMs / 1000
        let index = Int(second % UInt64(windowSeconds))
        if bucketSecond[index] != second {
            bucketSecond[index] = second
            buckets[index] = 0
        }
        buckets[index] += count
    }

    /// Reconnects per second over the window ending now.
    public func rate(nowMs: UInt64) -> Double {
        let second = nowMs / 1000
        var total: UInt64 = 0
        for i in 0..<windowSeconds where bucketSecond[i] != UInt64.max && bucketSecond[i] + UInt64(windowSeconds) > second {
            total += buckets[i]
        }
        return Double(total) / Double(windowSeconds)
    }

    /// Re-evaluates the state; call about once a second.
    public mutating func evaluate(nowMs: UInt64) -> Transition? {
        let rate = rate(nowMs: nowMs)
        if inStorm {
            peakRate = max(peakRate, rate)
            if rate <= threshold {
                inStorm = false
                return .ended(peakRate: peakRate, durationMs: nowMs - stormStartedMs)
            }
        } else if rate > threshold {
            inStorm = true
            stormStartedMs = nowMs
            peakRate = rate
            return .started(rate: rate)
        }
        return nil
    }
}
