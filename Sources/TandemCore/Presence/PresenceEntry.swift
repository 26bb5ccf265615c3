/// One session's presence in one document.
///
/// The same JSON encoding is used for clients (ENTRY in protocol v1), for the Redis hash and for
/// node-to-node messages, so an entry is encoded once when it changes and then only copied:
/// `{"name":…,"node":…,"role":…,"sid":…,"state":{…},"user":…,"v":N}` (sorted keys; `node` and `v` are
/// informational for clients: the node serving the session and its per-session version).
public struct PresenceEntry: Sendable, Equatable {
    public let sid: String
    public let user: String
    public let name: String
    public let role: Role
    /// The node that owns the session (refreshes it, deletes it).
    public let node: String
    /// Increases with every accepted state change of the session; newer wins when views merge.
    public let version: UInt64
    public let encoded: [UInt8]

    public init(sid: String, user: String, name: String, role: Role, node: String, version: UInt64, state: JSONValue) {
        self.sid = sid
        self.user = user
        self.name = name
        self.role = role
        self.node = node
        self.version = version
        self.encoded = JSONValue.object([
            "sid": .string(sid), "user": .string(user), "name": .string(name), "role": .string(role.rawValue),
            "node": .string(node), "v": .number(version), "state": state,
        ]).serialized
    }

    /// The state object, decoded from `encoded` (used off the hot path: resume, tests, status).
    public var state: JSONValue {
        (try? JSONParser.parse(encoded))?.objectValue?["state"] ?? .object([:])
    }

    /// The same session with a new state (and the next version).
    public func with(state: JSONValue, version: UInt64? = nil) -> PresenceEntry {
        PresenceEntry(sid: sid, user: user, name: name, role: role, node: node, version: version ?? self.version + 1, state: state)
    }

    /// The same session taken over by `node` (a resume on another node), keeping its state.
    public func movedTo(node: String, version: UInt64) -> PresenceEntry {
        PresenceEntry(sid: sid, user: user, name: name, role: role, node: node, version: version, state: state)
    }

    /// The largest version an entry may carry: 2^53 − 1, the largest integer a JavaScript client reads
    /// exactly. Versions start at 1 and grow by one per accepted update, so a real session never gets
    /// near it; an entry from Redis or pub/sub above it is refused, which keeps `version + 1` in range.
    public static let maxVersion: UInt64 = (1 << 53) - 1

    /// Decodes an entry written by a Tandem node (Redis hash value or node message).
    public init?(json value: JSONValue) {
        guard case .object(let o) = value,
            let sid = o["sid"]?.stringValue, let user = o["user"]?.stringValue, let name = o["name"]?.stringValue,
            let roleName = o["role"]?.stringValue, let role = Role(rawValue: roleName),
            let node = o["node"]?.stringValue, let version = o["v"]?.uint64Value, version <= Self.maxVersion,
            let state = o["state"], state.isObject
        else { return nil }
        self.init(sid: sid, user: user, name: name, role: role, node: node, version: version, state: state)
    }

    public init?(encoded bytes: some Collection<UInt8>) {
        guard let value = try? JSONParser.parse(bytes) else { return nil }
        self.init(json: value)
    }
}
