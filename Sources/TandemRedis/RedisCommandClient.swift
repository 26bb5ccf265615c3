import NIOCore

/// What Tandem programs against to run Redis commands, whether Redis is one server
/// (``RedisClient``) or a cluster (``RedisClusterClient``, which also serves a single server it
/// detects as such).
///
/// Contract shared by every implementation:
/// - Nothing blocks the caller: commands are queued for an owner thread, and a command that cannot be
///   taken (not connected, overloaded, shut down) fails at once, on the calling thread.
/// - Every accepted command completes exactly once, with a reply or a ``RedisError``, within a bound
///   (the connection's command timeout, plus the cluster retry window in a cluster); none hangs.
/// - Callback completions run on an owner thread and must be cheap; futures complete on the event
///   loop they were created for; `async` variants resume the caller.
/// - Commands that may have run are never retried (``RedisError/connectionLost``,
///   ``RedisError/timeout``).
public protocol RedisCommandClient: AnyObject, Sendable {
    /// Starts connecting in the background; calling it again, or after `shutdown()`, does nothing.
    func start()

    /// Whether commands can be served right now (for a cluster: every slot has a connected primary).
    var isConnected: Bool { get }

    /// Whether commands on `key` can be served right now: for a cluster, whether its slot's primary has a
    /// live connection (while one shard fails over, the others' keys stay available); otherwise
    /// `isConnected`.
    func isAvailable(forKey key: String) -> Bool

    /// Commands accepted and not completed yet.
    var pendingCommandCount: Int { get }

    /// Whether this client talks to a Redis Cluster. Decides how to publish: cluster mode uses sharded
    /// pub/sub (`SPUBLISH`/`SSUBSCRIBE`), a single server `PUBLISH`/`SUBSCRIBE`. `false` until known.
    var isClusterMode: Bool { get }

    /// Where the client connects, for logs and status pages (passwords masked).
    var endpointDescription: String { get }

    /// Sends one command; `completion` receives the reply (error replies as ``RedisValue/error(_:)``).
    func send(_ command: RedisCommand, completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void)

    /// Sends commands back to back on one connection; `completion` receives one result per command, in
    /// order. In a cluster every keyed command of the batch must be in one slot
    /// (``RedisError/crossSlot`` otherwise).
    func send(_ commands: [RedisCommand], completion: @escaping @Sendable ([Result<RedisValue, RedisError>]) -> Void)

    /// Runs a script with `EVALSHA`, falling back to `EVAL` on `NOSCRIPT` (on the node that said so).
    /// In a cluster the keys must share one slot (``RedisError/crossSlot`` otherwise).
    func evalScript(
        _ script: RedisScript,
        keys: [any RedisArgument],
        args: [any RedisArgument],
        completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    )

    /// Sends keyless `commands` (`INFO`) as one batch to every primary of a cluster, or to the one
    /// server, and completes once with each node's results sorted by node name (for per-shard figures;
    /// nodes without a connection are left out, nothing is redirected or retried).
    func sendToEachPrimary(
        _ commands: [RedisCommand],
        completion: @escaping @Sendable ([(node: String, results: [Result<RedisValue, RedisError>])]) -> Void
    )

    /// Stops: fails what is queued or in flight with ``RedisError/shutdown`` and waits for the owner
    /// threads. Blocks briefly; do not call it on an event loop (use the `async` variant there).
    func shutdown()

    /// Stops like `shutdown()`, suspending instead of blocking.
    func shutdown() async
}

extension Result where Success == RedisValue, Failure == RedisError {
    /// Turns an error reply into a failure, as the future and async APIs promise.
    var failingOnErrorReply: Result<RedisValue, RedisError> {
        if case .success(.error(let message)) = self { return .failure(.server(message)) }
        return self
    }
}

extension RedisCommandClient {
    /// One server: every key is available exactly when the connection is up.
    public func isAvailable(forKey key: String) -> Bool { isConnected }

