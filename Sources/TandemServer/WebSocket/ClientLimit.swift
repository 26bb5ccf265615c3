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
}
