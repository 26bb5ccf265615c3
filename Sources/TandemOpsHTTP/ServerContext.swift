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
    let handler: @Sendable (OpsRequest) -> OpsResponse
    let logger: Logger
    let maxRequestBodyBytes: Int
    /// Upload bytes of an over-limit chunked body we are willing to read and
    /// throw away before giving up on sending a 413 and closing the socket.
    let maxDiscardedBodyBytes: Int
    /// Live `RequestState`s of this daemon (a leak check for the tests).
    let liveRequests = LiveRequestCounter()
    /// The last few messages libmicrohttpd logged, so that a failed
    /// `MHD_start_daemon` (which only returns NULL) can say why.
    private let recentLibraryMessages = NIOLockedValueBox<[String]>([])

    init(
        handler: @escaping @Sendable (OpsRequest) -> OpsResponse,
        logger: Logger,
        maxRequestBodyBytes: Int
    ) {
        self.handler = handler
        self.logger = logger
        self.maxRequestBodyBytes = maxRequestBodyBytes
        let fourTimesLimit = maxRequestBodyBytes.multipliedReportingOverflow(by: 4)
        self.maxDiscardedBodyBytes = max(1 << 20, fourTimesLimit.overflow ? Int.max : fourTimesLimit.partialValue)
    }

    func recordLibraryMessage(_ message: String) {
        recentLibraryMessages.withLockedValue { messages in
            messages.append(message)
            if messages.count > 8 { messages.removeFirst(messages.count - 8) }
        }
    }

    var libraryMessages: [String] {
        recentLibraryMessages.withLockedValue { $0 }
    }
}
