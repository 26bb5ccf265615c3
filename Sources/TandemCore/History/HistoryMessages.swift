/// The protocol's history answers (issue 15, docs/protocol.md "Version history").
extension ServerMessage {
    /// `{"t":"history","doc":D,"head":H,"versions":[…],"more":B}`.
    public static func history(doc: String, head: UInt64, versions: [HistoryVersion], more: Bool) -> [UInt8] {
        var w = JSONWriter(capacity: 96 + versions.count * 128)
        w.openObject()
        w.key("t"); w.string("history"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("head"); w.integer(head); w.comma()
        w.key("versions"); w.array(versions) { w, version in w.raw(version.json) }; w.comma()
        w.key("more"); w.bool(more)
        w.closeObject()
        return w.bytes
    }

    /// `{"t":"restored","doc":D,"restoredFrom":N,"clock":C?,"changed":B}`: the restore's commit (the
    /// client also receives it as a `patch`, like every member).
    public static func restored(doc: String, from clock: UInt64, committed: UInt64?) -> [UInt8] {
        var w = JSONWriter()
        w.openObject()
        w.key("t"); w.string("restored"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("restoredFrom"); w.integer(clock); w.comma()
        if let committed { w.key("clock"); w.integer(committed); w.comma() }
        w.key("changed"); w.bool(committed != nil)
        w.closeObject()
        return w.bytes
    }
}

/// The answer to `{"t":"at",…}` in chunks like a snapshot's (the same batching: `SnapshotChunker`):
/// `{"t":"at","doc":D,"clock":N,"at":MS,"records":{…},"more":B}`, records in id order, each chunk at most
/// `ServerMessage.maxChunkItems` records and about `maxChunkBytes`; the last has `more: false`.
public struct HistoryStateChunker: CatchUpChunker {
    public let doc: String
    public let clock: UInt64
    public let atMs: UInt64
    private var records: SnapshotChunker

    public init(doc: String, clock: UInt64, atMs: UInt64, records: [String: JSONValue]) {
        self.doc = doc
        self.clock = clock
        self.atMs = atMs
        self.records = SnapshotChunker(doc: doc, head: clock, records: records)
    }

    public var isFinished: Bool { records.isFinished }

    public func estimatedRemainingBytes(upTo cap: Int) -> Int {
        isFinished ? 0 : min(cap, records.estimatedRemainingBytes(upTo: cap) + 16)  // "at":MS beyond a snapshot's envelope
    }

    public mutating func next() -> [UInt8]? {
        guard let batch = records.nextBatch() else { return nil }
        var w = JSONWriter(capacity: 96 + batch.reduce(0) { $0 + $1.id.utf8.count + $1.json.count + 4 })
        w.openObject()
        w.key("t"); w.string("at"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("clock"); w.integer(clock); w.comma()
        w.key("at"); w.integer(atMs); w.comma()
        w.key("records"); w.openObject()
        for (k, record) in batch.enumerated() {
            if k > 0 { w.comma() }
            w.string(record.id); w.raw(":"); w.raw(record.json)
        }
        w.closeObject(); w.comma()
        w.key("more"); w.bool(!records.isFinished)
        w.closeObject()
        return w.bytes
    }
}
