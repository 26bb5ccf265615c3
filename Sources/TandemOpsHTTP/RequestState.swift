/// Per-request state kept in libmicrohttpd's `*con_cls` slot.
///
/// Created on the first access-handler call for a request (when `*con_cls`
/// is NULL) and stored there with `Unmanaged.passRetained`; released by the
/// `MHD_OPTION_NOTIFY_COMPLETED` callback. libmicrohttpd never runs two
/// callbacks for the same connection at once and, in thread-per-connection
/// mode, runs all of them on that connection's thread, so this class needs
/// no lock and is deliberately not Sendable.
final class RequestState {
    /// Body bytes received so far (never more than the configured limit).
    var body: [UInt8] = []
    /// The body went over the limit: remaining chunks are discarded and the
    /// final call answers 413 instead of running the handler.
    var bodyTooLarge = false
    /// Bytes thrown away after `bodyTooLarge` was set.
    var discardedBytes = 0
    /// A response has been queued; later calls (there should be none) are no-ops.
    var responded = false
}
