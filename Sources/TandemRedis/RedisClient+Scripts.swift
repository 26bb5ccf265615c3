extension RedisClient {
    /// Runs a Lua script with `EVALSHA`. If the server does not have it cached (a `NOSCRIPT` error
    /// reply, e.g. after a restart or `SCRIPT FLUSH`), this call is sent again once as `EVAL` with the
    /// source, which also caches it for next time.
    ///
    /// - Parameters:
    ///   - script: The script.
    ///   - keys: The keys it touches (`KEYS[1]`...), counted into `numkeys`.
    ///   - args: Further arguments (`ARGV[1]`...).
    ///   - completion: As for the single-command `send(_:completion:)`; runs on the owner thread.
    public func evalScript(
        _ script: RedisScript,
        keys: [any RedisArgument] = [],
        args: [any RedisArgument] = [],
        completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    ) {
        send(RedisCommand(script: "EVALSHA", script.sha1, keys: keys, args: args)) { [self] result in
            if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") {
                // On the owner thread: this only queues the retry and wakes the loop, it never waits.
                self.send(RedisCommand(script: "EVAL", script.source, keys: keys, args: args), completion: completion)
            } else {
                completion(result)
            }
        }
    }
}
