#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which `Host` headers the ops server answers: the defence against DNS rebinding.
///
/// The attack: a web page an operator opens at `http://evil.example:7071/` has its name re-pointed at
/// 127.0.0.1 (or the ops address); the browser then treats the ops port as the page's own origin and lets
/// the page read it. The browser still sends `Host: evil.example:7071`, which is how the server tells.
///
/// Allowed:
/// - an IP literal (`127.0.0.1`, `10.0.0.5`, `[::1]`) — a page whose origin is an IP literal was loaded from
///   that very address, so no name was rebound; this covers Prometheus scraping by IP and the listen
///   address whatever interface it is;
/// - `localhost`;
/// - the names the operator lists (`--ops-allowed-hosts`), or every name with `*`;
/// - no `Host` at all (HTTP/1.0 health checkers such as HAProxy's `option httpchk`): browsers always send
///   one, so its absence cannot come from a rebinding page.
///
/// The port is not compared: port forwarding (`kubectl port-forward 9999:7071`, a container published on
/// another port) changes it legitimately, and a rebinding page cannot choose its host name to be an IP
/// literal or `localhost`, so the port would add no protection.
public struct OpsHostPolicy: Sendable, Equatable {
    /// Lowercased names without a trailing dot.
    public private(set) var names: Set<String>
    /// `*` was listed: the check is off.
    public private(set) var allowsEveryName: Bool

    /// Answers every Host (no check).
    public static let anyHost = OpsHostPolicy(validated: [], allowsEveryName: true)
    /// IP literals and `localhost` only.
    public static let literalsAndLocalhost = OpsHostPolicy(validated: [], allowsEveryName: false)

    private init(validated names: Set<String>, allowsEveryName: Bool) {
        self.names = names
        self.allowsEveryName = allowsEveryName
    }

    /// - Parameter allowedNames: extra host names (`ops.example.com`); `*` allows every name.
    /// - Throws: `OpsHTTPServerError.invalidConfiguration` for an entry that is not a host name.
    public init(allowedNames: [String]) throws {
        var names: Set<String> = []
        var any = false
        for raw in allowedNames {
            let name = Self.normalized(raw)
            if name == "*" {
                any = true
                continue
            }
            guard Self.isHostName(name) else {
                throw OpsHTTPServerError.invalidConfiguration("'\(raw)' is not a host name (allowed hosts are names like ops.example.com, or *)")
            }
            names.insert(name)
        }
        self.init(validated: names, allowsEveryName: any)
    }

    /// Whether a request with this `Host` header value (nil when absent) is answered.
    public func allows(hostHeader: String?) -> Bool {
        guard let hostHeader else { return true }
        guard let host = Self.hostPart(of: hostHeader) else { return false }
        if host.isIPLiteral { return true }
        let name = Self.normalized(host.name)
        if name == "localhost" { return true }
        if allowsEveryName { return Self.isHostName(name) }
        return names.contains(name)
    }

    // MARK: Parsing

    struct HostPart: Equatable {
        var name: String
        var isIPLiteral: Bool
    }

    /// `name[:port]` or `[v6][:port]`. Nil for anything malformed: empty, a list (`a, b` from a repeated
    /// header), a non-numeric or out-of-range port, an unbracketed IPv6 address, a bad bracketed one.
    static func hostPart(of header: String) -> HostPart? {
        let value = header.utf8.count <= 255 ? header : ""
        guard !value.isEmpty else { return nil }
        var host = Substring(value)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let literal = String(host[host.index(after: host.startIndex)..<close])
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                port = after.dropFirst()
            }
            guard isIPv6Literal(literal) else { return nil }
            if let port, !isPort(port) { return nil }
            return HostPart(name: literal, isIPLiteral: true)
        }
        if let colon = host.firstIndex(of: ":") {
            port = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        if let port, !isPort(port) { return nil }
        let name = String(host)
        if isIPv4Literal(name) { return HostPart(name: name, isIPLiteral: true) }
        guard isHostName(normalized(name)) else { return nil }
        return HostPart(name: name, isIPLiteral: false)
    }

    private static func isPort(_ text: Substring) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 5, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        return Int(text).map { $0 <= 65535 } ?? false
    }

    /// Dotted-quad only (inet_pton refuses `127.1` and `0x7f.0.0.1`, which some resolvers accept).
    static func isIPv4Literal(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    static func isIPv6Literal(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    /// Letters, digits, `-` and `.` in labels of 1–63 characters, 1–253 in all.
    static func isHostName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 253 else { return false }
        var labelLength = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "."):
                guard labelLength > 0 else { return false }
                labelLength = 0
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                labelLength += 1
                guard labelLength <= 63 else { return false }
            default:
                return false
            }
        }
        return labelLength > 0
    }

    /// Lowercased, one trailing dot (`localhost.`, a fully qualified name) removed.
    static func normalized(_ name: String) -> String {
        var lowered = name.lowercased()
        if lowered.hasSuffix("."), lowered.count > 1 { lowered.removeLast() }
        return lowered
    }
}
