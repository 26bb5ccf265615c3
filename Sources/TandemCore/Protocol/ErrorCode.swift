/// Error codes sent in `{"t":"error","code":…}` (protocol v1). Clients switch on these strings, so they
/// are a contract: add new ones, never rename.
public enum ErrorCode: String, Sendable, CaseIterable {
    /// Not JSON, not an object, a missing/mistyped field, a bad doc id, malformed ops.
    case badMessage = "bad_message"
    /// `"t"` names no message type of this protocol.
    case unknownType = "unknown_type"
    /// Frame, state, record, push or doc over a configured limit.
    case tooLarge = "too_large"
    /// The token grants no access to the doc.
    case forbidden = "forbidden"
    /// The message needs a `join` of that doc first.
    case notJoined = "not_joined"
    /// Presence updates beyond the per-user rate are being dropped (sent at most once a second), or a
    /// `join` of one doc came faster than the presence rate and was not answered.
    case rateLimited = "rate_limited"
    /// Redis is unreachable; the request was not applied. Retryable.
    case unavailable = "unavailable"
    /// An unexpected server-side failure; the request was not applied. Retryable.
    case internalError = "internal"
    /// A `join` beyond `--max-docs-per-connection`: leave a doc first (or open another connection).
    case tooManyDocs = "too_many_docs"
    /// A `join` stated a record-schema version (`"schema"`) other than the one the server enforces for the
    /// doc (or the server enforces none): the client was built for other records. Not retryable as is.
    case schemaMismatch = "schema_mismatch"
    /// A `presence` update from a session that joined the doc with `"presence":"hidden"` or `"none"`: it has
    /// no presence to set (join again with `"presence":"full"` to be shown). The update is dropped.
    case presenceDisabled = "presence_disabled"
}

/// A protocol-level refusal of one client message. The connection stays usable.
public struct ProtocolError: Error, Equatable, Sendable {
    public var code: ErrorCode
    public var message: String
    public var doc: String?
    /// Echoed for `push` errors so the client knows which push was refused.
    public var pushID: JSONValue?
    /// For `unavailable` refusals under overload: when to try again (jittered, grows with the backlog).
    public var retryAfterMs: UInt64?

    public init(_ code: ErrorCode, _ message: String, doc: String? = nil, pushID: JSONValue? = nil, retryAfterMs: UInt64? = nil) {
        self.code = code
        self.message = message
        self.doc = doc
        self.pushID = pushID
        self.retryAfterMs = retryAfterMs
    }
}
