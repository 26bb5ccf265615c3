import NIOCore

extension Result where Success == RedisValue, Failure == RedisError {
    /// Turns an error reply into a failure, as the future and async APIs promise.
    var failingOnErrorReply: Result<RedisValue, RedisError> {
        if case .success(.error(let message)) = self { return .failure(.server(message)) }
        return self
    }
}

extension RedisClient {
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
            promise.completeWith(Self.collect(results).mapError { $0 })
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
                continuation.resume(with: Self.collect(results))
            }
        }
    }

    private static func collect(_ results: [Result<RedisValue, RedisError>]) -> Result<[RedisValue], RedisError> {
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
}
