extension RedisClient {
    /// Runs a Lua script with `EVALSHA`.
    ///
    /// The connection loads the script (`SCRIPT LOAD`) before its first call on it, and loads every
    /// script the client has run again whenever it reconnects, before any other command; so a restart or
    /// failover of Redis costs no failed call. If the server still answers `NOSCRIPT` (its cache was
    /// flushed under the live connection: `SCRIPT FLUSH`), the call is sent again once as `EVAL` with the
    /// source, which also caches it; script calls made meanwhile wait for the retries, so they still run
    /// in the order they were made (see `ScriptRecovery`).
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
        // Everything script-specific happens on the owner thread (ClientConnectionHandler): no lock and
        // no closure of its own here.
        send(RedisCommand(evalSHA: script, keys: keys, args: args), completion: completion)
    }
}
