/// What nodes tell each other on a document's pub/sub channel (`tandem:{D}`).
///
/// Published from inside the same Lua script that writes Redis, so every node sees changes in the order
/// Redis applied them. A node ignores its own presence messages (it already applied them locally).
public enum NodeMessage: Equatable, Sendable {
    /// A node's presence changes for the doc in one tick: upserted entries and removed session ids.
    /// Removals only apply to entries that node owns (a session resumed elsewhere is not removed).
    /// `full` means `upserts` is everything the node has in the doc: drop its other entries (sent after
    /// the node re-registered, e.g. when Redis came back).
    case presence(node: String, upserts: [PresenceEntry], removals: [String], full: Bool)
    /// Nodes whose registration for the doc expired (they died or lost Redis): drop their sessions.
    case nodesGone(nodes: [String])
    /// A committed document change (sync relay).
    case commit(CommitNotice)
    /// A group commit: consecutive commits of one batch, in clock order, by one node at one time
    /// (`{"k":"b","first":F,"node":N,"at":T,"b":[{"by":SID,"id":ID,"ops":OPS},…]}`; see
    /// `GroupCommitScript`, which publishes it). A batch of one is published as `commit`, so nodes from
    /// before group commit understand it.
    case commits([CommitNotice])

    public func encode() -> [UInt8] {
        var ranges: [Range<Int>]?
        return encode(upsertRanges: &ranges)
    }

    /// `encode()`, and for a presence message where each upsert's encoding lies in the result, in order
    /// (`ranges` is set only then): a Redis write that publishes the message splices those bytes instead of
    /// encoding each entry again (issue 14: each changed entry was encoded three times per tick).
    public func encode(upsertRanges ranges: inout [Range<Int>]?) -> [UInt8] {
        var w: JSONWriter
        switch self {
        case .presence(let node, let upserts, let removals, _):
            // Sized from the entries: a default-sized writer regrew (a copy each time) with a tick's entries.
            var capacity = 32 + node.utf8.count
            for index in upserts.indices { capacity += upserts[index].encodedCapacity + 1 }
            for index in removals.indices { capacity += removals[index].utf8.count + 3 }
            w = JSONWriter(capacity: capacity)
        default:
            w = JSONWriter()
        }
        w.openObject()
        switch self {
        case .presence(let node, let upserts, let removals, let full):
            // Kind and node first: `isPresence(from:)` recognises a node's own echo by this prefix.
            w.key("k"); w.string("p"); w.comma()
            w.key("n"); w.string(node); w.comma()
            if full { w.key("full"); w.bool(true); w.comma() }
            var found: [Range<Int>] = []
            found.reserveCapacity(upserts.count)
            w.key("u")
            w.array(upserts) { w, e in
                let start = w.bytes.count
                w.entry(e)
                found.append(start..<w.bytes.count)
            }
            w.comma()
            ranges = found
            w.key("r"); w.array(removals) { w, s in w.string(s) }
        case .nodesGone(let nodes):
            w.key("k"); w.string("g"); w.comma()
            w.key("gone"); w.array(nodes) { w, s in w.string(s) }
        case .commit(let notice):
            // Kind and node first, as for presence (`ownPrefixes`); the commit script writes the same.
            w.key("k"); w.string("c"); w.comma()
            notice.writeFields(into: &w)
        case .commits(let notices):
            // Node and time are the batch's (one script call); each commit carries the rest.
            let first = notices.first
            w.key("k"); w.string("b"); w.comma()
            w.key("node"); w.string(first?.node ?? ""); w.comma()
            w.key("first"); w.integer(first?.clock ?? 0); w.comma()
            w.key("at"); w.integer(first?.committedAtMs ?? 0); w.comma()
            w.key("b"); w.array(notices) { w, notice in notice.writeBatchMember(into: &w) }
        }
        w.closeObject()
        return w.bytes
    }

    /// The prefix every presence message from `node` starts with.
    public static func presencePrefix(node: String) -> [UInt8] {
        var w = JSONWriter()
        w.openObject()
        w.key("k"); w.string("p"); w.comma()
        w.key("n"); w.string(node); w.comma()
        return w.bytes
    }

    /// The prefixes of the messages `node` itself publishes and needs not read back: its presence, and
    /// its commits (`{"k":"c","node":N,…` and `{"k":"b","node":N,…`, as `GroupCommitScript` writes them;
    /// nodes from before group commit wrote the node later, so theirs are never mistaken for ours).
    public static func ownPrefixes(node: String) -> [[UInt8]] {
        var prefixes = [presencePrefix(node: node)]
        for kind in ["c", "b"] {
            var w = JSONWriter()
            w.openObject()
            w.key("k"); w.string(kind); w.comma()
            w.key("node"); w.string(node); w.comma()
            prefixes.append(w.bytes)
        }
        return prefixes
    }

    /// How deep a node message may nest (its presence states included).
    static let maxDepth = 128

    public static func decode(_ bytes: some Collection<UInt8>) -> NodeMessage? {
        // Another node's presence delta, the message every node receives most, is read straight from its
        // bytes when it has the layout `encode` writes (`NodeMessageFastPath`); anything else is parsed.
        if let message = bytes.withContiguousStorageIfAvailable({ NodeMessageFastPath.presence($0, maxDepth: maxDepth) }) ?? nil
        {
            return message
        }
        return parsed(bytes)
    }

    /// `decode` through `JSONParser`: every message, whatever its layout (what the fast path must agree with).
    static func parsed(_ bytes: some Collection<UInt8>) -> NodeMessage? {
        guard let value = try? JSONParser.parse(bytes, maxDepth: maxDepth), case .object(let o) = value,
            let kind = o["k"]?.stringValue
        else { return nil }
        switch kind {
        case "p":
            guard let node = o["n"]?.stringValue, let u = o["u"]?.arrayValue, let r = o["r"]?.arrayValue else { return nil }
            let upserts = u.compactMap(PresenceEntry.init(json:))
            let removals = r.compactMap(\.stringValue)
            guard upserts.count == u.count, removals.count == r.count else { return nil }
            return .presence(node: node, upserts: upserts, removals: removals, full: o["full"] == .bool(true))
        case "g":
            guard let gone = o["gone"]?.arrayValue else { return nil }
            return .nodesGone(nodes: gone.compactMap(\.stringValue))
        case "c":
            guard let notice = CommitNotice(fields: o) else { return nil }
            return .commit(notice)
        case "b":
            guard let first = o["first"]?.uint64Value, let node = o["node"]?.stringValue, let at = o["at"]?.uint64Value,
                let notices = CommitNotice.batch(o["b"], first: first, node: node, atMs: at)
            else { return nil }
            return .commits(notices)
        default:
            return nil
        }
    }
}
