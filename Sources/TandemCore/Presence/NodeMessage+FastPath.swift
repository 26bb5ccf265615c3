/// A node's presence message, decoded without building `JSONValue`s (issue 11 item 4).
///
/// Every other node's presence delta arrives as `{"k":"p","n":NODE,["full":true,]"u":[ENTRY,…],"r":[SID,…]}`
/// with each ENTRY as `PresenceEntry.appendEncoded` splices it:
/// `{"name":…,"node":…,"role":…,"sid":…,"state":{…},"user":…,"v":N}`. Through `JSONParser` each entry
/// became a dictionary of seven values and a state tree, and the state was serialized again to get back
/// the canonical bytes it arrived as; that was most of the receiving node's CPU per cross-node delta.
///
/// Only that exact layout is taken here: compact, these keys in this order, printable ASCII strings
/// without escapes, a canonical state (the bytes `PresenceState` keeps, as a sending node writes them).
/// Anything else — another kind, whitespace, escapes, non-ASCII, another key order, an unknown role, a
/// version over `PresenceEntry.maxVersion`, invalid JSON — returns nil and `JSONParser` decides, so the
/// result is always what the parser path gives (`NodeMessageFastPathTests` checks both).
enum NodeMessageFastPath {
    static func presence(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) -> NodeMessage? {
        var recent: NodeMessageDecoder.Recent?
        return presence(bytes, maxDepth: maxDepth, recent: &recent)
    }

    static func presence(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, recent: inout NodeMessageDecoder.Recent?) -> NodeMessage? {
        var scanner = FastPathScanner(bytes: bytes, maxDepth: maxDepth)
        return scanner.presenceMessage(recent: &recent)
    }
}

/// Decodes node messages as `NodeMessage.decode` does, sharing each session's unchanging fields between
/// the entries decoded for it (issue 11 item 4).
///
/// A session's sid, name, user, role and node stay the same from one delta to the next, yet every entry
/// decoded from another node's message encoded them afresh (`PresenceEntry`'s shared part: two writers
/// and five strings, about 4,800 instructions an entry, a third of the decode in the callgrind profile).
/// The decoder remembers the last entry it decoded for each session with the bytes around its state
/// (`{"name":…,"state":` and `,"user":…,"v":`). An entry whose leading bytes are a remembered session's
/// is recognised by them, hashed and compared in one piece rather than scanned field by field (about
/// 2,900 of an entry's 4,900 instructions went to those fields' literals, strings and the sid's lookup),
/// and is made from the remembered one (`PresenceEntry.with(state:version:)`), sharing its encoded
/// fields; it is equal (`==`) to the entry decoded afresh, since those bytes were checked when the session
/// was first decoded. What it remembers is a cache, nothing depends on it but the cost: at most
/// ``capacity`` sessions, forgotten all at once when full, each without its state.
///
/// Not thread-safe: one owner (a node's pub/sub hook holds it under a lock).
public struct NodeMessageDecoder: Sendable {
    /// How many sessions are remembered: more than a node's docs usually hold active at once (each about
    /// 400 bytes without its state), so a full cache is rare and only costs the next entries their decode.
    public static let capacity = 4_096

    struct Recent: Sendable {
        /// A remembered session: its last entry (without its state) and the bytes its encoding has before
        /// and after the state.
        struct Known: Sendable {
            var entry: PresenceEntry
            /// `{"name":…,"node":…,"role":…,"sid":…,"state":`
            var head: [UInt8]
            /// `,"user":…,"v":`
            var tail: [UInt8]
        }

        /// By a hash of `head` (`ByteRun.hash`). Heads that collide replace each other, which costs only the
        /// decode the cache saves: a client choosing names to collide gets no worse than no cache, and the
        /// dictionary hashes these keys with its own seeded hasher.
        private(set) var byHead: [Int: Known] = [:]
        /// Each session's key in `byHead`: a session whose fields changed drops its old bytes.
        private var headOfSession: [String: Int] = [:]

        var count: Int { byHead.count }

        static func key(_ head: UnsafeBufferPointer<UInt8>) -> Int { ByteRun.hash(head) }