    /// The command that publishes `payload` on `channel` the way this client's subscribers listen:
    /// `SPUBLISH` in cluster mode, `PUBLISH` otherwise. Inside a Lua script, use
    /// ``publishCommandName`` (on Redis 7.0 `redis.call('SPUBLISH', …)` works from a script that runs
    /// on the channel's primary, e.g. one whose keys share the channel's hash tag).
    public func publishCommand(channel: String, payload: some RedisArgument) -> RedisCommand {
        RedisCommand(publishCommandName, channel, payload)
    }

    /// `SPUBLISH` in cluster mode, `PUBLISH` otherwise.
    public var publishCommandName: String { isClusterMode ? "SPUBLISH" : "PUBLISH" }

    /// Sends one command; the future completes on `eventLoop`.
    ///
    /// An error reply fails the future with ``RedisError/server(_:)``; other failures are the other
    /// ``RedisError`` cases. Never blocks the event loop.
    public func send(_ command: RedisCommand, on eventLoop: any EventLoop) -> EventLoopFuture<RedisValue> {
        let promise = eventLoop.makePromise(of: RedisValue.self)
        send(command) { result in
            // Completing a promise from the owner thread is safe: NIO hops to the promise's loop.
            promise.completeWith(result.failingOnErrorReply.mapError { $0 })
        }
        return promise.futureResult
    }

    /// Sends a batch (see `send(_:completion:)` for `[RedisCommand]`); the future completes on `eventLoop`.
    ///
    /// Error replies stay in the array as ``RedisValue/error(_:)`` values, since the other commands of
    /// the batch still ran; the future fails only if a command got no reply (connection lost, timeout,
    /// refused), with the first such error.
    public func send(_ commands: [RedisCommand], on eventLoop: any EventLoop) -> EventLoopFuture<[RedisValue]> {
        let promise = eventLoop.makePromise(of: [RedisValue].self)
        send(commands) { results in
            promise.completeWith(collectBatch(results).mapError { $0 })
        }
        return promise.futureResult
    }

    /// Sends one command and returns its reply.
    /// - Throws: ``RedisError``; an error reply is thrown as ``RedisError/server(_:)``.
    ///
    /// Cancelling the task does not withdraw a command that was already queued.
    public func send(_ command: RedisCommand) async throws -> RedisValue {
        try await withCheckedThrowingContinuation { continuation in
            send(command) { result in
                continuation.resume(with: result.failingOnErrorReply)
            }
        }
    }

    /// Sends a batch and returns the replies in order; error replies stay in the array as
    /// ``RedisValue/error(_:)`` values.
    /// - Throws: The first ``RedisError`` of a command that got no reply.
    public func send(_ commands: [RedisCommand]) async throws -> [RedisValue] {
        try await withCheckedThrowingContinuation { continuation in
            send(commands) { results in
                continuation.resume(with: collectBatch(results))
            }
        }
    }

    /// Runs a Lua script (see the callback variant); the future completes on `eventLoop` and fails with
    /// ``RedisError/server(_:)`` on an error reply.
    public func evalScript(
        _ script: RedisScript,
        keys: [any RedisArgument] = [],
        args: [any RedisArgument] = [],
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<RedisValue> {
        let promise = eventLoop.makePromise(of: RedisValue.self)
        evalScript(script, keys: keys, args: args) { result in
            promise.completeWith(result.failingOnErrorReply.mapError { $0 })
        }
        return promise.futureResult
    }

    /// Runs a Lua script (see the callback variant) and returns its result.
    /// - Throws: ``RedisError``; an error reply is thrown as ``RedisError/server(_:)``.
    public func evalScript(
        _ script: RedisScript,
        keys: [any RedisArgument] = [],
        args: [any RedisArgument] = []
    ) async throws -> RedisValue {
        try await withCheckedThrowingContinuation { continuation in
            evalScript(script, keys: keys, args: args) { result in
                continuation.resume(with: result.failingOnErrorReply)
            }
        }
    }
}

/// The batch results as values, or the first error of a command that got no reply.
private func collectBatch(_ results: [Result<RedisValue, RedisError>]) -> Result<[RedisValue], RedisError> {
    var values: [RedisValue] = []
    values.reserveCapacity(results.count)
    for result in results {
        switch result {
        case .success(let value): values.append(value)
        case .failure(let error): return .failure(error)
        }
    }
    return .success(values)
}
