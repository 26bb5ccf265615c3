/// Which web pages may open a WebSocket to the client port: the defence against cross-site WebSocket
/// hijacking.
///
/// A browser lets any page open a WebSocket to any address and sends the page's `Origin` with the
/// handshake; it is the only thing that tells the server which site is asking. What is at stake differs by
/// mode:
/// - **Development mode** (no JWT secret): identity is whatever `?user=` says, so any page a developer
///   happens to open could join, read and edit every doc of the node on their machine. By default only
///   pages served from the machine itself are allowed: `localhost` (and `*.localhost`), `127.0.0.0/8` and
///   `[::1]`, plus a page whose origin is the very IP address the socket was opened to (a phone on the
///   LAN loading the demo with `--insecure-dev-mode`). A DNS-rebinding page cannot pass: its origin is
///   its own name, never a loopback name or an IP literal.
/// - **Token mode**: the token is not ambient (no cookie), so a foreign page cannot borrow the user's
///   rights; every origin is allowed unless the operator lists the ones that may connect.
///
/// `--allowed-origins` lists exact origins (`https://app.example.com`, default ports may be omitted),
/// subdomain wildcards (`https://*.example.com`, which does not match `example.com` itself), `null`
/// (sandboxed iframes and `file:` pages, refused unless listed) or `*` (no check). A handshake without an
/// `Origin` is not from a browser page (native and server clients) and is always allowed: the check is
/// about what a page makes a browser do, not about who may connect.
public struct OriginPolicy: Sendable, Equatable {
    /// `scheme://host[:port]`, lowercased, default port removed; or `null`.
    private var exact: Set<String> = []
    /// `(scheme, ".example.com", port)` for `scheme://*.example.com[:port]`.
    private var wildcards: [Wildcard] = []
    private var allowsEveryOrigin = false
    /// Listing origins narrows token mode; development mode always allows the machine's own pages.
    private let developmentMode: Bool
    private let listed: Bool

    private struct Wildcard: Sendable, Equatable {
        var scheme: String
        var suffix: String
        var port: Int?
    }

    public struct InvalidEntry: Error, Equatable, CustomStringConvertible {
        public var entry: String
        public var description: String {
            "'\(entry)' is not an origin: write scheme://host[:port] (https://app.example.com), "
                + "a subdomain wildcard (https://*.example.com), null or *"
        }
    }

    /// - Parameters:
    ///   - allowedOrigins: `--allowed-origins`, already split at commas.
    ///   - developmentMode: no JWT secret is configured.
    public init(allowedOrigins: [String], developmentMode: Bool) throws(InvalidEntry) {
        self.init(developmentMode: developmentMode, listed: !allowedOrigins.isEmpty)
        for raw in allowedOrigins {
            let entry = raw.trimmingSpaces
            if entry == "*" {
                allowsEveryOrigin = true
            } else if entry.lowercased() == "null" {
                exact.insert("null")
            } else if let origin = Origin(parsing: entry, allowWildcard: true) {
                if origin.host.hasPrefix("*.") {
                    wildcards.append(Wildcard(scheme: origin.scheme, suffix: String(origin.host.dropFirst()), port: origin.port))
                } else {
                    exact.insert(origin.serialized)
                }
            } else {
                throw InvalidEntry(entry: raw)
            }
        }
    }

    /// The default of a mode: the machine's own pages in development mode, every page in token mode.
    public static func modeDefault(developmentMode: Bool) -> OriginPolicy {
        OriginPolicy(developmentMode: developmentMode, listed: false)
    }

    private init(developmentMode: Bool, listed: Bool) {
        self.developmentMode = developmentMode
        self.listed = listed
    }

    /// Whether a handshake with this `Origin` header (nil when absent) may proceed.
    /// - Parameter hostHeader: the handshake's `Host`, to recognise a page served from the address the
    ///   socket was opened to.
    public func allows(origin header: String?, hostHeader: String?) -> Bool {
        guard let header else { return true }
        if allowsEveryOrigin { return true }
        if !developmentMode && !listed { return true }
        let value = header.trimmingSpaces
        if value.lowercased() == "null" { return exact.contains("null") }
        guard let origin = Origin(parsing: value, allowWildcard: false) else { return false }
        if exact.contains(origin.serialized) { return true }
        for wildcard in wildcards
        where wildcard.scheme == origin.scheme && wildcard.port == origin.port && origin.host.hasSuffix(wildcard.suffix) {
            return true
        }
        guard developmentMode else { return false }
        if origin.isLoopback { return true }
        // A page from the IP address the socket is opened to (same host and port, so the page is this
        // node's own). Names are not accepted this way: a rebound name would pass.
        if origin.isIPLiteral, let hostHeader, let host = Origin(parsing: "\(origin.scheme)://\(hostHeader.trimmingSpaces)", allowWildcard: false) {
            return host.host == origin.host && host.port == origin.port
        }
        return false
    }
}

