/// One session in a doc, as the server lists it in `joined` and `presence`.
public struct Member: Sendable, Hashable, Codable {
    /// The session id (22 characters of base64url).
    public var sid: String
    public var user: String
    public var name: String
    /// `editor` or `viewer`.
    public var role: String
    /// The session's presence state (a JSON object; `null` before it set one).
    public var state: JSONValue
    /// The node serving the session (informational).
    public var node: String?
    /// Per-session version, increasing with each state change.
    public var version: Int

    public init(sid: String, user: String, name: String, role: String, state: JSONValue, node: String?, version: Int) {
        self.sid = sid
        self.user = user
        self.name = name
        self.role = role
        self.state = state
        self.node = node
        self.version = version
    }

    init?(json: JSONValue) {
        guard let sid = json["sid"]?.stringValue else { return nil }
        self.init(
            sid: sid,
            user: json["user"]?.stringValue ?? "",
            name: json["name"]?.stringValue ?? json["user"]?.stringValue ?? "",
            role: json["role"]?.stringValue ?? "",
            state: json["state"] ?? .null,
            node: json["node"]?.stringValue,
            version: json["v"]?.intValue ?? 0
        )
    }
}

/// Everyone in a doc: per session, and grouped per user (one user may have several tabs or devices).
public struct Members: Sendable, Hashable {
    /// Every live session, by session id (this client's own included).
    public private(set) var bySession: [String: Member] = [:]

    public init() {}

    /// Sessions grouped by user id.
    public var byUser: [String: [Member]] {
        Dictionary(grouping: bySession.values, by: \.user).mapValues { $0.sorted { $0.sid < $1.sid } }
    }

    /// Every session other than `session`.
    public func others(than session: String?) -> [Member] {
        bySession.values.filter { $0.sid != session }.sorted { $0.sid < $1.sid }
    }

    public var count: Int { bySession.count }

    /// The full list of a `joined` message replaces what was known.
    mutating func replace(with members: [Member]) {
        bySession = Dictionary(members.map { ($0.sid, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// A `presence` delta: `joined` and `updated` are upserts; a `left` of an unknown session is a no-op.
    mutating func apply(joined: [Member], updated: [Member], left: [String]) {
        for member in joined + updated { bySession[member.sid] = member }
        for sid in left { bySession.removeValue(forKey: sid) }
    }
}
