import NIOCore
import TandemYjs

/// What a Yjs room needs from a connection (`YjsConnection`). Rooms call these on the member's event
/// loop only (they hop with `eventLoop.execute`).
protocol YjsMember: AnyObject, Sendable {
    var eventLoop: EventLoop { get }
    /// Writes one y-protocols message (encoded once for every member it goes to).
    /// - Parameter appendedAtMs: Redis's wall clock when the update was appended, for the sync lag.
    func deliver(_ message: ByteBuffer, appendedAtMs: UInt64?)
    /// Closes the connection (a room limit, storage down).
    func close(_ close: ServerClose)
}
