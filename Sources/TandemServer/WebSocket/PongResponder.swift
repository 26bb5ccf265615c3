import NIOCore

/// Answers a client's pings with at most one pong in flight, for `/v1/ws` and `/yjs/{room}` alike: a ping
/// that arrives while a pong is being written replaces any waiting one, and is answered when that write
/// completes (RFC 6455 §5.5.3 lets a pong answer only the latest ping), so a ping flood from a client that
/// does not read cannot fill the send buffer. Pure: the connection writes what it is told.
struct PongResponder {
    private var inFlight = false
    private var waiting: ByteBuffer?

    /// A ping: the pong to write now, or nil while one is in flight; `coalesced` when it replaced a ping
    /// still waiting for its pong (`tandem_pongs_coalesced_total`).
    mutating func ping(_ payload: ByteBuffer) -> (write: ByteBuffer?, coalesced: Bool) {
        guard inFlight else {
            inFlight = true
            return (payload, false)
        }
        let coalesced = waiting != nil
        waiting = payload
        return (nil, coalesced)
    }

    /// The pong in flight was written (or failed): the next one to write, if a ping came meanwhile and the
    /// connection is still open.
    mutating func written(closing: Bool) -> ByteBuffer? {
        guard let next = waiting, !closing else {
            inFlight = false
            waiting = nil
            return nil
        }
        waiting = nil
        return next
    }
}
