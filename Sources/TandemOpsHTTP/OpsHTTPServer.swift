import CMicroHTTPD
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The ops-plane HTTP server (metrics, health, status API, status page), a
/// thin owner of one libmicrohttpd daemon.
///
/// Every request is answered by calling `handler` on a libmicrohttpd thread;
/// the handler must be thread-safe and may block briefly (e.g. on a Redis
/// read) without delaying other requests. It must not call `stop()` on its
/// own server: `stop()` waits for running handlers, so that would deadlock.
///
/// ```swift
/// let server = OpsHTTPServer(configuration: .init(port: 9090), logger: logger) { request in
///     request.path == "/healthz" ? .text("ok\n") : .notFound()
/// }
/// try server.start()
/// defer { server.stop() }
/// ```
public final class OpsHTTPServer: Sendable {
    /// The configuration given at init; `start()` validates it.
    public let configuration: Configuration
    private let logger: Logger
    private let handler: @Sendable (OpsRequest) -> OpsResponse

    /// Held for the whole of `start()` and `stop()`, across
    /// `MHD_start_daemon` / `MHD_stop_daemon`, so a `stop()` that returns
    /// early because another thread is already stopping still returns only
    /// once the daemon is really gone. Never taken on a libmicrohttpd thread.
    private let lifecycleLock = NIOLock()
    /// The current daemon, if any. Only ever held briefly, so `boundPort`
    /// never waits for a `stop()` in progress.
    private let state = NIOLockedValueBox<State>(.idle(lastPort: 0))

    private enum State: Sendable {
        case idle(lastPort: Int)
        case running(RunningDaemon)
    }

    /// A started daemon and the context retained for its callbacks.
    ///
    /// `@unchecked Sendable` because it holds raw pointers, which Swift
    /// cannot check: it is immutable, lives only inside `state`'s lock, and
    /// the only thing done with the pointers outside it — `MHD_stop_daemon`
    /// and the balancing `release()` — happens once, under `lifecycleLock`.
    private struct RunningDaemon: @unchecked Sendable {
        let daemon: OpaquePointer
        let context: Unmanaged<ServerContext>
        let port: Int
    }

    /// - Parameters:
    ///   - configuration: where to listen and what to accept.
    ///   - logger: receives lifecycle messages, libmicrohttpd's own error
    ///     log and problems with handler responses.
    ///   - handler: answers one request; called concurrently from
    ///     libmicrohttpd's connection threads.
    public init(
        configuration: Configuration,
        logger: Logger,
        handler: @escaping @Sendable (OpsRequest) -> OpsResponse
    ) {
        self.configuration = configuration
        self.logger = logger
        self.handler = handler
    }

    deinit {
        stop()
    }

    /// The port actually bound by the running (or most recently running)
    /// daemon — the kernel's choice when `configuration.port` is 0. Zero
    /// before the first successful `start()`.
    public var boundPort: Int {
        state.withLockedValue { state in
            switch state {
            case .idle(let lastPort): return lastPort
            case .running(let running): return running.port
            }
        }
    }

    /// The live-request counter of the running daemon, for leak checks in
    /// tests; it stays valid (and keeps counting frees) after `stop()`.
    var liveRequestCounter: LiveRequestCounter? {
        state.withLockedValue { state in
            guard case .running(let running) = state else { return nil }
            return running.context.takeUnretainedValue().liveRequests
        }
    }

    /// Whether the daemon is currently started.
    public var isRunning: Bool {
        state.withLockedValue { state in
            if case .running = state { return true }
            return false
        }
    }

    /// Binds and starts serving. May be called again after `stop()`.
    ///
    /// - Throws: `OpsHTTPServerError` — `.startFailed` (with libmicrohttpd's
    ///   reason, e.g. the port is in use), `.invalidHost`,
    ///   `.invalidConfiguration`, or `.alreadyRunning`.
    public func start() throws {
        try lifecycleLock.withLock {
            if isRunning { throw OpsHTTPServerError.alreadyRunning }
            let running = try startDaemon()
            state.withLockedValue { $0 = .running(running) }
            logger.info(
                "ops HTTP listening",
                metadata: ["host": "\(configuration.host)", "port": "\(running.port)"])
        }
    }

    /// Stops serving. When it returns, the listening socket is closed (the
    /// port can be bound again) and no handler is running or will run;
    /// handlers already running are waited for. Idempotent and safe to call
    /// from several threads, but not from inside a handler of this server.
    public func stop() {
        lifecycleLock.withLock {
            let running: RunningDaemon? = state.withLockedValue { state in
                guard case .running(let running) = state else { return nil }
                state = .idle(lastPort: running.port)
                return running
            }
            guard let running else { return }
            // Closes the listen socket, shuts down every connection and joins
            // all libmicrohttpd threads; afterwards no callback can run, so
            // the context retained in startDaemon() can be released.
            MHD_stop_daemon(running.daemon)
            running.context.release()
            logger.info("ops HTTP stopped", metadata: ["port": "\(running.port)"])
        }
    }

