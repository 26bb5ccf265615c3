import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The owner-thread core shared by ``RedisClient`` and ``RedisSubscriber``: one hiredis connection,
/// driven by a `poll()` loop on the Redis socket and a wake pipe.
///
/// Threading: an instance is created, run and dropped on its dedicated owner thread; nothing here is
/// touched by any other thread, which is why it needs no lock and is not `Sendable`. Callers talk to it
/// only through the handler's lock-protected queue plus ``WakePipe/wake()``.
///
/// Life of a connection: `disconnected` → (connect, blocking ≤ connectTimeout) → `handshaking`
/// (`AUTH`, `SELECT`, `PING` pipelined, bounded by connectTimeout) → `ready` → any failure →
/// `disconnected` with an exponential, jittered retry delay.
final class RedisConnection<Handler: RedisConnectionHandler> {
    private enum Phase {
        case disconnected(retryAt: UInt64)
        case handshaking
        case ready
    }

    /// Why a reply is expected, in the order the commands were written.
    private enum Expectation {
        case handshake(isLast: Bool)
        case healthCheck
        case request(Handler.Request)
    }

    private struct Outstanding {
        var expectation: Expectation
        /// Monotonic time after which a missing reply means the connection is broken.
        var deadline: UInt64
    }

    private let endpoint: RedisEndpoint
    private let handler: Handler
    private let wake: WakePipe
    private var logger: Logger
    private let connectTimeout: UInt64
    private let commandTimeout: UInt64
    private let healthCheckInterval: UInt64
    private let failureLogInterval: Int

    private var context: HiredisContext?
    private var phase = Phase.disconnected(retryAt: 0)
    private var outstanding = CircularBuffer<Outstanding>(initialCapacity: 64)
    /// hiredis's output buffer holds bytes the socket has not taken yet.
    private var outputPending = false
    /// An append into hiredis's buffer failed; the connection is dropped once the current batch is in.
    private var appendFailure: HiredisFailure?
    /// Last time a command was written or a reply arrived; an idle connection pings after this.
    private var lastActivity: UInt64 = 0
    private var backoff: Backoff
    /// Connect attempts since the connection was last ready, for throttled logging.
    private var failedAttempts = 0
    /// The last `poll` saw the wake pipe readable (or none ran yet): drain it before taking work. Without
    /// a wake-up there is nothing to drain, and skipping it saves a `read` per loop iteration.
    private var wakeReadable = true

    init(
        endpoint: RedisEndpoint,
        settings: RedisConnectionSettings,
        handler: Handler,
        wake: WakePipe,
        logger: Logger
    ) {
        self.endpoint = endpoint
        self.handler = handler
        self.wake = wake
        self.logger = logger
        self.logger[metadataKey: "redis.endpoint"] = "\(endpoint)"
        self.connectTimeout = UInt64(max(1, settings.connectTimeout.nanoseconds))
        self.commandTimeout = UInt64(max(1, settings.commandTimeout.nanoseconds))
        self.healthCheckInterval = UInt64(max(1, settings.healthCheckInterval.nanoseconds))
        self.failureLogInterval = max(1, settings.failureLogInterval)
        self.backoff = Backoff(
            initialNanoseconds: settings.reconnectInitialDelay.nanoseconds,
            maxNanoseconds: settings.reconnectMaxDelay.nanoseconds
        )
    }

    /// The owner thread's whole life: loops until the handler reports a shutdown request.
    func run() {
        Self.blockSIGPIPE()
        logger.info("Redis connection starting")
        while true {
            // Drain before taking work: a wake-up written after the take then survives to the next poll.
            if wakeReadable {
                wake.drain()
                wakeReadable = false
            }
            let shutdownRequested = handler.takeWork { command, request in
                append(command, .request(request), timeout: commandTimeout)
            }
            if shutdownRequested {
                finish()
                return
            }
            switch phase {
            case .disconnected(let retryAt):
                let now = monotonicNanoseconds()
                if now >= retryAt {
                    connect()
                } else {
                    waitForWake(nanoseconds: retryAt - now)
                }
            case .handshaking, .ready:
                service()
            }
        }
    }

    // MARK: - Connecting

