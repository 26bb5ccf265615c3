import NIOCore

/// Sockets accepted and not upgraded yet, oldest first, at most `limit` (`--max-pending-handshakes`).
///
/// At the limit a new socket displaces the OLDEST pending one instead of being refused. Sockets that never
/// finish their handshake (idle, slow-loris) are always the oldest, while a real client's handshake takes
/// a round trip or two; so a crowd of idle sockets can no longer keep real clients out (measured with
/// scripts/floods.py: 2,000 idle sockets refused every client for the whole handshake timeout when the
/// newcomer was the one refused). A real handshake is displaced only if `limit` newer sockets arrive while
/// it is in flight.
struct PendingHandshakeQueue<Handle: Sendable>: Sendable {
    let limit: Int
    private var order = CircularBuffer<UInt64>()
    private var handles: [UInt64: Handle] = [:]
    private var nextID: UInt64 = 0

    init(limit: Int) {
        precondition(limit >= 1, "at least one pending handshake")
        self.limit = limit
    }

    var count: Int { handles.count }

    /// Adds a socket. Returns its id (for `remove`) and, at the limit, the oldest pending socket, which
    /// the caller closes (it is no longer pending here).
    mutating func add(_ handle: Handle) -> (id: UInt64, displaced: Handle?) {
        var displaced: Handle?
        if handles.count >= limit {
            while let oldest = order.popFirst() {
                if let handle = handles.removeValue(forKey: oldest) {
                    displaced = handle
                    break
                }
            }
        }
        nextID += 1  // one per accepted socket: 2^64 of them cannot happen
        handles[nextID] = handle
        order.append(nextID)
        // Finished handshakes leave their ids in `order`; drop them once they outnumber the live ones.
        if order.count > 2 * handles.count + 64 {
            order = CircularBuffer(order.filter { handles[$0] != nil })
        }
        return (nextID, displaced)
    }

    /// The socket was upgraded or closed. Returns whether it was still pending here (false once displaced).
    @discardableResult
    mutating func remove(_ id: UInt64) -> Bool {
        handles.removeValue(forKey: id) != nil
    }
}