    /// Thread model: one thread per connection (plus libmicrohttpd's
    /// listener thread, which only accepts). Handlers may block for a few
    /// milliseconds — a Redis read behind `/readyz`, a big metrics render —
    /// and with a small thread pool every connection sharing that pool
    /// thread would stall behind them; per-connection threads isolate them.
    /// The ops plane sees a handful of connections (scrapers, probes, a
    /// status page), and `maxConnections` caps the threads, so the usual cost
    /// of this model does not matter here. Thread-per-connection rules out
    /// epoll, hence poll().
    private var daemonFlags: UInt32 {
        MHD_USE_INTERNAL_POLLING_THREAD.rawValue
            | MHD_USE_THREAD_PER_CONNECTION.rawValue
            | MHD_USE_POLL.rawValue
            | MHD_USE_ERROR_LOG.rawValue
    }

    /// Validates the configuration, starts the daemon and returns it. The
    /// context is retained here (`passRetained`) for libmicrohttpd's
    /// callbacks; `stop()` releases it after `MHD_stop_daemon`, or this
    /// function does if the daemon never started.
    private func startDaemon() throws -> RunningDaemon {
        let configuration = self.configuration
        guard (0...65535).contains(configuration.port) else {
            throw OpsHTTPServerError.invalidConfiguration("port \(configuration.port) not in 0...65535")
        }
        guard configuration.maxConnections >= 1, configuration.maxConnections <= Int(UInt32.max) else {
            throw OpsHTTPServerError.invalidConfiguration("maxConnections must be at least 1")
        }
        guard configuration.connectionTimeoutSeconds >= 0, configuration.connectionTimeoutSeconds <= Int(UInt32.max) else {
            throw OpsHTTPServerError.invalidConfiguration("connectionTimeoutSeconds must not be negative")
        }
        guard configuration.maxRequestBodyBytes >= 0 else {
            throw OpsHTTPServerError.invalidConfiguration("maxRequestBodyBytes must not be negative")
        }
        guard let address = ListenAddress(host: configuration.host, port: configuration.port) else {
            throw OpsHTTPServerError.invalidHost(configuration.host)
        }

        var flags = daemonFlags
        if address.family == .ipv6 {
            // `::` serves IPv4 too (v4-mapped); a specific IPv6 address only itself.
            flags |= address.isIPv6Unspecified ? MHD_USE_DUAL_STACK.rawValue : MHD_USE_IPv6.rawValue
        }

        let context = Unmanaged.passRetained(
            ServerContext(handler: handler, logger: logger, maxRequestBodyBytes: configuration.maxRequestBodyBytes))
        let contextPointer = context.toOpaque()

        let daemon: OpaquePointer? = address.withSockAddrPointer { sockAddr in
            var options: [MHD_OptionItem] = [
                // First, so that messages from startup (bind errors) are routed too.
                tandem_mhd_option_external_logger(mhdLog, contextPointer),
                MHD_OptionItem(option: .SOCK_ADDR, value: 0, ptr_value: sockAddr),
                MHD_OptionItem(option: .CONNECTION_LIMIT, value: configuration.maxConnections, ptr_value: nil),
                MHD_OptionItem(option: .CONNECTION_TIMEOUT, value: configuration.connectionTimeoutSeconds, ptr_value: nil),
                tandem_mhd_option_notify_completed(mhdRequestCompleted, nil),
                MHD_OptionItem(option: .END, value: 0, ptr_value: nil),
            ]
            return options.withUnsafeMutableBufferPointer { items in
                tandem_mhd_start_daemon(
                    flags, UInt16(configuration.port), mhdAccessHandler, contextPointer, items.baseAddress)
            }
        }

        guard let daemon else {
            let systemError = errno
            let messages = context.takeUnretainedValue().libraryMessages
            context.release()  // the daemon never started: no callback holds it
            let reason = messages.isEmpty
                ? "MHD_start_daemon failed (\(String(cString: strerror(systemError))))"
                : messages.joined(separator: "; ")
            throw OpsHTTPServerError.startFailed(host: configuration.host, port: configuration.port, reason: reason)
        }
        let port = Int(tandem_mhd_daemon_bind_port(daemon))
        return RunningDaemon(daemon: daemon, context: context, port: port == 0 ? configuration.port : port)
    }
}
