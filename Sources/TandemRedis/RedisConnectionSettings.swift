import NIOCore

/// Timeouts, health checks and reconnect pacing shared by ``RedisClient`` and ``RedisSubscriber``.
public struct RedisConnectionSettings: Sendable {
    /// Bound on the TCP/unix connect and on the handshake (`AUTH`, `SELECT`, `PING`) that follows it.
    public var connectTimeout: TimeAmount = .seconds(1)
    /// When the oldest command in flight is older than this, the connection is considered broken: it is
    /// closed, everything in flight fails with ``RedisError/timeout``, and a reconnect starts.
    /// Blocking commands (`BLPOP` and the like) that wait longer than this therefore look like a dead
    /// server: send them through a client of their own with a larger timeout.
    public var commandTimeout: TimeAmount = .seconds(5)
    /// An idle connection sends `PING` this often, so a dead or paused server is noticed within about
    /// `healthCheckInterval + commandTimeout` even with no traffic.
    public var healthCheckInterval: TimeAmount = .seconds(1)
    /// First reconnect delay after a failure; it doubles per consecutive failure.
    public var reconnectInitialDelay: TimeAmount = .milliseconds(50)
    /// Largest reconnect delay.
    public var reconnectMaxDelay: TimeAmount = .seconds(2)
    /// While reconnecting fails, log a warning for the first failure and then every this many attempts
    /// (the rest at debug level), so an outage does not flood the logs.
    public var failureLogInterval: Int = 20

    /// The defaults: 1 s connect, 5 s command timeout, 1 s health check, 50 ms...2 s backoff.
    public init() {}
}
