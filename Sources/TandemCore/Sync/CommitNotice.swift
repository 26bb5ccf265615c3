/// One committed change of a document, as nodes announce it to each other and as clients receive it.
public struct CommitNotice: Equatable, Sendable {
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

    public init(clock: UInt64, ops: JSONValue, by: String, node: String, pushID: JSONValue?, committedAtMs: UInt64) {
        self.clock = clock
        self.ops = ops
        self.by = by
        self.node = node
        self.pushID = pushID
        self.committedAtMs = committedAtMs
    }

    func writeFields(into w: inout JSONWriter) {
        w.key("clock"); w.integer(clock); w.comma()
        w.key("ops"); w.write(ops); w.comma()
        w.key("by"); w.string(by); w.comma()
        w.key("node"); w.string(node); w.comma()
        if let pushID { w.key("id"); w.write(pushID); w.comma() }
        w.key("at"); w.integer(committedAtMs)
    }

    init?(fields o: [String: JSONValue]) {
        guard let clock = o["clock"]?.uint64Value, let ops = o["ops"], ops.isObject, let by = o["by"]?.stringValue,
            let node = o["node"]?.stringValue, let at = o["at"]?.uint64Value
        else { return nil }
        self.init(clock: clock, ops: ops, by: by, node: node, pushID: o["id"], committedAtMs: at)
    }
}
