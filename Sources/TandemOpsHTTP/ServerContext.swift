import Logging
import NIOConcurrencyHelpers

/// What the C callbacks need from the server, reached through their `void *`.
///
/// One context exists per `start()`. `OpsHTTPServer.start()` hands it to
/// libmicrohttpd as `Unmanaged.passRetained(context).toOpaque()` and
/// `OpsHTTPServer.stop()` balances that retain with `release()` only after
/// `MHD_stop_daemon` has returned, i.e. once no libmicrohttpd thread can call
/// back into it any more. (If `MHD_start_daemon` fails the retain is released
/// at once.)
///
/// Sendable without `@unchecked`: every stored property is immutable or a
/// lock-protected box, because all of libmicrohttpd's threads share it.
final class ServerContext: Sendable {
    let handler: @Sendable (OpsRequest) -> OpsReply
    let observe: @Sendable (OpsHTTPEvent) -> Void
    let logger: Logger
    let maxRequestBodyBytes: Int
    /// Upload bytes of an over-limit chunked body we are willing to read and
    /// throw away before giving up on sending a 413 and closing the socket.
    let maxDiscardedBodyBytes: Int
    let hostPolicy: OpsHostPolicy
    /// Live `RequestState`s of this daemon (a leak check for the tests).
    let liveRequests = LiveRequestCounter()
    let connections: ConnectionGuard
    let pending: PendingResponses
    /// libmicrohttpd's log lines, at most a few per second (a flood of refused connections must not
    /// become a flood of log lines), and the last few for a failed start.
    private let libraryLog = NIOLockedValueBox(LibraryLog())

    init(
        configuration: OpsHTTPServer.Configuration,
        logger: Logger,
        observe: @escaping @Sendable (OpsHTTPEvent) -> Void,
        handler: @escaping @Sendable (OpsRequest) -> OpsReply
    ) {
        self.handler = handler
        self.observe = observe
        self.logger = logger
        self.maxRequestBodyBytes = configuration.maxRequestBodyBytes
        let fourTimesLimit = configuration.maxRequestBodyBytes.multipliedReportingOverflow(by: 4)
        self.maxDiscardedBodyBytes = max(1 << 20, fourTimesLimit.overflow ? Int.max : fourTimesLimit.partialValue)
        self.hostPolicy = configuration.hostPolicy
        self.connections = ConnectionGuard(
            limits: .init(
                maxConnections: configuration.maxConnections,
                maxPerAddress: configuration.maxConnectionsPerAddress,
                busyEvictableAfterMs: UInt64(configuration.connectionTimeoutSeconds) * 1000),
            observe: observe)
        self.pending = PendingResponses(
            maxPending: configuration.maxPendingResponses, timeoutMs: configuration.responseTimeoutMs, observe: observe)
    }

    private struct LibraryLog {
        var recent: [String] = []
        var windowStartMs: UInt64 = 0
        var inWindow = 0
        var suppressed = 0
    }

    static let libraryLogLinesPerSecond = 5

    /// Keeps `message` for a failed start and says whether to log it now (and how many were dropped
    /// since the last one logged).
    func recordLibraryMessage(_ message: String) -> (log: Bool, suppressedBefore: Int) {
        let now = monotonicMilliseconds()
        return libraryLog.withLockedValue { log in
            log.recent.append(message)
            if log.recent.count > 8 { log.recent.removeFirst(log.recent.count - 8) }
            if now >= log.windowStartMs + 1000 {
                log.windowStartMs = now
                log.inWindow = 0
            }
            guard log.inWindow < Self.libraryLogLinesPerSecond else {
                log.suppressed += 1
                return (false, 0)
            }
            log.inWindow += 1
            defer { log.suppressed = 0 }
            return (true, log.suppressed)
        }
    }

    var libraryMessages: [String] {
        libraryLog.withLockedValue { $0.recent }
    }
}
