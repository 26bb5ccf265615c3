/// One session's presence in one document.
///
/// The same JSON encoding is used for clients (ENTRY in protocol v1), for the Redis hash and for
/// node-to-node messages:
/// `{"name":…,"node":…,"role":…,"sid":…,"state":{…},"user":…,"v":N}` (sorted keys; `node` and `v` are
/// informational for clients: the node serving the session and its per-session version).
///
/// The fields around the state never change while the session keeps its node, so they are encoded once
/// (`Identity`), and an entry is only those shared bytes, its version and its state's bytes: it is
/// spliced together where it is written (a delta, a `joined` list, a Redis write, a node message), so an
/// accepted update allocates nothing for its entry (issue 14: the spliced copy per update was one of the
/// last allocations of the hot path).
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

        /// Same fields (both byte runs hold all of them).
        func isSame(as other: Identity) -> Bool {
            self === other || (head == other.head && userAndVersionKey == other.userAndVersionKey)
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
    /// The state, as its canonical bytes (spliced into the entry's encoding).
    public let stateBytes: PresenceState

    public init(sid: String, user: String, name: String, role: Role, node: String, version: UInt64, state: PresenceState) {
        self.init(identity: Identity(sid: sid, user: user, name: name, role: role, node: node), version: version, state: state)
    }

    private init(identity: Identity, version: UInt64, state: PresenceState) {
        self.identity = identity
        self.version = version
        self.stateBytes = state
    }

    /// How many bytes `appendEncoded` appends (at most: the version is counted at its longest).
    public var encodedCapacity: Int { identity.head.count + stateBytes.bytes.count + identity.userAndVersionKey.count + 21 }

    /// Appends the entry's JSON encoding: the shared fields with the state and version spliced in.
    public func appendEncoded(to bytes: inout [UInt8]) {
        bytes.append(contentsOf: identity.head)
        bytes.append(contentsOf: stateBytes.bytes)
        bytes.append(contentsOf: identity.userAndVersionKey)
        JSONWriter.appendDecimal(version, to: &bytes)
        bytes.append(UInt8(ascii: "}"))
    }

    /// The entry's JSON encoding as its own array (off the hot path: tests, tools; writers splice it
    /// with `appendEncoded`).
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encodedCapacity)
        appendEncoded(to: &bytes)
        return bytes
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

    /// Entries are equal when they say the same thing (the same encoding).
    public static func == (lhs: PresenceEntry, rhs: PresenceEntry) -> Bool {
        lhs.version == rhs.version && lhs.stateBytes == rhs.stateBytes && lhs.identity.isSame(as: rhs.identity)
    }

    /// The largest version an entry may carry: 2^53 − 1, the largest integer a JavaScript client reads
    /// exactly. Versions start at 1 and grow by one per accepted update, so a real session never gets
    /// near it; an entry from Redis or pub/sub above it is refused, which keeps `version + 1` in range.
    public static let maxVersion: UInt64 = (1 << 53) - 1

    /// The largest stored version a resume continues from: 2^52, half of ``maxVersion``'s range. A session
    /// resumed just below ``maxVersion`` (2^53 − 1 − k) would pass it after k updates, and its entries would
    /// then be refused by every other node; a version this large cannot come from real updates (2^52 at a
    /// thousand a second is 142,000 years), so a resume from above it treats the entry as corrupt (a
    /// corrupted or hostile Redis) and starts the session again at version 1. Below it, a session has
    /// 2^52 − 1 updates left before ``maxVersion``.
    public static let maxResumedVersion: UInt64 = 1 << 52

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
