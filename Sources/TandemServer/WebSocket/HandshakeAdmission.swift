import NIOConcurrencyHelpers
import TandemCore

/// Admission control for WebSocket handshakes: at most `maxPerSecond` new connections per node. Excess
/// handshakes are answered 503 with a jittered `Retry-After`, so a reconnect storm spreads itself out
/// instead of hammering the node in lockstep.
final class HandshakeAdmission: Sendable {
    private struct State {
        var bucket: TokenBucket
        var rejectedThisSecond = 0
        var rejectedLastSecond = 0
        var second: UInt64 = 0
    }

    private let state: NIOLockedValueBox<State>
    private let maxPerSecond: Int
    private let clock = NodeClock()

    init(maxPerSecond: Int) {
        self.maxPerSecond = maxPerSecond
        // A one-second burst lets a normal wave of connections through untouched.
        state = NIOLockedValueBox(
            State(bucket: TokenBucket(rate: Double(maxPerSecond), burst: Double(maxPerSecond), nowMs: NodeClock().nowMs())))
    }

    /// Takes a handshake slot; returns nil when admitted, else the seconds to put in `Retry-After`.
    func admit() -> Int? {
        let now = clock.nowMs()
        return state.withLockedValue { state in
            let second = now / 1000
            if second != state.second {
                state.rejectedLastSecond = second == state.second + 1 ? state.rejectedThisSecond : 0
                state.rejectedThisSecond = 0
                state.second = second
            }
            if state.bucket.take(nowMs: now) { return nil }
            state.rejectedThisSecond += 1
            // Spread retries over the time the current backlog needs at the admitted rate (full jitter),
            // at least 1 s and at most 30 s.
            let backlog = Double(state.rejectedLastSecond + state.rejectedThisSecond) / Double(maxPerSecond)
            let spread = min(30, max(2, Int((backlog * 2).rounded(.up))))
            return Int.random(in: 1...spread)
        }
    }
}
