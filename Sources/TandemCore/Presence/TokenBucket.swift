/// A token bucket: `rate` tokens per second, holding at most `burst`. Time is passed in (milliseconds of a
/// monotonic clock) so the limiter is deterministic under test.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var updatedAtMs: UInt64

    public init(rate: Double, burst: Double, nowMs: UInt64) {
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = self.burst
        self.updatedAtMs = nowMs
    }

    private mutating func refill(nowMs: UInt64) {
        guard nowMs > updatedAtMs else { return }
        tokens = min(burst, tokens + Double(nowMs - updatedAtMs) * rate / 1000)
        updatedAtMs = nowMs
    }

    /// Takes one token if there is one.
    public mutating func take(nowMs: UInt64) -> Bool {
        refill(nowMs: nowMs)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Milliseconds until the next token (0 when there is one): the retry hint of a refusal.
    public mutating func msUntilToken(nowMs: UInt64) -> UInt64 {
        refill(nowMs: nowMs)
        guard tokens < 1 else { return 0 }
        return UInt64(((1 - tokens) * 1000 / rate).rounded(.up))
    }

    /// True when the bucket is full again, so its owner can forget it.
    public mutating func isFull(nowMs: UInt64) -> Bool {
        refill(nowMs: nowMs)
        return tokens >= burst
    }
}
