/// A parsed `ws://` or `wss://host[:port][/path][?query]` address.
///
/// `wss://` parses everywhere; connecting to one needs the package's `TLS` trait (``WebSocketClient``
/// refuses it otherwise). Parsing is done by hand, once per connection, so the client does not need
/// Foundation.
struct WebSocketURL: Sendable, Equatable {
    /// Host as written, without IPv6 brackets (`127.0.0.1`, `localhost`, `::1`).
    var host: String
    var port: Int
    /// Path plus query, as sent in the request line (`/ws?doc=a`); never empty.
    var requestURI: String
    /// `wss://`: TLS to the server.
    var secure: Bool

    /// The `Host` header value: the port is left out when it is the scheme's default (80, or 443 for wss).
    var hostHeader: String {
        let printableHost = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == self.defaultPort ? printableHost : "\(printableHost):\(self.port)"
    }

    private var defaultPort: Int { self.secure ? 443 : 80 }

    /// Whether `host` is an IPv4 or IPv6 literal (TLS sends no server name for one, and checks the
    /// certificate's IP addresses instead).
    var hostIsIPLiteral: Bool {
        self.host.contains(":") || self.host.split(separator: ".").count == 4 && self.host.allSatisfy { $0 == "." || $0.isNumber }
    }

    init(host: String, port: Int, requestURI: String, secure: Bool = false) {
        self.host = host
        self.port = port
        self.requestURI = requestURI
        self.secure = secure
    }

    /// Parses `string`, throwing ``WebSocketClientError/invalidURL(_:reason:)`` with the reason.
    init(parsing string: String) throws {
        func invalid(_ reason: String) -> WebSocketClientError {
            .invalidURL(string, reason: reason)
        }

        guard let schemeEnd = string.firstRange(of: "://") else {
            throw invalid("missing scheme; expected ws://host:port/path or wss://")
        }
        let scheme = string[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "ws" || scheme == "wss" else {
            throw invalid("unsupported scheme '\(scheme)'; expected ws:// or wss://")
        }
        let secure = scheme == "wss"

        let rest = string[schemeEnd.upperBound...]
        let delimiters: Set<Character> = ["/", "?", "#"]
        let authorityEnd = rest.firstIndex(where: { delimiters.contains($0) }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = rest[authorityEnd...]
        if let fragment = target.firstIndex(of: "#") {
            // Fragments are never sent to the server (RFC 6455 section 3).
            target = target[..<fragment]
        }

        guard !authority.isEmpty else { throw invalid("missing host") }
        guard !authority.contains("@") else { throw invalid("user info is not supported") }

        let host: Substring
        let portText: Substring?
        if authority.hasPrefix("[") {
            // IPv6 literal: [::1]:8080
            guard let close = authority.firstIndex(of: "]") else { throw invalid("unterminated IPv6 literal") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let afterBracket = authority[authority.index(after: close)...]
            if afterBracket.isEmpty {
                portText = nil
            } else if afterBracket.hasPrefix(":") {
                portText = afterBracket.dropFirst()
            } else {
                throw invalid("unexpected characters after IPv6 literal")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
            portText = nil
        }

        guard !host.isEmpty else { throw invalid("missing host") }
        var port = secure ? 443 : 80
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else {
                throw invalid("invalid port '\(portText)'")
            }
            port = parsed
        }

        var requestURI = String(target)
        if requestURI.isEmpty || requestURI.hasPrefix("?") {
            requestURI = "/" + requestURI
        }
        let forbidden: Set<Character> = [" ", "\t", "\r", "\n", "\r\n"]
        guard !requestURI.contains(where: { forbidden.contains($0) }) else {
            throw invalid("path or query contains whitespace; percent-encode it")
        }

        self.init(host: String(host), port: port, requestURI: requestURI, secure: secure)
    }
}
