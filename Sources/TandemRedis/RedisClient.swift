import Logging
import NIOConcurrencyHelpers

/// Tandem's Redis client: one hiredis connection owned by one dedicated thread, with automatic
/// pipelining, reconnects and failure detection.
///
/// Callers on any thread (event loops, tasks) enqueue commands and never block: the owner thread
/// batches everything queued into one write, matches replies in order and completes them. While the
/// connection is down commands fail at once with ``RedisError/notConnected`` instead of piling up, and
/// commands in flight when it breaks fail with ``RedisError/connectionLost`` or
/// ``RedisError/timeout``: they are never retried, since they may not be idempotent.
///
/// Results arrive as a callback on the owner thread, an `EventLoopFuture`, or `async`.
///
/// ```swift
/// let client = try RedisClient(url: "redis://127.0.0.1:6379/0", logger: logger)
/// client.start()
/// let value = try await client.send(RedisCommand("GET", "doc:1"))
/// await client.shutdown()
/// ```
public final class RedisClient: RedisCommandClient {
    /// Where to connect, limits, timeouts and hooks. Hooks are fixed here so the client stays `Sendable`.
    public struct Configuration: Sendable {
        /// The server and credentials.
        public var endpoint: RedisEndpoint
        /// Timeouts, health checks and reconnect pacing.
        public var connection = RedisConnectionSettings()
        /// Commands queued plus in flight beyond which new ones fail with ``RedisError/overloaded``.
        public var maxPendingCommands = 100_000
        /// Called on each transition between connected (`true`) and disconnected (`false`), on the
        /// owner thread; must be cheap and must not block.
        public var onConnectionStateChange: (@Sendable (Bool) -> Void)?
        /// Called with each completed command's round-trip time in seconds (from enqueue to reply), on
        /// the owner thread; meant for a histogram, so it must be cheap.
        public var commandObserver: (@Sendable (_ seconds: Double) -> Void)?

        /// A configuration with default settings for `endpoint`.
        public init(endpoint: RedisEndpoint) {
            self.endpoint = endpoint
        }
    }

    /// The configuration the client was made with.
    public let configuration: Configuration
    private let logger: Logger
    private let shared = NIOLockedValueBox(ClientSharedState())
    private let wake = WakePipe()
    private let lifecycle = OwnerThreadLifecycle()

