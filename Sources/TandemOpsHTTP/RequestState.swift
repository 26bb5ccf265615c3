import NIOConcurrencyHelpers

/// Per-request state kept in libmicrohttpd's `*con_cls` slot.
///
/// Created on the first access-handler call for a request (when `*con_cls`
/// is NULL) and stored there with `Unmanaged.passRetained`; released by the
/// `MHD_OPTION_NOTIFY_COMPLETED` callback. libmicrohttpd never runs two
/// callbacks for the same connection at once and runs all of them on the
/// polling thread that owns the connection, so this class needs no lock
/// and is deliberately not Sendable.
final class RequestState {
    /// Counts live instances per daemon, so tests can prove that every
    /// request's state is freed (completed, refused, aborted or shut down).
    private let liveCounter: LiveRequestCounter

    /// Body bytes received so far (never more than the configured limit).
    var body: [UInt8] = []
    /// The body went over the limit: remaining chunks are discarded and the
    /// final call answers 413 instead of running the handler.
    var bodyTooLarge = false
    /// Bytes thrown away after `bodyTooLarge` was set.
    var discardedBytes = 0
    /// A response has been queued; later calls (there should be none) are no-ops.
    var responded = false
    /// The connection is suspended waiting for this deferred answer (`PendingResponses`).
    var deferredID: UInt?
    /// The handler's route label, for `OpsHTTPEvent.requestFinished`.
    var label: String?
    /// When the request was complete (monotonic ms), for `OpsHTTPEvent.requestFinished`.
    var completedAtMs: UInt64 = 0

    init(liveCounter: LiveRequestCounter) {
        self.liveCounter = liveCounter
        liveCounter.add(1)
    }

    deinit {
        liveCounter.add(-1)
    }
}

/// Number of `RequestState`s alive for one daemon. Lock-protected: states
/// are created and destroyed on many connection threads.
final class LiveRequestCounter: Sendable {
    private let count = NIOLockedValueBox(0)

    func add(_ delta: Int) {
        count.withLockedValue { $0 += delta }
    }

    var value: Int {
        count.withLockedValue { $0 }
    }
}
