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

/// The answer to `{"t":"at",…}` in chunks like a snapshot's:
/// `{"t":"at","doc":D,"clock":N,"at":MS,"records":{…},"more":B}`, records in id order, each chunk at most
/// `ServerMessage.maxChunkItems` records and about `maxChunkBytes`; the last has `more: false`.
public struct HistoryStateChunker: CatchUpChunker {
    public let doc: String
    public let clock: UInt64
    public let atMs: UInt64
    private let records: [String: JSONValue]
    private let ids: [String]
    private var index = 0
    private var emittedAny = false

    public init(doc: String, clock: UInt64, atMs: UInt64, records: [String: JSONValue]) {
        self.doc = doc
        self.clock = clock
        self.atMs = atMs
        self.records = records
        self.ids = records.keys.sorted()
    }

    public var isFinished: Bool { emittedAny && index >= ids.count }

    public func estimatedRemainingBytes(upTo cap: Int) -> Int {
        guard !isFinished else { return 0 }
        var total = 80 + doc.utf8.count
        var i = index
        while i < ids.count, total < cap {
            total += ids[i].utf8.count + 4 + (records[ids[i]].map { ServerMessage.estimatedSize(of: $0, upTo: cap) } ?? 0)
            i += 1
        }
        return min(total, cap)
    }

    public mutating func next() -> [UInt8]? {
        guard !isFinished else { return nil }
        var w = JSONWriter(capacity: 256)
        w.openObject()
        w.key("t"); w.string("at"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("clock"); w.integer(clock); w.comma()
        w.key("at"); w.integer(atMs); w.comma()
        w.key("records"); w.openObject()
        var count = 0
        let start = w.bytes.count
        while index < ids.count, count < ServerMessage.maxChunkItems, w.bytes.count - start < ServerMessage.maxChunkBytes {
            if count > 0 { w.comma() }
            w.string(ids[index]); w.raw(":"); w.write(records[ids[index]]!)
            index += 1
            count += 1
        }
        w.closeObject(); w.comma()
        emittedAny = true
        w.key("more"); w.bool(index < ids.count)
        w.closeObject()
        return w.bytes
    }
}
