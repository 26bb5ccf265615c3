/// Full-jitter exponential backoff (the delay is uniform in `[0, min(maximum, base × 2^attempt)]`), so that
/// clients dropped together by one node do not come back together.
public struct Backoff: Sendable, Equatable {
    /// The window of the first retry.
    public var base: Duration
    /// The largest window.
    public var maximum: Duration

    public init(base: Duration = .milliseconds(250), maximum: Duration = .seconds(15)) {
        precondition(base > .zero && maximum >= base, "backoff needs 0 < base <= maximum")
        self.base = base
        self.maximum = maximum
    }

    /// The window of retry number `attempt` (0 for the first).
    public func window(attempt: Int) -> Duration {
        // 2^attempt overflows past 62; the window is at `maximum` long before that.
        let doublings = min(max(attempt, 0), 40)
        var window = base
        for _ in 0..<doublings {
            window *= 2
            if window >= maximum { return maximum }
        }
        return min(window, maximum)
    }

    /// A random delay in `[0, window(attempt)]`.
    public func delay<R: RandomNumberGenerator>(attempt: Int, using generator: inout R) -> Duration {
        let window = self.window(attempt: attempt)
        let nanoseconds = window.components.seconds * 1_000_000_000 + window.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...max(nanoseconds, 0), using: &generator))
    }

    public func delay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }
}
