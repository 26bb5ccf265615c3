/// A per-connection bound a client request ran into (the `reason` label of tandem_limit_rejections_total).
public enum ClientLimit: String, Sendable, CaseIterable {
    /// A join beyond --max-docs-per-connection (`too_many_docs`).
    case docsPerConnection = "docs_per_connection"
    /// A join of one doc faster than --presence-rate (`rate_limited`).
    case joinRate = "join_rate"
    /// Joins of docs the connection is not in, faster than --max-doc-joins-per-sec (`rate_limited`).
    case docJoinRate = "doc_join_rate"
    /// A request beyond --max-pending-requests while the connection's join of the doc completes (`unavailable`).
    case pendingRequests = "pending_requests"
    /// A Yjs message over --yjs-max-message-bytes (closed with 1009).
    case yjsMessageBytes = "yjs_message_bytes"
    /// Yjs updates faster than --yjs-update-rate (closed with 1008).
    case yjsUpdateRate = "yjs_update_rate"
    /// A Yjs update that would take its room past --yjs-max-room-bytes (closed with 4413).
    case yjsRoomBytes = "yjs_room_bytes"
    /// A Yjs update with missing dependencies beyond --yjs-max-pending-updates in its room (closed with 4429).
    case yjsPendingUpdates = "yjs_pending_updates"
    /// A Yjs awareness entry refused: another connection's or node's clientID, or more than
    /// `YjsAwareness.maxClientsPerConnection` clientIDs on one connection.
    case yjsAwarenessClients = "yjs_awareness_clients"
}
