import NIOConcurrencyHelpers

/// Script calls of one client, kept in the order they were made across `NOSCRIPT` retries.
///
/// Why: a call answered `NOSCRIPT` is sent again as `EVAL` when its reply arrives, and by then later
/// calls may be in Redis already. Those that were sent before the reply also find the script missing
/// (nothing loaded it on this connection in between) and are retried in the same order, behind it. But a
/// call made after the first retry went out would find the script loaded by it and run at once — ahead
/// of an earlier call still waiting for its own retry (with group commits pipelined per doc, a batch
/// would run before the one it was decided behind, and lose its race for nothing). So from the first
/// `NOSCRIPT` until every script call sent before it has completed, new calls are held here, then sent
/// in the order they were made.
///
/// (Calls already in Redis when a script is flushed cannot be reordered back; another connection loading
/// the script between two of them is the one case this cannot cover. A restart or reconnect is the
/// common cause, and it hits the first call after it: nothing is behind it yet.)
struct ScriptOrder {
    /// Script calls sent and not completed (retries included).
    var inFlight = 0
    /// A `NOSCRIPT` was answered and calls sent before it are still out: new calls wait in `held`.
    var recovering = false
    var held: [@Sendable () -> Void] = []
}

extension RedisClient {
    /// Runs a Lua script with `EVALSHA`. If the server does not have it cached (a `NOSCRIPT` error
    /// reply, e.g. after a restart or `SCRIPT FLUSH`), this call is sent again once as `EVAL` with the
    /// source, which also caches it for next time; script calls made meanwhile wait for the retries, so
    /// they still run in the order they were made (see `ScriptOrder`).
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
        let call: @Sendable () -> Void = { [self] in sendScript(script, keys: keys, args: args, completion: completion) }
        let now = scriptOrder.withLockedValue { order -> Bool in
            if order.recovering {
                order.held.append(call)
                return false
            }
            order.inFlight += 1
            return true
        }
        if now { call() }
    }

    /// Sends one script call (counted in `inFlight` already) and its retry, if it needs one.
    private func sendScript(
        _ script: RedisScript, keys: [any RedisArgument], args: [any RedisArgument],
        completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    ) {
        send(RedisCommand(script: "EVALSHA", script.sha1, keys: keys, args: args)) { [self] result in
            if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") {
                scriptOrder.withLockedValue { $0.recovering = true }
                // On the owner thread: this only queues the retry and wakes the loop, it never waits.
                self.send(RedisCommand(script: "EVAL", script.source, keys: keys, args: args)) { [self] retried in
                    completion(retried)
                    scriptCompleted()
                }
            } else {
                completion(result)
                scriptCompleted()
            }
        }
    }

    /// A script call completed: once none sent before a `NOSCRIPT` is out, the held calls go, in order.
    private func scriptCompleted() {
        let release = scriptOrder.withLockedValue { order -> Bool in
            order.inFlight -= 1
            return order.recovering && order.inFlight == 0
        }
        guard release else { return }
        // One at a time with `recovering` still set, so that a call made meanwhile is held behind the rest;
        // a released call that meets `NOSCRIPT` again starts the next round the same way.
        while let next = scriptOrder.withLockedValue({ order -> (@Sendable () -> Void)? in
            guard !order.held.isEmpty else {
                order.recovering = false
                return nil
            }
            order.inFlight += 1
            return order.held.removeFirst()
        }) {
            next()
        }
    }
}
