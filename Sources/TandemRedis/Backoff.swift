/// Exponential reconnect backoff with jitter.
///
/// The n-th consecutive failure waits `min(max, initial * 2^(n-1))`, jittered uniformly into
/// `[delay/2, delay]` so that many processes restarted together by an outage do not reconnect in lockstep.
struct Backoff {
    let initialNanoseconds: Int64
    let maxNanoseconds: Int64
    /// Consecutive failures since the last successful connection.
    private(set) var failures = 0

    init(initialNanoseconds: Int64, maxNanoseconds: Int64) {
        self.initialNanoseconds = max(1, initialNanoseconds)
        self.maxNanoseconds = max(self.initialNanoseconds, maxNanoseconds)
    }

    /// Records one more failure and returns how long to wait before the next attempt.
    mutating func nextDelay<R: RandomNumberGenerator>(using random: inout R) -> Int64 {
        nextDelay(jitter: { Int64.random(in: $0, using: &random) })
    }

    /// Records one more failure and returns the delay, using the system random generator.
    ///
    /// Not `var random = SystemRandomNumberGenerator(); nextDelay(using: &random)`: that generator is an
    /// empty struct, and an empty value passed `inout` into generic code has no real address, which
    /// ThreadSanitizer's inout-access check then dereferences and crashes on (swiftlang/swift#66099).
    mutating func nextDelay() -> Int64 {
        nextDelay(jitter: { Int64.random(in: $0) })
    }

    /// Records one more failure; `jitter` picks a value uniformly in the range it is given.
    mutating func nextDelay(jitter: (ClosedRange<Int64>) -> Int64) -> Int64 {
        failures += 1
        let exponent = min(failures - 1, 32)  // 2^32 * 1 ns already exceeds any sane maximum
        let (product, overflow) = initialNanoseconds.multipliedReportingOverflow(by: Int64(1) << exponent)
        let delay = overflow ? maxNanoseconds : min(maxNanoseconds, product)
        return delay / 2 + jitter(0...(delay - delay / 2))
    }

    /// A connection succeeded: the next failure starts from `initial` again.
    mutating func reset() {
        failures = 0
    }
}
