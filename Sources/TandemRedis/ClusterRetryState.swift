/// What to do with a command after one attempt in a cluster.
struct ClusterRetryDecision: Equatable {
    enum Action: Equatable {
        /// Hand this result to the caller.
        case complete(Result<RedisValue, RedisError>)
        /// `MOVED`: record the slot's new owner and send the command there now.
        case redirect(slot: Int, to: ClusterNodeAddress)
        /// `ASK`: send `ASKING` and the command to this node, back to back on one connection.
        case ask(ClusterNodeAddress)
        /// Not run: route the command again after this many nanoseconds.
        case retry(afterNanoseconds: Int64)
    }

    var action: Action
    /// The reply suggests the slot map is out of date (a redirect, a failover, a lost node).
    var refreshTopology: Bool
}

/// The redirect/retry state machine of one command in a cluster (pure: time and randomness come in).
///
/// Rules, in the order a reply is examined:
/// - `MOVED` → follow it (and refresh the map), up to `maxRedirects` redirects in all.
/// - `ASK` → one `ASKING` + command on the target per `ASK` reply, counted as a redirect too.
/// - `TRYAGAIN`, `LOADING` → retry with backoff until the deadline; `CLUSTERDOWN`, `READONLY`,
///   `MASTERDOWN` likewise, also refreshing the map. None of them ran the command.
/// - ``RedisError/notConnected`` (the primary's connection is down, so the command was never sent) →
///   retry with backoff until the deadline and refresh: a failover may have moved the slot.
/// - ``RedisError/connectionLost`` and ``RedisError/timeout`` → fail (the command may have run; it
///   is not idempotent in general) and refresh.
/// - anything else (a reply, another error) → complete.
///
/// Past the redirect budget or the deadline the last reply or error is what the caller gets.
struct ClusterRetryState {
    let policy: ClusterRetryPolicy
    /// Monotonic nanoseconds after which nothing is retried any more.
    let deadline: UInt64
    private(set) var redirects = 0
    private var backoff: Backoff

    init(policy: ClusterRetryPolicy, now: UInt64) {
        self.policy = policy
        self.deadline = now &+ policy.timeout
        self.backoff = Backoff(initialNanoseconds: policy.initialDelay, maxNanoseconds: policy.maxDelay)
    }

    /// Decides what follows `result`, the outcome of an attempt on a node whose host is `replyingHost`.
    mutating func decide<R: RandomNumberGenerator>(
        _ result: Result<RedisValue, RedisError>, now: UInt64, replyingHost: String, using random: inout R
    ) -> ClusterRetryDecision {
        decide(result, now: now, replyingHost: replyingHost, jitter: { Int64.random(in: $0, using: &random) })
    }

    /// Decides with the system random generator (not through the generic `decide(using:)`: see
    /// `Backoff.nextDelay()`, swiftlang/swift#66099).
    mutating func decide(_ result: Result<RedisValue, RedisError>, now: UInt64, replyingHost: String) -> ClusterRetryDecision {
        decide(result, now: now, replyingHost: replyingHost, jitter: { Int64.random(in: $0) })
    }

    /// `jitter` picks a backoff delay uniformly in the range it is given.
    private mutating func decide(
        _ result: Result<RedisValue, RedisError>, now: UInt64, replyingHost: String,
        jitter: (ClosedRange<Int64>) -> Int64
    ) -> ClusterRetryDecision {
        switch result {
        case .success(.error(let message)):
            switch ClusterReplyError(message: message, replyingHost: replyingHost) {
            case .moved(let slot, let address):
                guard redirects < policy.maxRedirects else { return .init(action: .complete(result), refreshTopology: true) }
                redirects += 1
                return .init(action: .redirect(slot: slot, to: address), refreshTopology: true)
            case .ask(_, let address):
                guard redirects < policy.maxRedirects else { return .init(action: .complete(result), refreshTopology: true) }
                redirects += 1
                return .init(action: .ask(address), refreshTopology: false)
            case .tryAgain, .loading:
                return retry(or: result, now: now, refresh: false, jitter: jitter)
            case .clusterDown, .notPrimary:
                return retry(or: result, now: now, refresh: true, jitter: jitter)
            case .other:
                return .init(action: .complete(result), refreshTopology: false)
            }
        case .success:
            return .init(action: .complete(result), refreshTopology: false)
        case .failure(.notConnected):
            return retry(or: result, now: now, refresh: true, jitter: jitter)
        case .failure(.connectionLost), .failure(.timeout):
            return .init(action: .complete(result), refreshTopology: true)
        case .failure:
            return .init(action: .complete(result), refreshTopology: false)
        }
    }

    /// Retries after the next backoff delay if that is still before the deadline, else completes.
    private mutating func retry(
        or result: Result<RedisValue, RedisError>, now: UInt64, refresh: Bool, jitter: (ClosedRange<Int64>) -> Int64
    ) -> ClusterRetryDecision {
        let delay = backoff.nextDelay(jitter: jitter)
        guard now &+ UInt64(delay) < deadline else {
            return .init(action: .complete(result), refreshTopology: refresh)
        }
        return .init(action: .retry(afterNanoseconds: delay), refreshTopology: refresh)
    }
}
