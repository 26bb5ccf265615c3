/// Sends this session's presence at most once per interval (the server's `presenceRate`), latest wins:
/// states set while waiting replace each other and only the newest leaves when the interval is up.
///
/// Pure: the time is passed in, the caller arms the timer it is told to and reports it with its token (a
/// timer armed before a ``reset()`` carries an old token and is ignored).
struct PresenceThrottle: Sendable {
    enum Action: Equatable, Sendable {
        /// Send this state now.
        case send(JSONValue)
        /// Call ``timerFired(token:now:)`` with `token` at `deadline`.
        case arm(deadline: ContinuousClock.Instant, token: Int)
        /// A timer is already armed; it will send the newest state.
        case none
    }

    var interval: Duration
    private(set) var lastSent: ContinuousClock.Instant?
    private(set) var waiting: JSONValue?
    private var armedToken: Int?
    private var nextToken = 0

    init(interval: Duration) {
        self.interval = interval
    }

    /// The interval for a server that allows `rate` updates per second.
    static func interval(presenceRate rate: Int) -> Duration {
        .nanoseconds(1_000_000_000 / Int64(max(rate, 1)))
    }

    mutating func set(_ state: JSONValue, now: ContinuousClock.Instant) -> Action {
        if armedToken != nil {
            waiting = state
            return .none
        }
        if let lastSent, now < lastSent + interval {
            waiting = state
            nextToken += 1
            armedToken = nextToken
            return .arm(deadline: lastSent + interval, token: nextToken)
        }
        lastSent = now
        return .send(state)
    }

    /// The timer armed with `token` fired: the state to send, if any.
    mutating func timerFired(token: Int, now: ContinuousClock.Instant) -> JSONValue? {
        guard armedToken == token else { return nil }
        armedToken = nil
        guard let state = waiting else { return nil }
        waiting = nil
        lastSent = now
        return state
    }

    /// A state went out another way (in a `join`).
    mutating func sent(now: ContinuousClock.Instant) {
        lastSent = now
    }

    /// The connection is gone: nothing waits any more (the next `join` carries the newest state).
    mutating func reset() {
        armedToken = nil
        waiting = nil
    }
}
