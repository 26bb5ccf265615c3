import NIOCore
import TandemCore

/// What a document needs from one of its local connections, and nothing more: the shard never sees a
/// `ClientConnection` (nor the node), so docs can be driven and tested without sockets.
///
/// The properties are immutable and may be read anywhere. Every method must be called on `eventLoop`:
/// the shard hops there with `execute` (one hop per loop per round, see `SyncOutbox`).
protocol DocMember: AnyObject, Sendable {
    var eventLoop: EventLoop { get }
    var sessionID: String { get }
    var identity: Identity { get }

    /// The doc answered the join numbered `join` (`DocShard.join`'s; a join that replaced waiting ones
    /// answers them too) with `frame`, the `joined` message. `ticket` (members with a presence entry) goes
    /// back with the member's presence updates (`DocShard.PresenceUpdate`).
    func joinConfirmed(doc: String, join: UInt64, frame: [UInt8], ticket: DocTicket?)
    /// The doc refused or dropped the membership (forbidden resume, session taken over elsewhere).
    func membershipEnded(doc: String, error: ProtocolError?)
    /// A presence update (or a re-join's state) was over the presence rate.
    func presenceRateLimited(doc: String)
    /// The member's user left this doc within the departure window: count a reconnect.
    func markReconnect()
    /// A presence delta, framed already (the same buffer goes to every member on the loop). Written but
    /// not necessarily flushed: call `flushPresence` after the last delta of the round.
    /// - Returns: whether it was written now (false: merged for later, or the member is gone), for the
    ///   fan-out counters, which the caller increments once per round.
    @discardableResult
    func deliverPresence(_ delta: PresenceDelta, buffer frame: ByteBuffer) -> Bool
    /// Flushes what `deliverPresence` wrote.
    func flushPresence()
    /// One round of the doc's ordered stream (results, patches, catch-ups) and errors.
    func deliverSync(_ items: [SyncOutbox.Item])
    /// An error answer, written at once.
    func sendError(_ error: ProtocolError)
    /// Bytes waiting to reach the client (for the status page's largest outbound queue).
    func outboundBytes() -> Int
}

/// What a queued catch-up is.
struct CatchUpInfo: Sendable {
    var doc: String
    /// An answer to an explicit `sync` (kept even when the doc is re-joined); otherwise a join's
    /// catch-up (replaced by a newer join of the doc).
    var isReply: Bool
    /// Bytes counted in the member's queued bytes for it until it starts.
    var counted = 0
}
