/// The response an ops-plane handler returns.
///
/// The server copies the body into libmicrohttpd (`MHD_RESPMEM_MUST_COPY`),
/// computes `Content-Length` itself and, unless the response sets its own
/// `Cache-Control`, adds `Cache-Control: no-store` because ops answers
/// (metrics, health, status) are live data that must not be cached.
public struct OpsResponse: Sendable {
    /// HTTP status code, 100...599 (anything else is answered with 500).
    public var status: Int
    /// Header lines in order. `Content-Length` is ignored: libmicrohttpd
    /// derives it from the body (and keeps it for HEAD).
    public var headers: [(String, String)]
    /// Response body; libmicrohttpd leaves it out for HEAD requests.
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of a header; `name` is matched case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.0.lowercased() == wanted }?.1
    }

    /// A `text/plain; charset=utf-8` response.
    public static func text(_ text: String, status: Int = 200) -> OpsResponse {
        OpsResponse(
            status: status,
            headers: [("Content-Type", "text/plain; charset=utf-8")],
            body: Array(text.utf8)
        )
    }

    /// An `application/json` response from already-encoded bytes.
    public static func json(_ bytes: [UInt8], status: Int = 200) -> OpsResponse {
        OpsResponse(status: status, headers: [("Content-Type", "application/json")], body: bytes)
    }

    /// An `application/json` response from an already-encoded JSON string.
    public static func json(_ string: String, status: Int = 200) -> OpsResponse {
        json(Array(string.utf8), status: status)
    }

    /// 404 with a short plain-text body.
    public static func notFound() -> OpsResponse {
        text("not found\n", status: 404)
    }

    /// 405 with an `Allow` header listing `allowed` (e.g. `["GET", "HEAD"]`).
    public static func methodNotAllowed(allowed: [String]) -> OpsResponse {
        var response = text("method not allowed\n", status: 405)
        response.headers.append(("Allow", allowed.joined(separator: ", ")))
        return response
    }

    /// 503, e.g. for a readiness probe while a dependency is down. When
    /// `retryAfterSeconds` is given it is sent as `Retry-After`.
    public static func serviceUnavailable(
        _ message: String = "service unavailable",
        retryAfterSeconds: Int? = nil
    ) -> OpsResponse {
        var response = text(message.hasSuffix("\n") ? message : message + "\n", status: 503)
        if let retryAfterSeconds {
            response.headers.append(("Retry-After", String(retryAfterSeconds)))
        }
        return response
    }

    /// A JSON error body, `{"error":code,"message":message}` — the shape of every ops API error.
    public static func jsonError(status: Int, code: String, message: String) -> OpsResponse {
        json("{\"error\":" + jsonString(code) + ",\"message\":" + jsonString(message) + "}", status: status)
    }

    /// 421 Misdirected Request: the `Host` is not one this server answers for (DNS-rebinding defence).
    static func hostNotAllowed(_ host: String) -> OpsResponse {
        let shown = host.isEmpty ? "(several)" : String(host.prefix(100))
        return jsonError(
            status: 421, code: "host_not_allowed",
            message: "this server does not answer for Host '\(shown)'; use its IP address or add the name to --ops-allowed-hosts")
    }

    /// 503 `busy`: too many deferred answers pending.
    static func busy(pending: Int) -> OpsResponse {
        var response = jsonError(
            status: 503, code: "busy", message: "\(pending) requests are already waiting for an answer; retry shortly")
        response.headers.append(("Retry-After", "1"))
        return response
    }

    /// 503 `timeout`: a deferred answer took too long.
    static func responseTimeout(milliseconds: Int) -> OpsResponse {
        var response = jsonError(status: 503, code: "timeout", message: "no answer within \(milliseconds) ms")
        response.headers.append(("Retry-After", "1"))
        return response
    }

    /// 503 `unavailable`: the server is stopping.
    static func shuttingDown() -> OpsResponse {
        jsonError(status: 503, code: "unavailable", message: "the server is shutting down")
    }

    /// 413, sent by the server itself when a body exceeds the configured limit.
    static func contentTooLarge(limit: Int) -> OpsResponse {
        text("request body exceeds \(limit) bytes\n", status: 413)
    }

    /// 500, sent by the server itself when a handler's response is unusable.
    static func internalError(_ message: String) -> OpsResponse {
        text(message + "\n", status: 500)
    }
}

/// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
