/// One committed change of a document, as nodes announce it to each other and as clients receive it.
public struct CommitNotice: Sendable {
    public var clock: UInt64
    /// The ops as applied (OPS in protocol v1).
    public var ops: JSONValue
    /// The session that pushed the change.
    public var by: String
    /// The node that executed the push (it answers the pusher with `result`).
    public var node: String
    /// The pusher's `id`, so the pushing node can match the commit to its pending push.
    public var pushID: JSONValue?
    /// Wall-clock milliseconds when Redis committed it (feeds tandem_sync_lag_seconds).
    public var committedAtMs: UInt64
    /// The doc's checksum after this commit, as the commit script computed it (`"sum"`; nil when Redis
    /// did not know the checksum before it, e.g. a doc last written by a node from before checksums).
    public var sum: DocChecksum?
    /// `ops` serialized, when the node has the bytes already (its own commits, from the group commit):
    /// messages copy them instead of serializing `ops` again. Always exactly `ops.serialized`.
    public var encodedOps: [UInt8]?
    /// `ops` parsed, when the node has it already (its own commits): the replica applies it without
    /// parsing `ops` again. Always exactly `try Ops(json: ops)`.
    public var parsedOps: Ops?
    /// With `parsedOps` (own commits): the hash of each record the commit leaves live, as the batch computed
    /// them for its checksum deltas (of the values it decided, which applying `parsedOps` reproduces). The
    /// replica takes them instead of hashing those records a second time.
    public var recordHashes: [String: DocChecksum]?

    public init(
        clock: UInt64, ops: JSONValue, by: String, node: String, pushID: JSONValue?, committedAtMs: UInt64,
        encodedOps: [UInt8]? = nil, parsedOps: Ops? = nil, sum: DocChecksum? = nil, recordHashes: [String: DocChecksum]? = nil
    ) {
        self.recordHashes = recordHashes
        self.sum = sum
        self.clock = clock
        self.ops = ops
        self.by = by
        self.node = node
        self.pushID = pushID
        self.committedAtMs = committedAtMs
        self.encodedOps = encodedOps
        self.parsedOps = parsedOps
    }

    /// Writes `ops` (from `encodedOps` when present).
    func writeOps(into w: inout JSONWriter) {
        if let encodedOps { w.raw(encodedOps) } else { w.write(ops) }
    }

    /// The same commit without the derived forms of `ops` (what is kept for catch-ups: one copy).
    var withoutCaches: CommitNotice {
        var plain = self
        plain.encodedOps = nil
        plain.parsedOps = nil
        plain.recordHashes = nil
        return plain
    }

    /// The fields of a commit message, node first (see `NodeMessage.ownPrefixes`).
    func writeFields(into w: inout JSONWriter) {
        w.key("node"); w.string(node); w.comma()
        w.key("clock"); w.integer(clock); w.comma()
        w.key("ops"); writeOps(into: &w); w.comma()
        w.key("by"); w.string(by); w.comma()
        if let pushID { w.key("id"); w.write(pushID); w.comma() }
        w.key("at"); w.integer(committedAtMs)
        if let sum { w.comma(); w.key("sum"); w.string(sum.hex) }
    }

    init?(fields o: [String: JSONValue]) {
        guard let clock = o["clock"]?.uint64Value, let ops = o["ops"], ops.isObject, let by = o["by"]?.stringValue,
            let node = o["node"]?.stringValue, let at = o["at"]?.uint64Value
        else { return nil }
        self.init(
            clock: clock, ops: ops, by: by, node: node, pushID: o["id"], committedAtMs: at,
            sum: o["sum"]?.stringValue.flatMap { DocChecksum(hex: $0) })
    }

    /// One member of a batch (`NodeMessage.commits`, batch log entries): `{"by":SID,"id":ID,"ops":OPS}`.
    func writeBatchMember(into w: inout JSONWriter) {
        w.openObject()
        w.key("by"); w.string(by); w.comma()
        if let pushID { w.key("id"); w.write(pushID); w.comma() }
        w.key("ops"); writeOps(into: &w)
        if let sum { w.comma(); w.key("sum"); w.string(sum.hex) }
        w.closeObject()
    }

    /// The commits of a batch: `members` is the `[{"by","id","ops"},…]` array, numbered from `first`.
    /// Nil unless it is a non-empty array of well-formed members (and the clocks fit).
    public static func batch(_ members: JSONValue?, first: UInt64, node: String, atMs: UInt64) -> [CommitNotice]? {
        guard let members = members?.arrayValue, !members.isEmpty, first >= 1,
            first <= UInt64.max - UInt64(members.count)
        else { return nil }
        var notices: [CommitNotice] = []
        notices.reserveCapacity(members.count)
        for (i, member) in members.enumerated() {
            guard case .object(let m) = member, let by = m["by"]?.stringValue, let ops = m["ops"], ops.isObject else {
                return nil
            }
            notices.append(
                CommitNotice(
                    clock: first + UInt64(i), ops: ops, by: by, node: node, pushID: m["id"], committedAtMs: atMs,
                    sum: m["sum"]?.stringValue.flatMap { DocChecksum(hex: $0) }))
        }
        return notices
    }
}

extension CommitNotice: Equatable {
    /// Equal commits: the caches are derived from `ops` and do not count.
    public static func == (a: CommitNotice, b: CommitNotice) -> Bool {
        a.clock == b.clock && a.by == b.by && a.node == b.node && a.pushID == b.pushID
            && a.committedAtMs == b.committedAtMs && a.ops == b.ops && a.sum == b.sum
    }
}
