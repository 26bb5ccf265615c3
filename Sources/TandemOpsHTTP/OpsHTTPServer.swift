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
/// A few polling threads serve every connection, so an idle
/// or slow connection costs a socket and a little memory, never a thread;
/// `ConnectionAdmission` bounds connections in all and per client address and
/// evicts the idle ones first, so a flood of idle connections cannot keep a
/// health check out. Handlers run on the polling threads and must not block:
/// slow work is answered with `OpsReply.deferred`.
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
    private let handler: @Sendable (OpsRequest) -> OpsReply
    private let observe: @Sendable (OpsHTTPEvent) -> Void

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
    private struct RunningDaemon: @unchecked Sendable {  // @unchecked: raw C pointers, owned by the server and freed once on stop
        let daemon: OpaquePointer
        let context: Unmanaged<ServerContext>
        let port: Int
    }

    /// - Parameters:
    ///   - configuration: where to listen and what to accept.
    ///   - logger: receives lifecycle messages, libmicrohttpd's own error
    ///     log and problems with handler responses.
    ///   - observe: receives `OpsHTTPEvent`s (for metrics); called on the
    ///     server's threads, must not block.
    ///   - handler: answers one request, now or deferred; called concurrently
    ///     from the polling threads, must not block.
    public init(
        configuration: Configuration,
        logger: Logger,
        observe: @escaping @Sendable (OpsHTTPEvent) -> Void = { _ in },
        replying handler: @escaping @Sendable (OpsRequest) -> OpsReply
    ) {
        self.configuration = configuration
        self.logger = logger
        self.observe = observe
        self.handler = handler
    }

    /// A server whose handler always answers at once.
    public convenience init(
        configuration: Configuration,
        logger: Logger,
        observe: @escaping @Sendable (OpsHTTPEvent) -> Void = { _ in },
        handler: @escaping @Sendable (OpsRequest) -> OpsResponse
    ) {
        self.init(configuration: configuration, logger: logger, observe: observe) { request in .response(handler(request)) }
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
        runningContext?.liveRequests
    }

    /// The running daemon's context (tests look at its connection counts).
    var runningContext: ServerContext? {
        state.withLockedValue { state in
            guard case .running(let running) = state else { return nil }
            return running.context.takeUnretainedValue()
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
    /// handlers already running are waited for, and requests waiting for a
    /// deferred answer get 503. Idempotent and safe to call from several
    /// threads, but not from inside a handler of this server.
    public func stop() {
        lifecycleLock.withLock {
            let running: RunningDaemon? = state.withLockedValue { state in
                guard case .running(let running) = state else { return nil }
                state = .idle(lastPort: running.port)
                return running
            }
            guard let running else { return }
            // libmicrohttpd aborts when stopped with a suspended connection:
            // answer and resume every one first (and suspend no more).
            running.context.takeUnretainedValue().pending.stopAll(with: .shuttingDown())
            // Closes the listen socket, shuts down every connection and joins
            // all libmicrohttpd threads; afterwards no callback can run, so
            // the context retained in startDaemon() can be released.
            MHD_stop_daemon(running.daemon)
            running.context.release()
            logger.info("ops HTTP stopped", metadata: ["port": "\(running.port)"])
        }
    }

    /// Thread model: `configuration.threads` polling threads, each serving
    /// its share of the connections and running their handlers;
    /// suspend/resume for deferred answers. (Thread-per-connection, the
    /// earlier model, let 64 idle connections take every thread and keep
    /// health checks out.)
    ///
    /// poll(), not epoll: with Debian's libmicrohttpd 0.9.75 in epoll mode a
    /// connection the client closed was now and then (about 1 in 5, see
    /// ClosedConnectionTests) only noticed at the idle timeout, holding its
    /// slot for seconds; poll() notices at once. Its cost — a scan of the
    /// thread's sockets per wake-up — is small at the ops port's limits (a
    /// thousand or so connections shared by the threads).
    private var daemonFlags: UInt32 {
        MHD_USE_INTERNAL_POLLING_THREAD.rawValue
            | MHD_USE_POLL.rawValue
            | MHD_ALLOW_SUSPEND_RESUME.rawValue
            | MHD_USE_ERROR_LOG.rawValue
    }

    /// Validates the configuration, starts the daemon and returns it. The
    /// context is retained here (`passRetained`) for libmicrohttpd's
    /// callbacks; `stop()` releases it after `MHD_stop_daemon`, or this
    /// function does if the daemon never started.
    private func startDaemon() throws -> RunningDaemon {
        let configuration = self.configuration
        try configuration.validate()
        guard let address = ListenAddress(host: configuration.host, port: configuration.port) else {
            throw OpsHTTPServerError.invalidHost(configuration.host)
        }

        var flags = daemonFlags
        if address.family == .ipv6 {
            // `::` serves IPv4 too (v4-mapped); a specific IPv6 address only itself.
            flags |= address.isIPv6Unspecified ? MHD_USE_DUAL_STACK.rawValue : MHD_USE_IPv6.rawValue
        }

        let context = Unmanaged.passRetained(
            ServerContext(configuration: configuration, logger: logger, observe: observe, handler: handler))
        let contextPointer = context.toOpaque()

        let daemon: OpaquePointer? = address.withSockAddrPointer { sockAddr in
            var options: [MHD_OptionItem] = [
                // First, so that messages from startup (bind errors) are routed too.
                tandem_mhd_option_external_logger(mhdLog, contextPointer),
                MHD_OptionItem(option: .SOCK_ADDR, value: 0, ptr_value: sockAddr),
                // The real limits are ConnectionAdmission's; this one only leaves room for the
                // connections being refused or evicted, which still hold a socket for a moment.
                MHD_OptionItem(option: .CONNECTION_LIMIT, value: configuration.libraryConnectionLimit, ptr_value: nil),
                MHD_OptionItem(option: .CONNECTION_TIMEOUT, value: configuration.connectionTimeoutSeconds, ptr_value: nil),
                MHD_OptionItem(option: .CONNECTION_MEMORY_LIMIT, value: configuration.connectionMemoryBytes, ptr_value: nil),
                tandem_mhd_option_notify_completed(mhdRequestCompleted, contextPointer),
                tandem_mhd_option_notify_connection(mhdNotifyConnection, contextPointer),
            ]
            if configuration.threads > 1 {
                options.append(MHD_OptionItem(option: .THREAD_POOL_SIZE, value: configuration.threads, ptr_value: nil))
            }
            options.append(MHD_OptionItem(option: .END, value: 0, ptr_value: nil))
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