    /// Creates a client; it does nothing until ``start()``.
    /// - Parameters:
    ///   - configuration: Endpoint, limits, timeouts and hooks.
    ///   - logger: Receives connect, disconnect and reconnect events (tagged `redis.endpoint`).
    public init(configuration: Configuration, logger: Logger = Logger(label: "tandem.redis")) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "redis.role"] = "client"
        self.logger = logger
    }

    /// Creates a client with default settings for a `redis://` or `unix://` URL.
    /// - Throws: ``RedisEndpointError`` if the URL is malformed.
    public convenience init(url: String, logger: Logger = Logger(label: "tandem.redis")) throws(RedisEndpointError) {
        self.init(configuration: Configuration(endpoint: try RedisEndpoint(url: url)), logger: logger)
    }

    /// Stops the owner thread if ``shutdown()`` was never called (without waiting for it).
    deinit {
        requestShutdown()
    }

    /// Starts the owner thread, which connects in the background and reconnects forever.
    /// Calling it again, or after ``shutdown()``, does nothing.
    public func start() { start(onConnectionStateChange: nil) }

    /// ``start()`` with a state hook given now rather than in the configuration.
    /// - Parameter onConnectionStateChange: Replaces the configuration's hook, for an owner that can only
    ///   exist once the client does (a node's doc shards use the client, and hear of its state here).
    public func start(onConnectionStateChange: (@Sendable (Bool) -> Void)?) {
        // The thread captures only Sendable pieces, never `self`, so dropping the client still runs
        // `deinit`. The handler and connection are made on the thread and stay there.
        let (shared, wake, configuration, logger) = (self.shared, self.wake, self.configuration, self.logger)
        let stateHook = onConnectionStateChange ?? configuration.onConnectionStateChange
        lifecycle.start(name: "redis-client") {
            let handler = ClientConnectionHandler(
                shared: shared,
                onConnectionStateChange: stateHook,
                commandObserver: configuration.commandObserver
            )
            RedisConnection(
                endpoint: configuration.endpoint,
                settings: configuration.connection,
                handler: handler,
                wake: wake,
                logger: logger
            ).run()
        }
    }

    /// Always `false`: this client talks to one server (``RedisClusterClient`` detects clusters).
    public var isClusterMode: Bool { false }

    /// The endpoint URL with the password masked.
    public var endpointDescription: String { "\(configuration.endpoint)" }

    /// Whether the connection is up and past its handshake. Thread-safe.
    public var isConnected: Bool {
        shared.withLockedValue { $0.connected }
    }

    /// Commands queued plus in flight. Thread-safe; updated by the owner thread once per loop iteration.
    public var pendingCommandCount: Int {
        shared.withLockedValue { $0.pending }
    }

    /// Sends one command.
    ///
    /// - Parameters:
    ///   - command: The command.
    ///   - completion: Receives the reply, including error replies as ``RedisValue/error(_:)``. It runs on
    ///     the owner thread (so it must be cheap and must not block or wait for other Redis replies), or
    ///     right away on the calling thread when the command is refused (not connected, overloaded,
    ///     shut down).
    public func send(
        _ command: RedisCommand,
        completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    ) {
        let request = ClientRequest(command: command, enqueuedAt: monotonicNanoseconds(), completion: completion)
        if let error = enqueue(request) {
            completion(.failure(error))
        }
    }

    /// Sends commands as one batch: they are queued atomically, so they go out back to back in one
    /// pipeline, and the results come back in the same order.
    ///
    /// - Parameters:
    ///   - commands: The commands, in order.
    ///   - completion: Receives one result per command, in order, once all are done. Threading as for
    ///     the single-command `send(_:completion:)`. A refused batch fails every command with the same error.
    public func send(
        _ commands: [RedisCommand],
        completion: @escaping @Sendable ([Result<RedisValue, RedisError>]) -> Void
    ) {
        guard !commands.isEmpty else {
            completion([])
            return
        }
        let collector = BatchCollector(count: commands.count, completion: completion)
        let now = monotonicNanoseconds()
        let requests = commands.enumerated().map { index, command in
            ClientRequest(command: command, enqueuedAt: now) { collector.set(index, $0) }
        }
        if let error = enqueue(requests) {
            completion(Array(repeating: .failure(error), count: commands.count))
        }
    }

    /// Stops the owner thread: fails everything queued or in flight with ``RedisError/shutdown``, frees the
    /// hiredis context and waits for the thread to end. Blocks for at most about `connectTimeout` (a
    /// connect in progress is not interrupted), so do not call it on an event loop; use the `async`
    /// variant there. Called from a completion callback it only requests the stop.
    /// Sends keyless `commands` to the server (the one "primary") as one batch.
    public func sendToEachPrimary(
        _ commands: [RedisCommand],
        completion: @escaping @Sendable ([(node: String, results: [Result<RedisValue, RedisError>])]) -> Void
    ) {
        let node = "\(configuration.endpoint.address)"
        send(commands) { results in completion([(node, results)]) }
    }

    public func shutdown() {
        requestShutdown()?.join()
    }

    /// Stops the owner thread like the blocking `shutdown()` but suspends instead of blocking while it ends.
    public func shutdown() async {
        await requestShutdown()?.join()
    }

    /// Flags the shutdown, wakes the owner thread and returns it (if it was started) for joining.
    /// The cluster client uses it to retire a node's connection without waiting on the caller's thread.
    @discardableResult
    func requestShutdown() -> OwnerThread? {
        shared.withLockedValue { $0.shutdownRequested = true }
        let thread = lifecycle.stop()
        wake.wake()
        return thread
    }

    /// Queues one request if the client can take it; returns why not otherwise. (No array per command.)
    private func enqueue(_ request: ClientRequest) -> RedisError? {
        let limit = configuration.maxPendingCommands
        let (error, wasEmpty) = shared.withLockedValue { state -> (RedisError?, Bool) in
            if state.shutdownRequested { return (.shutdown, false) }
            if !state.connected { return (.notConnected, false) }
            if state.pending + 1 > limit { return (.overloaded, false) }
            let wasEmpty = state.outbox.isEmpty
            state.outbox.append(request)
            state.pending += 1
            return (nil, wasEmpty)
        }
        // The owner thread empties the whole outbox per wake-up, so only the first request needs to wake it.
        if wasEmpty { wake.wake() }
        return error
    }

    /// Queues requests if the client can take them; returns why not otherwise.
    private func enqueue(_ requests: [ClientRequest]) -> RedisError? {
        let limit = configuration.maxPendingCommands
        let (error, wasEmpty) = shared.withLockedValue { state -> (RedisError?, Bool) in
            if state.shutdownRequested { return (.shutdown, false) }
            if !state.connected { return (.notConnected, false) }
            if state.pending + requests.count > limit { return (.overloaded, false) }
            let wasEmpty = state.outbox.isEmpty
            state.outbox.append(contentsOf: requests)
            state.pending += requests.count
            return (nil, wasEmpty)
        }
        // The owner thread empties the whole outbox per wake-up, so only the first request needs to wake it.
        if wasEmpty { wake.wake() }
        return error
    }
}

/// Gathers a batch's results (completed one by one on the owner thread) and reports them all at once.
final class BatchCollector: Sendable {
    /// Results so far and how many are missing; protected by the box's lock.
    private let state: NIOLockedValueBox<(results: [Result<RedisValue, RedisError>?], missing: Int)>
    private let completion: @Sendable ([Result<RedisValue, RedisError>]) -> Void

    init(count: Int, completion: @escaping @Sendable ([Result<RedisValue, RedisError>]) -> Void) {
        state = NIOLockedValueBox((Array(repeating: nil, count: count), count))
        self.completion = completion
    }

    func set(_ index: Int, _ result: Result<RedisValue, RedisError>) {
        let finished = state.withLockedValue { state -> [Result<RedisValue, RedisError>]? in
            state.results[index] = result
            state.missing -= 1
            return state.missing == 0 ? state.results.map { $0! } : nil
        }
        if let finished { completion(finished) }
    }
}
