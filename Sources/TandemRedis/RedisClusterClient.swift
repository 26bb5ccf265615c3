import Logging

/// A Redis client for a Redis Cluster that also serves a single Redis server, detected at start.
///
/// Give it one or more seed addresses. It connects to them, asks `INFO cluster` whether cluster mode
/// is on, and then either
/// - **single mode**: forwards everything to one ``RedisClient`` on the seed that answered, so a single
///   server behaves exactly as with ``RedisClient``; or
/// - **cluster mode**: fetches the slot map (`CLUSTER SHARDS`, or `CLUSTER SLOTS` before Redis 7),
///   keeps one pipelined ``RedisClient`` (one owner thread) per primary, and routes each command to
///   the primary of its key's slot (see ``ClusterSlot``).
///
/// In cluster mode:
/// - A command's keys, a script's keys and a batch's keyed commands must share one slot; otherwise
///   the call fails at once with ``RedisError/crossSlot`` (nothing is split behind the caller's back).
///   Keyless commands (`PING`, `INFO`) go to any primary.
/// - `MOVED` is followed (the map is corrected at once and fetched again); `ASK` is answered with
///   `ASKING` and one retry on the target; `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `READONLY`,
///   `MASTERDOWN` and a down primary connection are retried with backoff for at most
///   ``ClusterSettings/retryTimeout``; see ``ClusterSettings`` for every bound.
/// - Commands that may have run when a primary's connection broke fail with
///   ``RedisError/connectionLost`` or ``RedisError/timeout`` (never retried), only for that primary,
///   and the map is fetched again.
/// - `EVALSHA` falls back to `EVAL` on the node that answered `NOSCRIPT`.
///
/// ```swift
/// let client = try RedisClusterClient(urls: ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
/// client.start()
/// let value = try await client.send(RedisCommand("GET", "tandem:{doc}:clock"))
/// ```
public final class RedisClusterClient: RedisCommandClient {
    /// Seeds, limits, timeouts and hooks.
    public struct Configuration: Sendable {
        /// Where to look for the server or the cluster. The first seed's credentials and database are
        /// used for every node (a cluster has only database 0).
        public var seeds: [RedisEndpoint]
        /// Timeouts, health checks and reconnect pacing of every connection.
        public var connection = RedisConnectionSettings()
        /// Redirect, retry and refresh bounds (cluster mode).
        public var cluster = ClusterSettings()
        /// Commands accepted and not completed (queued, in flight, or waiting to be retried) beyond
        /// which new ones fail with ``RedisError/overloaded``.
        public var maxPendingCommands = 100_000
        /// Called on each change of ``RedisClusterClient/isConnected``, on the client's timer thread
        /// (one thread, so calls arrive in order); must be cheap and must not block.
        public var onConnectionStateChange: (@Sendable (Bool) -> Void)?
        /// Called when which keys are available may have changed (``RedisClusterClient/isAvailable(forKey:)``):
        /// a primary's connection went up or down, or the slot map changed which primaries serve. On the
        /// timer thread, in order; must be cheap and must not block.
        public var onAvailabilityChange: (@Sendable () -> Void)?
        /// Called with each command attempt's outcome in cluster mode and the shard it went to (its index in
        /// the slot map, shards ordered by first slot; nil when the map does not know the node yet), on
        /// the node's owner thread; must be cheap. For per-shard figures.
        public var shardObserver: (@Sendable (_ shard: Int?, _ outcome: ClusterAttemptOutcome) -> Void)?
        /// Called with each command's round trip to a node in seconds, on that node's owner thread
        /// (a redirected command reports each attempt); must be cheap.
        public var commandObserver: (@Sendable (_ seconds: Double) -> Void)?

        /// A configuration with default settings for `seeds` (at least one).
        public init(seeds: [RedisEndpoint]) {
            precondition(!seeds.isEmpty, "RedisClusterClient needs at least one seed endpoint")
            self.seeds = seeds
        }
    }

    /// What the client found at the seeds.
    public enum Mode: Sendable, Equatable {
        /// No seed has answered `INFO cluster` yet; commands fail with ``RedisError/notConnected``.
        case detecting
        /// A single server (cluster mode off): everything goes to one connection.
        case single
        /// A Redis Cluster.
        case cluster
    }

    /// The configuration the client was made with.
    public let configuration: Configuration
    let core: ClusterClientCore

    /// Creates a client; it does nothing until ``start()``.
    /// - Parameters:
    ///   - configuration: Seeds, limits, timeouts and hooks.
    ///   - logger: Receives detection, topology, connect and reconnect events.
    public init(configuration: Configuration, logger: Logger = Logger(label: "tandem.redis")) {
        self.configuration = configuration
        self.core = ClusterClientCore(configuration: configuration, logger: logger)
    }

    /// Creates a client with default settings for one or more `redis://` or `unix://` URLs.
    /// - Throws: ``RedisEndpointError`` if a URL is malformed.
    public convenience init(urls: [String], logger: Logger = Logger(label: "tandem.redis")) throws(RedisEndpointError) {
        var seeds: [RedisEndpoint] = []
        for url in urls { seeds.append(try RedisEndpoint(url: url)) }
        guard !seeds.isEmpty else { throw .missingHost }
        self.init(configuration: Configuration(seeds: seeds), logger: logger)
    }

