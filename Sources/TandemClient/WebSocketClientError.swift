import NIOCore

/// Errors thrown by ``WebSocketClient``.
public enum WebSocketClientError: Error, CustomStringConvertible {
    /// The URL could not be parsed, is not a `ws://` or `wss://` URL, or is `wss://` and the package was
    /// built without its `TLS` trait.
    case invalidURL(String, reason: String)
    /// `wss://`: the TLS handshake with `host:port` failed (a certificate not signed by a trusted CA, or not
    /// for this host; a server that does not speak TLS), or the TLS settings are unusable (`reason` says
    /// which). Retrying does not help until the server's certificate or this client's trust changes.
    case tlsFailed(host: String, port: Int, reason: String)
    /// Nothing listens on `host:port` (ECONNREFUSED).
    case connectionRefused(host: String, port: Int)
    /// The TCP connection was not established within ``WebSocketClient/Configuration/connectTimeout``.
    case connectTimeout(host: String, port: Int, timeout: TimeAmount)
    /// The TCP connection failed for another reason (name resolution, unreachable network, ...).
    case connectionFailed(host: String, port: Int, underlying: any Error)
    /// The TCP connection was made but the upgrade response did not arrive within the connect timeout.
    case handshakeTimeout(host: String, port: Int, timeout: TimeAmount)
    /// The server answered the upgrade request with a status other than 101 Switching Protocols.
    ///
    /// `headers` keeps the server's order and spelling; use ``headerValue(_:)`` for a
    /// case-insensitive lookup (for example `Retry-After` on a 503). `body` is the response body,
    /// decoded as UTF-8 and cut at 64 KiB.
    case handshakeRejected(status: Int, headers: [(String, String)], body: String)
    /// The server answered 101 but the handshake was invalid (wrong `Sec-WebSocket-Accept`,
    /// missing `Upgrade` header), or the connection closed before a complete response.
    case handshakeFailed(reason: String)
    /// A frame was sent after the close handshake started or the connection closed.
    case notOpen

    /// For ``handshakeRejected(status:headers:body:)``: the first value of the header `name`,
    /// compared case-insensitively. `nil` for other errors or when the header is absent.
    public func headerValue(_ name: String) -> String? {
        guard case .handshakeRejected(_, let headers, _) = self else { return nil }
        let wanted = name.lowercased()
        return headers.first(where: { $0.0.lowercased() == wanted })?.1
    }

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason):
            return "invalid WebSocket URL '\(url)': \(reason)"
        case .connectionRefused(let host, let port):
            return "connection to \(host):\(port) refused"
        case .connectTimeout(let host, let port, let timeout):
            return "TCP connect to \(host):\(port) timed out after \(timeout.prettyPrint)"
        case .connectionFailed(let host, let port, let underlying):
            return "connection to \(host):\(port) failed: \(underlying)"
        case .handshakeTimeout(let host, let port, let timeout):
            return "WebSocket upgrade with \(host):\(port) got no response within \(timeout.prettyPrint)"
        case .handshakeRejected(let status, let headers, let body):
            let headerText = headers.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
            return "WebSocket upgrade rejected with HTTP \(status) [\(headerText)] body: \(body)"
        case .handshakeFailed(let reason):
            return "WebSocket handshake failed: \(reason)"
        case .tlsFailed(let host, let port, let reason):
            return "TLS with \(host):\(port) failed: \(reason)"
        case .notOpen:
            return "WebSocket is closing or closed"
        }
    }
}

extension TimeAmount {
    fileprivate var prettyPrint: String {
        let milliseconds = self.nanoseconds / 1_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }
}
