/// One HTTP request as seen by an ops-plane handler.
///
/// Everything is copied out of libmicrohttpd's connection memory before the
/// handler runs, so a request value stays valid after the connection is gone.
public struct OpsRequest: Sendable {
    /// Request method exactly as sent, e.g. `GET`, `HEAD`, `POST`.
    public var method: String
    /// Percent-decoded path without the query string, e.g. `/api/status`.
    public var path: String
    /// Decoded query arguments (`+` is a space). A key without `=` maps to
    /// `""`; when a key repeats, the last occurrence wins.
    public var query: [String: String]
    /// Request headers keyed by lowercased name. Repeated headers are joined
    /// with `", "` in arrival order (RFC 9110 §5.3).
    public var headers: [String: String]
    /// The complete request body (at most the configured body limit).
    public var body: [UInt8]

    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The value of a header; `name` is matched case-insensitively.
    public func header(_ name: String) -> String? {
        headers[name.lowercased()]
    }
}
