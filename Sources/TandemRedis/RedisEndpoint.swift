import TandemSystem

/// Where a Redis server is and how to log in, parsed from a URL.
///
/// Accepted forms:
/// - `redis://[[user]:password@]HOST[:PORT][/DB]` (port 6379 and database 0 by default; an IPv6 host
///   goes in brackets; user and password may be percent-encoded)
/// - `unix:///absolute/path[?db=N]`
public struct RedisEndpoint: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// How to reach the server.
    public enum Address: Sendable, Equatable, Hashable {
        /// A TCP host name or IP literal and port.
        case tcp(host: String, port: Int)
        /// The absolute path of a unix domain socket.
        case unix(path: String)
    }

    /// How to reach the server.
    public var address: Address
    /// ACL user for `AUTH user password`; `nil` sends `AUTH password` (the `default` user).
    public var username: String?
    /// Password for `AUTH`; `nil` skips `AUTH`.
    public var password: String?
    /// Database selected with `SELECT` after connecting when non-zero.
    public var database: Int

    /// The port used when a `redis://` URL names none.
    public static let defaultPort = 6379

    /// Creates an endpoint from its parts.
    public init(address: Address, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.address = address
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses a `redis://` or `unix://` URL.
    /// - Throws: ``RedisEndpointError`` saying what is wrong with the URL.
    public init(url: String) throws(RedisEndpointError) {
        if let rest = url.dropPrefix("redis://") {
            self = try Self.parseTCP(rest)
        } else if let rest = url.dropPrefix("unix://") {
            self = try Self.parseUnix(rest)
        } else {
            let scheme = url.firstIndex(of: ":").map { String(url[..<$0]) } ?? url
            throw .unsupportedScheme(scheme)
        }
    }

    /// The URL with the password replaced by `***`, safe for logs.
    public var description: String {
        let credentials: String
        if let password {
            credentials = "\(username ?? ""):\(password.isEmpty ? "" : "***")@"
        } else if let username {
            credentials = "\(username)@"
        } else {
            credentials = ""
        }
        switch address {
        case .tcp(let host, let port):
            let printedHost = host.contains(":") ? "[\(host)]" : host
            return "redis://\(credentials)\(printedHost):\(port)/\(database)"
        case .unix(let path):
            // unix:// URLs have no room for credentials; say that some are set without showing them.
            let auth = credentials.isEmpty ? "" : " (with credentials)"
            return "unix://\(path)\(database == 0 ? "" : "?db=\(database)")\(auth)"
        }
    }

    private static func parseTCP(_ rest: Substring) throws(RedisEndpointError) -> RedisEndpoint {
        if rest.contains("?") || rest.contains("#") {
            throw .unexpectedQuery(String(rest))
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...].dropFirst()  // without the "/"

        var username: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            guard let colon = userInfo.firstIndex(of: ":") else {
                throw .invalidUserInfo
            }
            let user = try percentDecoded(userInfo[..<colon])
            username = user.isEmpty ? nil : user
            password = try percentDecoded(userInfo[userInfo.index(after: colon)...])
        }

        let host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidHost(String(authority)) }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidHost(String(authority)) }
                portText = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .missingHost }

        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .invalidPort(String(portText))
            }
            port = value
        }
        let database = path.isEmpty ? 0 : try parseDatabase(path)
        return RedisEndpoint(
            address: .tcp(host: String(host), port: port),
            username: username,
            password: password,
            database: database
        )
    }

    private static func parseUnix(_ rest: Substring) throws(RedisEndpointError) -> RedisEndpoint {
        let queryStart = rest.firstIndex(of: "?") ?? rest.endIndex
        let path = rest[..<queryStart]
        guard path.hasPrefix("/"), path.count > 1 else { throw .invalidUnixPath(String(path)) }
        var database = 0
        let query = rest[queryStart...].dropFirst()
        if !query.isEmpty {
            guard let value = query.dropPrefix("db=") else { throw .unexpectedQuery(String(query)) }
            database = try parseDatabase(value)
        }
        return RedisEndpoint(address: .unix(path: String(path)), database: database)
    }

    private static func parseDatabase(_ text: Substring) throws(RedisEndpointError) -> Int {
        guard let value = Int(text), value >= 0 else { throw .invalidDatabase(String(text)) }
        return value
    }

    /// Decodes `%XX` escapes so passwords can hold `@`, `:` or `/`.
    private static func percentDecoded(_ text: Substring) throws(RedisEndpointError) -> String {
        guard let bytes = PercentDecoding.decode(text, malformed: .reject),
            let decoded = String(validating: bytes, as: UTF8.self)
        else { throw .invalidUserInfo }
        return decoded
    }
}

/// Why a Redis URL was rejected.
public enum RedisEndpointError: Error, Equatable, Sendable {
    /// Only `redis://` and `unix://` are supported (no TLS: `rediss://` is rejected here).
    case unsupportedScheme(String)
    /// `redis://` with nothing where the host belongs.
    case missingHost
    /// A malformed host, such as an unclosed IPv6 bracket.
    case invalidHost(String)
    /// A port that is not a number in 1...65535.
    case invalidPort(String)
    /// A database that is not a non-negative integer.
    case invalidDatabase(String)
    /// Credentials without the `:` before the password, or with a bad percent escape.
    case invalidUserInfo
    /// A `unix://` path that is empty or not absolute.
    case invalidUnixPath(String)
    /// A query or fragment the URL form does not allow (only `unix://...?db=N` has one).
    case unexpectedQuery(String)
}

extension StringProtocol {
    /// The rest of the string after `prefix`, or `nil` if it does not start with it.
    fileprivate func dropPrefix(_ prefix: String) -> SubSequence? {
        hasPrefix(prefix) ? dropFirst(prefix.count) : nil
    }
}
