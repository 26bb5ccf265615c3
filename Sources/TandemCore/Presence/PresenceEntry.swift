/// One session's presence in one document.
///
/// The same JSON encoding is used for clients (ENTRY in protocol v1), for the Redis hash and for
/// node-to-node messages, so an entry is encoded once when it changes and then only copied:
/// `{"name":…,"node":…,"role":…,"sid":…,"state":{…},"user":…,"v":N}` (sorted keys; `node` and `v` are
/// informational for clients: the node serving the session and its per-session version).
///
/// The fields around the state never change while the session keeps its node, so they are encoded once
/// (`Identity`) and a new state or version is spliced between them: an update costs one array, not a
/// dictionary of seven values sorted and written out again (issue 14).
public struct PresenceEntry: Sendable, Equatable {
    /// What stays the same across a session's updates, shared by all its entries (one reference to
    /// retain when an entry is copied into the view, a delta, a write).
    private final class Identity: Sendable {
        let sid: String
        let user: String
        let name: String
        let role: Role
        let node: String
        /// `{"name":…,"node":…,"role":…,"sid":…,"state":`
        let head: [UInt8]
        /// `,"user":…,"v":`
        let userAndVersionKey: [UInt8]

        init(sid: String, user: String, name: String, role: Role, node: String) {
            self.sid = sid
            self.user = user
            self.name = name
            self.role = role
            self.node = node
            var w = JSONWriter(capacity: 64 + name.utf8.count + node.utf8.count + sid.utf8.count)
            w.openObject()
            w.key("name"); w.string(name); w.comma()
            w.key("node"); w.string(node); w.comma()
            w.key("role"); w.string(role.rawValue); w.comma()
            w.key("sid"); w.string(sid); w.comma()
            w.key("state")
            head = w.bytes
            var t = JSONWriter(capacity: 16 + user.utf8.count)
            t.comma()
            t.key("user"); t.string(user); t.comma()
            t.key("v")
            userAndVersionKey = t.bytes
        }
    }

    private let identity: Identity
    public var sid: String { identity.sid }
    public var user: String { identity.user }
    public var name: String { identity.name }
    public var role: Role { identity.role }
    /// The node that owns the session (refreshes it, deletes it).
    public var node: String { identity.node }
    /// Increases with every accepted state change of the session; newer wins when views merge.
    public let version: UInt64
    /// The state, as its canonical bytes (also spliced into `encoded`).
    public let stateBytes: PresenceState
    public let encoded: [UInt8]

    public init(sid: String, user: String, name: String, role: Role, node: String, version: UInt64, state: PresenceState) {
        self.init(identity: Identity(sid: sid, user: user, name: name, role: role, node: node), version: version, state: state)
    }

    private init(identity: Identity, version: UInt64, state: PresenceState) {
        self.identity = identity
        self.version = version
        self.stateBytes = state
        var encoded: [UInt8] = []
        encoded.reserveCapacity(identity.head.count + state.bytes.count + identity.userAndVersionKey.count + 21)
        encoded.append(contentsOf: identity.head)
        encoded.append(contentsOf: state.bytes)
        encoded.append(contentsOf: identity.userAndVersionKey)
        Self.appendDecimal(version, to: &encoded)
        encoded.append(UInt8(ascii: "}"))
        self.encoded = encoded
    }

    /// Appends `value` in decimal without going through a `String`.
    private static func appendDecimal(_ value: UInt64, to bytes: inout [UInt8]) {
        guard value > 0 else { return bytes.append(UInt8(ascii: "0")) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            while v > 0 {
                buffer[19 - count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            }
            bytes.append(contentsOf: buffer[(20 - count)...])
        }
    }

    /// The state object, decoded (used off the hot path: resume, tests, status).
    public var state: JSONValue { stateBytes.value }

    /// The same session with a new state (and the next version, unless `version` is given).
    public func with(state: PresenceState, version: UInt64? = nil) -> PresenceEntry {
        PresenceEntry(identity: identity, version: version ?? self.version + 1, state: state)
    }

    /// The same session and state at another version.
    public func with(version: UInt64) -> PresenceEntry {
        PresenceEntry(identity: identity, version: version, state: stateBytes)
    }

    /// The same session taken over by `node` (a resume on another node), keeping its state.
    public func movedTo(node: String, version: UInt64) -> PresenceEntry {
        PresenceEntry(sid: sid, user: user, name: name, role: role, node: node, version: version, state: stateBytes)
    }

    /// Entries are equal when they say the same thing: `encoded` holds every field.
    public static func == (lhs: PresenceEntry, rhs: PresenceEntry) -> Bool {
        lhs.version == rhs.version && lhs.encoded == rhs.encoded
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
            let stateValue = o["state"], let state = PresenceState(object: stateValue)
        else { return nil }
        self.init(sid: sid, user: user, name: name, role: role, node: node, version: version, state: state)
    }

    public init?(encoded bytes: some Collection<UInt8>) {
        guard let value = try? JSONParser.parse(bytes) else { return nil }
        self.init(json: value)
    }
}