    /// Stops the owner threads if ``shutdown()`` was never called (without waiting for them).
    deinit {
        core.requestShutdown()
    }

    /// Connects to the seeds in the background and detects the mode. Calling it again, or after
    /// ``shutdown()``, does nothing.
    public func start() {
        core.start()
    }

    /// What the seeds turned out to be. Thread-safe.
    public var mode: Mode { core.mode }

    /// Whether the client is in cluster mode. Thread-safe.
    public var isClusterMode: Bool { core.mode == .cluster }

    /// Single mode: whether the server's connection is up. Cluster mode: whether every slot has a
    /// primary whose connection is up. Thread-safe.
    public var isConnected: Bool { core.isConnected }

    /// Cluster mode: the shards of the slot map, ordered by first slot (the index `shardObserver`
    /// reports), each with its primary and whether that connection is up. Empty otherwise. Thread-safe.
    public var shards: [ClusterShardState] { core.shardStates }

    /// Cluster mode: whether the primary `key`'s slot is routed to has a live connection (a failover
    /// makes only that shard's keys unavailable). Single mode: ``isConnected``. Thread-safe.
    public func isAvailable(forKey key: String) -> Bool { core.isAvailable(slot: ClusterSlot.slot(forKey: key)) }

    /// Commands accepted and not completed yet. Thread-safe.
    public var pendingCommandCount: Int { core.pendingCommandCount }

    /// The slot map in use (cluster mode), without the `MOVED` corrections made since it was fetched.
    public var topology: ClusterTopology? { core.topology }

    /// The seeds, and in cluster mode the number of primaries. Passwords are masked.
    public var endpointDescription: String { core.endpointDescription }

    /// Sends one command to the primary of its key's slot (any primary for keyless commands).
    ///
    /// - Parameters:
    ///   - command: The command.
    ///   - completion: Receives the reply, including error replies as ``RedisValue/error(_:)`` (after
    ///     redirects and retries). It runs on an owner thread or the client's timer thread (cheap, no
    ///     blocking), or right away on the calling thread when the command is refused (not connected,
    ///     cross-slot, overloaded, shut down).
    public func send(_ command: RedisCommand, completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void) {
        core.send(command, completion: completion)
    }

    /// Sends commands back to back on one connection; every keyed command must be in one slot (else
    /// all fail with ``RedisError/crossSlot``). Commands redirected or retried are resent one by one,
    /// so after a redirect they are no longer guaranteed to run back to back.
    public func send(_ commands: [RedisCommand], completion: @escaping @Sendable ([Result<RedisValue, RedisError>]) -> Void) {
        core.send(commands, completion: completion)
    }

    /// Runs a Lua script with `EVALSHA` on the primary of its keys' slot (all keys in one slot, else
    /// ``RedisError/crossSlot``), falling back once to `EVAL` on `NOSCRIPT`.
    public func evalScript(
        _ script: RedisScript,
        keys: [any RedisArgument] = [],
        args: [any RedisArgument] = [],
        completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    ) {
        core.evalScript(script, keys: keys, args: args, completion: completion)
    }

    /// Sends keyless `commands` (e.g. `INFO`) as one batch to every primary, or to the server in single
    /// mode, and completes once with each node's results, sorted by node (`host:port`). Nodes without a
    /// connection are left out; nothing is redirected or retried (meant for per-shard figures).
    public func sendToEachPrimary(
        _ commands: [RedisCommand],
        completion: @escaping @Sendable ([(node: String, results: [Result<RedisValue, RedisError>])]) -> Void
    ) {
        core.sendToEachPrimary(commands, completion: completion)
    }

    /// Stops every connection and the timer thread: commands queued, in flight or waiting for a retry
    /// fail with ``RedisError/shutdown``. Blocks for at most about `connectTimeout`; do not call it on
    /// an event loop (use the `async` variant).
    public func shutdown() {
        for thread in core.requestShutdown() { thread.join() }
    }

    /// Stops like the blocking `shutdown()`, suspending instead of blocking.
    public func shutdown() async {
        for thread in core.requestShutdown() { await thread.join() }
    }
}

/// What one command attempt on a cluster shard came to (``RedisClusterClient/Configuration/shardObserver``).
public enum ClusterAttemptOutcome: Sendable, Equatable {
    /// A reply (error replies other than redirections included: they are the command's answer).
    case reply
    /// No usable answer: a failure (connection lost, timeout, not connected) or a cluster state error
    /// (`CLUSTERDOWN`, `TRYAGAIN`) that is retried.
    case error
    /// `MOVED` or `ASK`: the slot is served elsewhere.
    case redirect
}

/// One shard of the cluster as the client sees it (for status pages).
public struct ClusterShardState: Sendable, Equatable {
    /// Position in the slot map (shards ordered by their first slot).
    public var index: Int
    public var primary: ClusterNodeAddress
    /// How many slots the shard serves.
    public var slots: Int
    /// Whether the client's connection to the primary is up.
    public var connected: Bool
}