        /// The session whose head is exactly `head`.
        func known(head: UnsafeBufferPointer<UInt8>) -> Known? {
            guard let known = byHead[Self.key(head)], known.head.withUnsafeBufferPointer({ ByteRun.equal($0, head) }) else {
                return nil
            }
            return known
        }

        mutating func remember(_ entry: PresenceEntry, head: UnsafeBufferPointer<UInt8>, tail: UnsafeBufferPointer<UInt8>) {
            let key = Self.key(head)
            if let old = headOfSession[entry.sid], old != key { byHead[old] = nil }
            if byHead[key] == nil, byHead.count >= NodeMessageDecoder.capacity || headOfSession.count >= NodeMessageDecoder.capacity {
                byHead.removeAll(keepingCapacity: true)
                headOfSession.removeAll(keepingCapacity: true)
            }
            byHead[key] = Known(entry: entry.with(state: .empty, version: entry.version), head: Array(head), tail: Array(tail))
            headOfSession[entry.sid] = key
        }
    }

    private var recent: Recent? = Recent()

    public init() {}

    /// How many sessions are remembered now (for tests).
    public var rememberedSessions: Int { recent?.count ?? 0 }

    /// What `NodeMessage.decode(bytes)` gives.
    public mutating func decode(_ bytes: some Collection<UInt8>) -> NodeMessage? {
        if let message = bytes.withContiguousStorageIfAvailable({
            NodeMessageFastPath.presence($0, maxDepth: NodeMessage.maxDepth, recent: &recent)
        }) ?? nil {
            return message
        }
        return NodeMessage.parsed(bytes)
    }
}

extension FastPathScanner {
    fileprivate mutating func presenceMessage(recent: inout NodeMessageDecoder.Recent?) -> NodeMessage? {
        // The message is at depth 1, `u` at 2, each entry at 3 and its state at 4 (as `JSONParser`
        // counts).
        guard maxDepth >= 4, literal("{\"k\":\"p\",\"n\":"), let nodeRange = asciiString(), consume(UInt8(ascii: ",")) else {
            return nil
        }
        let node = string(nodeRange)
        var full = false
        if literal("\"full\":true,") { full = true }
        guard literal("\"u\":[") else { return nil }
        var upserts: [PresenceEntry] = []
        if !consume(UInt8(ascii: "]")) {
            repeat {
                guard let entry = entry(messageNode: node, nodeRange: nodeRange, recent: &recent) else { return nil }
                upserts.append(entry)
            } while consume(UInt8(ascii: ","))
            guard consume(UInt8(ascii: "]")) else { return nil }
        }
        guard literal(",\"r\":[") else { return nil }
        var removals: [String] = []
        if !consume(UInt8(ascii: "]")) {
            repeat {
                guard let sid = asciiString() else { return nil }
                removals.append(string(sid))
            } while consume(UInt8(ascii: ","))
            guard consume(UInt8(ascii: "]")) else { return nil }
        }
        guard consume(UInt8(ascii: "}")), index == bytes.count else { return nil }
        return .presence(node: node, upserts: upserts, removals: removals, full: full)
    }

    /// One entry. Its node is nearly always the message's: that string is shared, not made again. With
    /// `recent`, an entry of a remembered session is made from the remembered one.
    private mutating func entry(messageNode: String, nodeRange: Range<Int>, recent: inout NodeMessageDecoder.Recent?) -> PresenceEntry? {
        let start = index
        if let known = rememberedEntry(recent) { return known }
        index = start
        guard literal("{\"name\":"), let name = asciiString(), literal(",\"node\":"), let node = asciiString(),
            literal(",\"role\":"), let roleRange = asciiString(), literal(",\"sid\":"), let sid = asciiString(),
            literal(",\"state\":")
        else { return nil }
        let stateStart = index
        guard canonicalObject(depth: 4) else { return nil }
        let state = stateStart..<index
        guard literal(",\"user\":"), let user = asciiString(), literal(",\"v\":") else { return nil }
        let versionStart = index
        guard let version = version(), consume(UInt8(ascii: "}")) else { return nil }
        let role: Role
        if equals(roleRange, "editor") {
            role = .editor
        } else if equals(roleRange, "viewer") {
            role = .viewer
        } else {
            return nil
        }
        let entryNode = slice(node).elementsEqual(slice(nodeRange)) ? messageNode : string(node)
        let entry = PresenceEntry(
            sid: string(sid), user: string(user), name: string(name), role: role, node: entryNode, version: version,
            state: PresenceState(canonicalBytes: Array(slice(state))))
        recent?.remember(entry, head: slice(start..<stateStart), tail: slice(state.upperBound..<versionStart))
        return entry
    }

