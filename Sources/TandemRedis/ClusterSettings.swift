import NIOCore

/// How a ``RedisClusterClient`` follows redirects, retries and refreshes its slot map. Every value is
/// a bound: a command either completes or fails within about `retryTimeout` plus the connection's
/// `commandTimeout`; it never hangs.
public struct ClusterSettings: Sendable {
    /// `MOVED`/`ASK` redirects one command may follow before it fails with the last redirect reply
    /// (a loop of redirects means the cluster's own view is inconsistent).
    public var maxRedirects = 5
    /// How long a command that was *not run* keeps being retried: the node answered `TRYAGAIN`,
    /// `CLUSTERDOWN`, `LOADING`, `READONLY` or `MASTERDOWN`, or the connection to the slot's primary was
    /// down when the command came. After it, the command fails with the last reply or with
    /// ``RedisError/notConnected``. Commands that may have run (``RedisError/connectionLost``,
    /// ``RedisError/timeout``) are never retried.
    public var retryTimeout: TimeAmount = .seconds(2)
    /// First delay between retries of one command; it doubles per retry (with jitter) up to `retryMaxDelay`.
    public var retryInitialDelay: TimeAmount = .milliseconds(20)
    /// Largest delay between retries of one command.
    public var retryMaxDelay: TimeAmount = .milliseconds(500)
    /// The slot map is fetched again this often while the cluster looks healthy.
    public var refreshInterval: TimeAmount = .seconds(10)
    /// At most one fetch of the slot map per this interval, however many errors ask for one (and only
    /// one at a time); also the pace of fetches while some slot has no reachable primary.
    public var minRefreshInterval: TimeAmount = .milliseconds(200)
    /// A connection to a node that stopped being a primary is closed this long after the map said so
    /// (at least twice the command timeout), so that commands still in flight on it get their replies.
    public var retiredConnectionGrace: TimeAmount = .seconds(10)

    /// The defaults: 5 redirects, retries for 2 s (20 ms doubling to 500 ms), map refreshed every 10 s
    /// and at most every 200 ms.
    public init() {}
}

/// The retry bounds of one command, in nanoseconds (derived from ``ClusterSettings``).
struct ClusterRetryPolicy: Sendable, Equatable {
    var maxRedirects: Int
    var timeout: UInt64
    var initialDelay: Int64
    var maxDelay: Int64

    init(maxRedirects: Int, timeout: UInt64, initialDelay: Int64, maxDelay: Int64) {
        self.maxRedirects = max(0, maxRedirects)
        self.timeout = timeout
        self.initialDelay = max(1, initialDelay)
        self.maxDelay = max(self.initialDelay, maxDelay)
    }

    init(_ settings: ClusterSettings) {
        self.init(
            maxRedirects: settings.maxRedirects,
            timeout: UInt64(max(0, settings.retryTimeout.nanoseconds)),
            initialDelay: settings.retryInitialDelay.nanoseconds,
            maxDelay: settings.retryMaxDelay.nanoseconds
        )
    }
}