/// A parsed web origin (RFC 6454 serialization): `scheme://host[:port]`, no path, no user info.
struct Origin: Equatable {
    var scheme: String
    /// Lowercased; IPv6 literals keep their brackets.
    var host: String
    /// Nil for the scheme's default port (80 for http/ws, 443 for https/wss) or none.
    var port: Int?

    var serialized: String { port.map { "\(scheme)://\(host):\($0)" } ?? "\(scheme)://\(host)" }

    var isIPLiteral: Bool { host.hasPrefix("[") || Self.ipv4Octets(host) != nil }

    var isLoopback: Bool {
        if host == "localhost" || host.hasSuffix(".localhost") || host == "[::1]" { return true }
        return Self.ipv4Octets(host)?.first == 127
    }

    /// Refuses anything else than `scheme://host[:port]` of at most 255 bytes: paths, user info, spaces,
    /// empty hosts, ports out of range. `*.` may start the host only when `allowWildcard`.
    init?(parsing text: String, allowWildcard: Bool) {
        let bytes = Array(text.utf8)
        guard bytes.count <= 255, let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") else { return nil }
        let scheme = text[..<colon].lowercased()
        guard let first = scheme.utf8.first, Self.isLetter(first),
            scheme.utf8.allSatisfy({ Self.isLetter($0) || Self.isDigit($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E })
        else { return nil }
        var rest = text[colon...].dropFirst(3).lowercased()[...]
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let literal = rest[rest.index(after: rest.startIndex)..<close]
            guard !literal.isEmpty, literal.utf8.allSatisfy({ Self.isHexDigit($0) || $0 == 0x3A || $0 == 0x2E }) else { return nil }
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
            rest = rest[...close]
        } else if let colon = rest.firstIndex(of: ":") {
            portText = rest[rest.index(after: colon)...]
            rest = rest[..<colon]
        }
        var name = rest
        if allowWildcard, name.hasPrefix("*.") { name = name.dropFirst(2) }
        guard !name.isEmpty else { return nil }
        if !rest.hasPrefix("[") {
            // Host names and IPv4: letters, digits, `-`, `.`, and `_` (seen in intranet names).
            guard name.utf8.allSatisfy({ Self.isLetter($0) || Self.isDigit($0) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F }),
                !name.hasPrefix("."), !name.contains("..")
            else { return nil }
        }
        var port: Int?
        if let portText {
            guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy(Self.isDigit),
                let number = Int(portText), number <= 65535
            else { return nil }
            port = number
        }
        if port == Self.defaultPort(scheme) { port = nil }
        self.scheme = scheme
        self.host = String(rest)
        self.port = port
    }

    private static func defaultPort(_ scheme: String) -> Int? {
        switch scheme {
        case "http", "ws": 80
        case "https", "wss": 443
        default: nil
        }
    }

    /// The four octets of a dotted-quad address (no shorthand such as `127.1`), or nil.
    static func ipv4Octets(_ text: String) -> [Int]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [Int] = []
        for part in parts {
            guard !part.isEmpty, part.utf8.count <= 3, part.utf8.allSatisfy(isDigit), let value = Int(part), value <= 255 else {
                return nil
            }
            octets.append(value)
        }
        return octets
    }

    private static func isLetter(_ byte: UInt8) -> Bool { (0x61...0x7A).contains(byte) || (0x41...0x5A).contains(byte) }
    private static func isDigit(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) }
    private static func isHexDigit(_ byte: UInt8) -> Bool { isDigit(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte) }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var view = Substring(self)
        while view.first == " " || view.first == "\t" { view.removeFirst() }
        while view.last == " " || view.last == "\t" { view.removeLast() }
        return String(view)
    }
}