    /// The entry at `index` when its bytes up to the state are a remembered session's and the bytes after
    /// it are too: its state and version checked as in `entry`, made from the remembered entry. Nil (the
    /// index anywhere) otherwise, and `entry` decodes it field by field.
    private mutating func rememberedEntry(_ recent: NodeMessageDecoder.Recent?) -> PresenceEntry? {
        // The head ends at the first `,"state":`: none of its strings can hold a `"` (no escapes here),
        // and bytes equal to a remembered head were checked field by field when it was remembered.
        guard let recent, recent.count > 0, index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        var end = index + 1
        while true {
            guard end + 9 <= bytes.count else { return nil }
            if bytes[end] == UInt8(ascii: ","), equals(end..<(end + 9), ",\"state\":") { break }
            end += 1
        }
        end += 9
        guard let known = recent.known(head: slice(index..<end)) else { return nil }
        index = end
        let stateStart = index
        guard canonicalObject(depth: 4) else { return nil }
        let state = stateStart..<index
        let tailEnd = index + known.tail.count
        guard tailEnd <= bytes.count, known.tail.withUnsafeBufferPointer({ ByteRun.equal(slice(index..<tailEnd), $0) }) else {
            return nil
        }
        index = tailEnd
        guard let version = version(), consume(UInt8(ascii: "}")) else { return nil }
        return known.entry.with(state: PresenceState(canonicalBytes: Array(slice(state))), version: version)
    }

    /// A version as `uint64Value` reads it: digits without a leading zero, at most `PresenceEntry.maxVersion`.
    private mutating func version() -> UInt64? {
        let start = index
        var value: UInt64 = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            // 16 digits hold every version up to 2^53 − 1; more is over the limit anyway.
            guard index - start < 16 else { return nil }
            value = value * 10 + UInt64(bytes[index] - UInt8(ascii: "0"))
            index += 1
        }
        let count = index - start
        guard count > 0, count == 1 || bytes[start] != UInt8(ascii: "0"), value <= PresenceEntry.maxVersion else { return nil }
        // A fraction or exponent makes it a number `uint64Value` may still read: the parser decides.
        guard index < bytes.count, bytes[index] != UInt8(ascii: "."), bytes[index] != UInt8(ascii: "e"),
            bytes[index] != UInt8(ascii: "E")
        else { return nil }
        return value
    }

    private func string(_ range: Range<Int>) -> String { String(decoding: slice(range), as: UTF8.self) }
}

/// Byte runs compared and hashed a machine word at a time: `elementsEqual` on buffers went through the
/// generic sequence path, about 30 instructions a byte (2,400 for a remembered session's head), and
/// `Hasher` (SipHash) cost 600 a head.
enum ByteRun {
    static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        guard let x = a.baseAddress, let y = b.baseAddress else { return true }  // both empty
        let (rx, ry) = (UnsafeRawPointer(x), UnsafeRawPointer(y))
        var i = 0
        while i + 8 <= a.count {
            guard rx.loadUnaligned(fromByteOffset: i, as: UInt64.self) == ry.loadUnaligned(fromByteOffset: i, as: UInt64.self) else {
                return false
            }
            i += 8
        }
        while i < a.count {
            guard x[i] == y[i] else { return false }
            i += 1
        }
        return true
    }

    /// A multiplicative hash of the bytes, a word at a time (not seeded: see `NodeMessageDecoder.Recent`
    /// for why collisions are harmless there).
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(truncatingIfNeeded: bytes.count)
        guard let base = bytes.baseAddress else { return Int(truncatingIfNeeded: h) }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= bytes.count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9e37_79b9_7f4a_7c15
            h ^= h >> 29
            i += 8
        }
        var last: UInt64 = 0
        var shift: UInt64 = 0
        while i < bytes.count {
            last |= UInt64(base[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ last) &* 0x9e37_79b9_7f4a_7c15
        return Int(truncatingIfNeeded: h ^ (h >> 32))
    }
}