    private func connect() {
        do {
            let newContext = try HiredisContext.connect(to: endpoint.address, timeout: Int64(connectTimeout))
            context = newContext
            phase = .handshaking
            outputPending = false
            appendFailure = nil
            if let password = endpoint.password {
                let auth =
                    endpoint.username.map { RedisCommand("AUTH", $0, password) } ?? RedisCommand("AUTH", password)
                append(auth, .handshake(isLast: false), timeout: connectTimeout)
            }
            if endpoint.database != 0 {
                append(RedisCommand("SELECT", endpoint.database), .handshake(isLast: false), timeout: connectTimeout)
            }
            // Always PING: a connect can succeed against a stopped server (the kernel completes it from
            // the listen backlog), so only an answer proves the server is alive.
            append(RedisCommand("PING"), .handshake(isLast: true), timeout: connectTimeout)
        } catch {
            connectionFailed(reason: error.description)
        }
    }

    private func becomeReady() {
        phase = .ready
        if failedAttempts > 0 {
            logger.info("Redis connected", metadata: ["redis.failed_attempts": "\(failedAttempts)"])
        } else {
            logger.info("Redis connected")
        }
        failedAttempts = 0
        backoff.reset()
        handler.connectionReady { command, request in
            append(command, .request(request), timeout: commandTimeout)
        }
    }

    /// A connect or handshake failed: schedule the next attempt and log without flooding.
    private func connectionFailed(reason: String) {
        failedAttempts += 1
        let delay = backoff.nextDelay()
        phase = .disconnected(retryAt: monotonicNanoseconds() + UInt64(delay))
        let metadata: Logger.Metadata = [
            "redis.attempt": "\(failedAttempts)",
            "redis.error": "\(reason)",
            "redis.retry_in_ms": "\(delay / 1_000_000)",
        ]
        if failedAttempts == 1 || failedAttempts % failureLogInterval == 0 {
            logger.warning("Redis connect failed; retrying", metadata: metadata)
        } else {
            logger.debug("Redis connect failed; retrying", metadata: metadata)
        }
    }

    // MARK: - Serving a live connection

