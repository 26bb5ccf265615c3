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
/// The decoder remembers the last entry it decoded for each session; a new entry with the same fields is
/// made from it (`PresenceEntry.with(state:version:)`), which shares the encoded fields and is equal
/// (`==`) to the entry decoded afresh. What it remembers is a cache, nothing depends on it but the
/// cost: at most ``capacity`` sessions, forgotten all at once when full, each without its state.
///
/// Not thread-safe: one owner (a node's pub/sub hook holds it under a lock).
public struct NodeMessageDecoder: Sendable {
    /// How many sessions are remembered: more than a node's docs usually hold active at once (each about
    /// 300 bytes without its state), so a full cache is rare and only costs the next entries their decode.
    public static let capacity = 4_096

    struct Recent: Sendable {
        var entries: [String: PresenceEntry] = [:]

        mutating func remember(_ entry: PresenceEntry) {
            if entries.count >= NodeMessageDecoder.capacity, entries[entry.sid] == nil { entries.removeAll(keepingCapacity: true) }
            entries[entry.sid] = entry.with(state: .empty, version: entry.version)
        }
    }

    private var recent: Recent? = Recent()

    public init() {}

    /// How many sessions are remembered now (for tests).
    public var rememberedSessions: Int { recent?.entries.count ?? 0 }

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
    /// `recent`, a session's entry with the same fields as the last one is made from it.
    private mutating func entry(messageNode: String, nodeRange: Range<Int>, recent: inout NodeMessageDecoder.Recent?) -> PresenceEntry? {
        guard literal("{\"name\":"), let name = asciiString(), literal(",\"node\":"), let node = asciiString(),
            literal(",\"role\":"), let roleRange = asciiString(), literal(",\"sid\":"), let sid = asciiString(),
            literal(",\"state\":")
        else { return nil }
        let stateStart = index
        guard canonicalObject(depth: 4) else { return nil }
        let state = stateStart..<index
        guard literal(",\"user\":"), let user = asciiString(), literal(",\"v\":"), let version = version(),
            consume(UInt8(ascii: "}"))
        else { return nil }
        let role: Role
        if equals(roleRange, "editor") {
            role = .editor
        } else if equals(roleRange, "viewer") {
            role = .viewer
        } else {
            return nil
        }
        let sidString = string(sid)
        let stateBytes = PresenceState(canonicalBytes: Array(slice(state)))
        if let known = recent?.entries[sidString], known.role == role, matches(name, known.name), matches(user, known.user),
            matches(node, known.node)
        {
            return known.with(state: stateBytes, version: version)
        }
        let entryNode = slice(node).elementsEqual(slice(nodeRange)) ? messageNode : string(node)
        let entry = PresenceEntry(
            sid: sidString, user: string(user), name: string(name), role: role, node: entryNode, version: version, state: stateBytes)
        recent?.remember(entry)
        return entry
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

    /// Whether the bytes of `range` are `text`'s UTF-8, compared through its contiguous storage
    /// (`elementsEqual` with `String.UTF8View` took the generic path: about 350 instructions a field).
    private func matches(_ range: Range<Int>, _ text: String) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { slice(range).elementsEqual($0) } ?? slice(range).elementsEqual(text.utf8)
    }

    private func string(_ range: Range<Int>) -> String { String(decoding: slice(range), as: UTF8.self) }
}
