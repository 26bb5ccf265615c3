/// Encoders for the messages the server sends (protocol v1). Each returns the complete text frame.
public enum ServerMessage {
    public struct WelcomeLimits: Sendable {
        public var presenceRate: Int
        public var tickMs: Int
        public var maxMessageBytes: Int
        public var maxStateBytes: Int
        public init(presenceRate: Int, tickMs: Int, maxMessageBytes: Int, maxStateBytes: Int) {
            self.presenceRate = presenceRate
            self.tickMs = tickMs
            self.maxMessageBytes = maxMessageBytes
            self.maxStateBytes = maxStateBytes
        }
    }

    public static func welcome(session: String, node: String, user: String, resumed: Bool, limits: WelcomeLimits) -> [UInt8] {
        var w = JSONWriter()
        w.openObject()
        w.key("t"); w.string("welcome"); w.comma()
        w.key("session"); w.string(session); w.comma()
        w.key("node"); w.string(node); w.comma()
        w.key("protocol"); w.integer(ProtocolVersion.supported.lowerBound); w.comma()
        w.key("protocols"); w.openObject()
        w.key("min"); w.integer(ProtocolVersion.supported.lowerBound); w.comma()
        w.key("max"); w.integer(ProtocolVersion.supported.upperBound)
        w.closeObject(); w.comma()
        w.key("user"); w.string(user); w.comma()
        w.key("resumed"); w.bool(resumed); w.comma()
        w.key("limits"); w.openObject()
        w.key("presenceRate"); w.integer(limits.presenceRate); w.comma()
        w.key("tickMs"); w.integer(limits.tickMs); w.comma()
        w.key("maxMessageBytes"); w.integer(limits.maxMessageBytes); w.comma()
        w.key("maxStateBytes"); w.integer(limits.maxStateBytes)
        w.closeObject()
        w.closeObject()
        return w.bytes
    }

    /// `joined`; `clock` is present once the doc has sync state (issue: sync relay).
    public static func joined(doc: String, role: Role, presence: some Collection<PresenceEntry>, clock: UInt64?) -> [UInt8] {
        var w = JSONWriter(capacity: 64 + presence.count * 128)
        w.openObject()
        w.key("t"); w.string("joined"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("role"); w.string(role.rawValue); w.comma()
        if let clock { w.key("clock"); w.integer(clock); w.comma() }
        w.key("presence"); w.array(presence) { w, e in w.entry(e) }
        w.closeObject()
        return w.bytes
    }

    public static func presenceDelta(doc: String, joined: [PresenceEntry], updated: [PresenceEntry], left: [String]) -> [UInt8] {
        // Sized from the entries (a guess per entry regrew the buffer, a copy of the whole delta, whenever
        // states were larger or the doc id long). By index: a debug build's iterators allocate.
        var capacity = 64 + doc.utf8.count
        for index in joined.indices { capacity += joined[index].encodedCapacity + 1 }
        for index in updated.indices { capacity += updated[index].encodedCapacity + 1 }
        for index in left.indices { capacity += left[index].utf8.count + 3 }
        var w = JSONWriter(capacity: capacity)
        w.openObject()
        w.key("t"); w.string("presence"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("joined"); w.array(joined) { w, e in w.entry(e) }; w.comma()
        w.key("updated"); w.array(updated) { w, e in w.entry(e) }; w.comma()
        w.key("left"); w.array(left) { w, s in w.string(s) }
        w.closeObject()
        return w.bytes
    }

    public static func left(doc: String) -> [UInt8] {
        var w = JSONWriter()
        w.openObject()
        w.key("t"); w.string("left"); w.comma()
        w.key("doc"); w.string(doc)
        w.closeObject()
        return w.bytes
    }

    public static let pong: [UInt8] = Array(#"{"t":"pong"}"#.utf8)

    public static func error(_ error: ProtocolError) -> [UInt8] {
        var w = JSONWriter()
        w.openObject()
        w.key("t"); w.string("error"); w.comma()
        w.key("code"); w.string(error.code.rawValue); w.comma()
        w.key("message"); w.string(error.message)
        if let doc = error.doc { w.comma(); w.key("doc"); w.string(doc) }
        if let id = error.pushID { w.comma(); w.key("id"); w.write(id) }
        if let retryAfterMs = error.retryAfterMs { w.comma(); w.key("retryAfterMs"); w.integer(retryAfterMs) }
        w.closeObject()
        return w.bytes
    }
}