    /// One iteration on a live connection: health check, write, poll, read, check the deadline.
    private func service() {
        guard let context else { return }
        let now = monotonicNanoseconds()
        if case .ready = phase, outstanding.isEmpty, now >= lastActivity &+ healthCheckInterval {
            append(RedisCommand("PING"), .healthCheck, timeout: commandTimeout)
        }
        if let failure = appendFailure {
            drop(.connectionLost, reason: "cannot queue command: \(failure)")
            return
        }
        if outputPending && !flush() { return }

        // A tuple, not an array: no allocation per iteration.
        var fds = (
            pollfd(fd: context.fileDescriptor, events: Int16(POLLIN) | (outputPending ? Int16(POLLOUT) : 0), revents: 0),
            pollfd(fd: wake.readEnd, events: Int16(POLLIN), revents: 0)
        )
        let timeout = pollTimeoutMilliseconds(now: now)
        let result = withUnsafeMutableBytes(of: &fds) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, timeout) }
        if result < 0 && errno != EINTR {
            drop(.connectionLost, reason: "poll failed: errno \(errno)")
            return
        }
        wakeReadable = result < 0 || fds.1.revents != 0
        let events = Int32(fds.0.revents)
        if events & Int32(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 {
            readReplies()
        }
        if self.context != nil, outputPending, events & Int32(POLLOUT) != 0 {
            _ = flush()
        }
        if self.context != nil, let oldest = outstanding.first, monotonicNanoseconds() >= oldest.deadline {
            drop(.timeout, reason: "no reply within the timeout")
        }
    }

    /// Serializes a command into hiredis's output buffer and records which reply it expects.
    /// Nothing is written yet: everything appended in one iteration goes out in one `write`.
    private func append(_ command: RedisCommand, _ expectation: Expectation, timeout: UInt64) {
        let now = monotonicNanoseconds()
        if let context, appendFailure == nil {
            do {
                try context.append(command)
            } catch {
                appendFailure = error
            }
        } else if appendFailure == nil {
            appendFailure = HiredisFailure(description: "no connection")
        }
        // Recorded even when the append failed, so the request is failed with the others on drop.
        outstanding.append(Outstanding(expectation: expectation, deadline: now + timeout))
        outputPending = true
        lastActivity = now
    }

    /// Writes pending output; returns `false` if the connection broke.
    private func flush() -> Bool {
        guard let context else { return false }
        do {
            outputPending = try !context.write()
            return true
        } catch {
            drop(.connectionLost, reason: "write failed: \(error)")
            return false
        }
    }

    private func readReplies() {
        guard let context else { return }
        do {
            try context.read()
            // `dispatch` may drop the connection, which ends this loop.
            while let current = self.context {
                // A pub/sub message push read in full goes to the handler without hiredis's reply tree.
                if let type = handler.messagePushType, let message = current.nextMessage(type: type) {
                    lastActivity = monotonicNanoseconds()
                    handler.handleMessage(message)
                    continue
                }
                guard let reply = try current.nextReply() else { break }
                lastActivity = monotonicNanoseconds()
                dispatch(reply)
            }
            handler.readBurstEnded()
        } catch {
            drop(.connectionLost, reason: "read failed: \(error)")
        }
    }

    /// Matches a reply to the oldest outstanding command (Redis answers strictly in order).
    private func dispatch(_ reply: RedisValue) {
        if Handler.receivesPushes {
            // Only for handlers that can get pushes: copying the oldest request out costs a copy of its
            // payload per reply (a few hundred instructions for a script call in the callgrind profile).
            var oldestRequest: Handler.Request?
            if case .request(let request)? = outstanding.first?.expectation { oldestRequest = request }
            if handler.handlePush(reply, oldest: oldestRequest) { return }
        }
        guard let oldest = outstanding.popFirst() else {
            drop(.connectionLost, reason: "reply with no command outstanding")
            return
        }
        switch oldest.expectation {
        case .request(let request):
            let completed = handler.complete(request, with: reply) { command, request in
                append(command, .request(request), timeout: commandTimeout)
            }
            if !completed {
                drop(.connectionLost, reason: "unexpected reply \(reply)")
            }
        case .healthCheck:
            break
        case .handshake(let isLast):
            if case .error(let message) = reply {
                drop(.connectionLost, reason: "handshake refused: \(message)")
            } else if isLast {
                // Anything but +PONG (e.g. our own PING echoed by a socket that connected to itself)
                // means this is not a working Redis.
                if reply == .simpleString("PONG") {
                    becomeReady()
                } else {
                    drop(.connectionLost, reason: "unexpected handshake reply \(reply)")
                }
            }
        }
    }

    // MARK: - Closing

    /// Closes the connection, fails everything outstanding with `error`, and schedules a reconnect.
    private func drop(_ error: RedisError, reason: String) {
        let wasReady: Bool
        if case .ready = phase { wasReady = true } else { wasReady = false }
        closeAndFailOutstanding(with: error)
        if wasReady {
            logger.warning(
                "Redis connection lost; reconnecting",
                metadata: ["redis.error": "\(reason)", "redis.failure": "\(error)"]
            )
            let delay = backoff.nextDelay()
            phase = .disconnected(retryAt: monotonicNanoseconds() + UInt64(delay))
        } else {
            connectionFailed(reason: reason)
        }
    }

    /// Shutdown: close, then fail everything outstanding and queued with `.shutdown`.
    private func finish() {
        closeAndFailOutstanding(with: .shutdown)
        logger.info("Redis connection stopped")
    }

    private func closeAndFailOutstanding(with error: RedisError) {
        context?.close()
        context = nil
        outputPending = false
        appendFailure = nil
        var requests: [Handler.Request] = []
        requests.reserveCapacity(outstanding.count)
        while let entry = outstanding.popFirst() {
            if case .request(let request) = entry.expectation { requests.append(request) }
        }
        handler.connectionClosed(failing: requests, with: error)
    }

    // MARK: - Waiting

    /// Sleeps until a wake-up or `nanoseconds` pass (while disconnected, only the wake pipe matters).
    private func waitForWake(nanoseconds: UInt64) {
        var fd = pollfd(fd: wake.readEnd, events: Int16(POLLIN), revents: 0)
        let result = poll(&fd, 1, Self.milliseconds(roundingUp: nanoseconds))
        wakeReadable = result < 0 || fd.revents != 0
    }

    /// Sleep until the oldest reply is due, the next health check, or at most a second.
    private func pollTimeoutMilliseconds(now: UInt64) -> Int32 {
        var wait: UInt64 = 1_000_000_000
        if let oldest = outstanding.first {
            wait = min(wait, oldest.deadline > now ? oldest.deadline - now : 0)
        } else if case .ready = phase {
            let due = lastActivity &+ healthCheckInterval
            wait = min(wait, due > now ? due - now : 0)
        }
        return Self.milliseconds(roundingUp: wait)
    }

    /// Rounds up so a deadline 0.3 ms away does not turn into a busy loop of zero-timeout polls.
    private static func milliseconds(roundingUp nanoseconds: UInt64) -> Int32 {
        Int32(min((nanoseconds + 999_999) / 1_000_000, UInt64(Int32.max)))
    }

    /// hiredis writes with `write(2)`, which raises SIGPIPE (killing the process by default) when the
    /// server has gone. Blocking it on this thread only turns that into an EPIPE error without
    /// changing the process-wide disposition that the rest of the program may rely on.
    private static func blockSIGPIPE() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}
