/// An `error` message from the server (docs/protocol.md, errors and limits).
public struct ServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `bad_message`, `too_large`, `forbidden`, `unavailable`, … (a contract: never renamed).
    public var code: String
    public var message: String
    public var doc: String?
    /// For a refused push, its id.
    public var pushID: Int?
    /// When the server knows when to try again (a busy doc), in milliseconds.
    public var retryAfterMs: Int?

    public init(code: String, message: String, doc: String? = nil, pushID: Int? = nil, retryAfterMs: Int? = nil) {
        self.code = code
        self.message = message
        self.doc = doc
        self.pushID = pushID
        self.retryAfterMs = retryAfterMs
    }

    public var description: String { "\(code): \(message)" }
}

/// Everything TandemKit throws.
public enum TandemError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A URL is not `ws://host:port/v1/ws` (or `wss://`, with the package's `TLS` trait).
    case invalidURL(String, reason: String)
    /// `wss://`: the TLS handshake failed (the server's certificate is not signed by a trusted CA or not for
    /// the URL's host; the server does not speak TLS) or the TLS settings are unusable. Not retried.
    case tlsFailed(url: String, reason: String)
    /// The server refused the token or identity (HTTP 401) or this page's origin (403). Not retried.
    case unauthorized(status: Int, message: String)
    /// Close 4400: the server no longer speaks this client's protocol version. Not retried: update the app.
    case clientTooOld(reason: String)
    /// Close 4401: the server does not speak this client's protocol version yet. Not retried.
    case serverTooOld(reason: String)
    /// Close 1000 after the welcome: this session was resumed on a newer connection, which wins.
    case superseded
    /// The connection was closed with ``TandemConnection/close()``.
    case closed
    /// The doc was left (``TandemDocument/leave()``) before the operation finished.
    case left(doc: String)
    /// The join stated record-schema version `stated` (``TandemConnection/join(_:presence:schema:)``) and the
    /// server enforces another version for `doc`, or none (`message` names what it enforces). Not retried: the
    /// app needs an update, or the operator another schema (docs/schemas.md).
    case schemaMismatch(doc: String, stated: Int, message: String)
    /// The server refused the operation (`forbidden`, `too_large`, `bad_message`, `too_many_docs`, …).
    case server(ServerError)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason): return "invalid URL \(url): \(reason)"
        case .tlsFailed(let url, let reason): return "TLS with \(url) failed: \(reason)"
        case .unauthorized(let status, let message): return "refused (HTTP \(status)): \(message)"
        case .clientTooOld(let reason):
            return "this app is older than the server's protocol (\(reason)): update it"
        case .serverTooOld(let reason):
            return "the server does not speak this app's protocol yet (\(reason)): try again after it is upgraded"
        case .superseded: return "this session was resumed on a newer connection"
        case .closed: return "the connection was closed"
        case .left(let doc): return "left \(doc)"
        case .schemaMismatch(let doc, let stated, let message):
            return "\(doc) was refused for record schema version \(stated): \(message)"
        case .server(let error): return error.description
        }
    }
}

/// What the server did with a push (docs/protocol.md, push).
public enum PushOutcome: Sendable, Equatable {
    /// Applied exactly as sent, at `clock`. `recovered`: learnt from the catch-up after a reconnect (same
    /// session and push id) rather than from a `result`.
    case commit(clock: UInt64, recovered: Bool)
    /// Something else was applied at `clock`: `applied` says exactly what (it replaced the optimistic change).
    case rebase(clock: UInt64, applied: Ops)
    /// Nothing applied: `read_only`, `void`, `duplicate` (already committed: its effect is in the records) or
    /// `invalid_base`.
    case discard(reason: String)
}
