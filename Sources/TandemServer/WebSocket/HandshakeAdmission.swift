import NIOConcurrencyHelpers
import TandemCore

/// Admission control for WebSocket handshakes, in two stages so that junk cannot lock users out:
///
/// 1. `attempt()` before the token is checked: at most `maxAttemptsPerSecond` handshakes per node are
///    checked at all, valid or not. This bounds what a flood of junk handshakes costs (token checks,
///    tasks) and is set well above the admission rate, so a flood must be an order of magnitude larger
///    than the admission rate before it delays anyone.
/// 2. `admit()` after the token was accepted: at most `maxPerSecond` new connections per node. Refused
///    (unauthenticated, malformed) handshakes never reach this stage, so they cannot use it up.
///
/// Excess handshakes are answered 503 with a jittered `Retry-After`, so a reconnect storm spreads itself
/// out instead of hammering the node in lockstep.
final class HandshakeAdmission: Sendable {
    /// A token bucket plus the refusals of the last two seconds (to size `Retry-After`).
    private struct Limiter {
        var bucket: TokenBucket
        let perSecond: Int
        var rejectedThisSecond = 0
        var rejectedLastSecond = 0
        var second: UInt64 = 0

        init(perSecond: Int, nowMs: UInt64) {
            self.perSecond = perSecond
            // A one-second burst lets a normal wave of connections through untouched.
            bucket = TokenBucket(rate: Double(perSecond), burst: Double(perSecond), nowMs: nowMs)
        }

        /// nil when a token was taken, else the seconds to put in `Retry-After`.
        /// `Retry-After` is drawn from 1...spread seconds: spread at least 2 so that two refused clients
        /// do not come back in the same second, and at most 30 so that a client is never told to stay
        /// away longer than a user would wait for a reconnect.
        static let minRetrySpreadSeconds = 2
        static let maxRetrySpreadSeconds = 30

        mutating func take(nowMs: UInt64) -> Int? {
            let second = nowMs / 1000
            if second != self.second {
                rejectedLastSecond = second == self.second + 1 ? rejectedThisSecond : 0
                rejectedThisSecond = 0
                self.second = second
            }
            if bucket.take(nowMs: nowMs) { return nil }
            rejectedThisSecond += 1
            // Spread retries over the time the current backlog needs at the admitted rate (full jitter),
            // at least 1 s and at most 30 s.
            let backlog = Double(rejectedLastSecond + rejectedThisSecond) / Double(perSecond)
            let spread = min(Limiter.maxRetrySpreadSeconds, max(Limiter.minRetrySpreadSeconds, Int((backlog * 2).rounded(.up))))
            return Int.random(in: 1...spread)
        }
    }

    private let attempts: NIOLockedValueBox<Limiter>
    private let admissions: NIOLockedValueBox<Limiter>
    /// Monotonic milliseconds (the node's clock; a test's own in the handshake tests).
    private let nowMs: @Sendable () -> UInt64

    init(maxPerSecond: Int, maxAttemptsPerSecond: Int, nowMs: @escaping @Sendable () -> UInt64 = { NodeClock().nowMs() }) {
        self.nowMs = nowMs
        let now = nowMs()
        attempts = NIOLockedValueBox(Limiter(perSecond: maxAttemptsPerSecond, nowMs: now))
        admissions = NIOLockedValueBox(Limiter(perSecond: maxPerSecond, nowMs: now))
    }

    /// Takes a slot to check one handshake's token; returns nil when allowed, else `Retry-After` seconds.
    func attempt() -> Int? {
        let now = nowMs()
        return attempts.withLockedValue { $0.take(nowMs: now) }
    }

    /// Takes a slot for one authenticated handshake; returns nil when admitted, else `Retry-After` seconds.
    func admit() -> Int? {
        let now = nowMs()
        return admissions.withLockedValue { $0.take(nowMs: now) }
    }
}
