/// Encoders for the document sync messages (protocol v1).
extension ServerMessage {
    /// Catch-up chunks hold at most this many records or entries…
    public static let maxChunkItems = 5_000
    /// …and at most about this many bytes.
    public static let maxChunkBytes = 1 << 20

    /// `{"t":"patch","doc":D,"clock":N,"ops":OPS,"by":SID,"id":PUSHID}`: a commit by someone else.
    ///
    /// A patch and a result are written per commit on the doc's loop: the fixed parts go in as one literal
    /// each (`"key":` by `"key":` with the separators cost ~270 instructions a key, ~1,900 a message;
    /// callgrind, issue 8 stop 28), the clock's digits and the checksum's hex without a string.
    public static func patch(doc: String, commit: CommitNotice) -> [UInt8] {
        var w = JSONWriter(capacity: 128 + doc.utf8.count + commit.by.utf8.count + (commit.encodedOps?.count ?? 128))
        w.raw("{\"t\":\"patch\",\"doc\":"); w.string(doc)
        w.raw(",\"clock\":"); w.integer(commit.clock)
        w.raw(",\"ops\":"); commit.writeOps(into: &w)
        w.raw(",\"by\":"); w.string(commit.by)
        // The pusher's id, as in log entries: a client whose push was refused `unavailable` after Redis
        // executed it (or whose connection dropped) recognises its own commit (protocol.md, "Redis unavailable").
        if let id = commit.pushID { w.raw(",\"id\":"); w.write(id) }
        // The doc's checksum after this commit (issue 13): the client verifies its state against it.
        if let sum = commit.sum { w.raw(",\"sum\":"); w.checksum(sum) }
        w.closeObject()
        return w.bytes
    }

    /// `{"t":"result","doc":D,"id":ID,"action":A,"clock":N,"ops":APPLIED?,"reason":R?}` to the pusher.
    /// `ops` is present for rebases (what the server applied instead).
    public static func result(
        doc: String, id: JSONValue, action: PushDecision.Action, clock: UInt64, applied: JSONValue?, reason: String?,
        violation: RecordViolation? = nil, sum: DocChecksum? = nil
    ) -> [UInt8] {
        var w = JSONWriter(capacity: 128 + doc.utf8.count)
        w.raw("{\"t\":\"result\",\"doc\":"); w.string(doc)
        w.raw(",\"id\":"); w.write(id)
        switch action {
        case .commit: w.raw(",\"action\":\"commit\",\"clock\":")
        case .rebase: w.raw(",\"action\":\"rebase\",\"clock\":")
        case .discard: w.raw(",\"action\":\"discard\",\"clock\":")
        }
        w.integer(clock)
        if let applied { w.raw(",\"ops\":"); w.write(applied) }
        if let reason { w.raw(",\"reason\":"); w.string(reason) }
        if let sum { w.raw(",\"sum\":"); w.checksum(sum) }
        if let violation {
            // {"record":ID,"type":NAME,"path":"/json/pointer","message":TEXT}: what a client shows or logs.
            w.comma(); w.key("invalid"); w.openObject()
            w.key("record"); w.string(violation.record); w.comma()
            if let type = violation.recordType { w.key("type"); w.string(type); w.comma() }
            w.key("path"); w.string(violation.path); w.comma()
            w.key("message"); w.string(violation.message)
            w.closeObject()
        }
        w.closeObject()
        return w.bytes
    }

    /// One log entry: `{"clock":N,"ops":OPS,"by":SID,"id":PUSHID}` (`id` lets a client recognise its own
    /// pushes when it catches up after a disconnect).
    static func writeEntry(_ commit: CommitNotice, into w: inout JSONWriter) {
        w.openObject()
        w.key("clock"); w.integer(commit.clock); w.comma()
        w.key("ops"); commit.writeOps(into: &w); w.comma()
        w.key("by"); w.string(commit.by)
        if let id = commit.pushID { w.comma(); w.key("id"); w.write(id) }
        if let sum = commit.sum { w.comma(); w.key("sum"); w.string(sum.hex) }
        w.closeObject()
    }

    /// One `{"t":"snapshot","doc":D,"clock":H,"records":{…},"more":B}` chunk from pre-encoded records.
    /// `sum` (issue 13): the checksum of the whole snapshot at `head`, in every chunk.
    public static func snapshotChunk(
        doc: String, head: UInt64, records: [(id: String, json: [UInt8])], more: Bool, sum: DocChecksum? = nil
    ) -> [UInt8] {
        var w = JSONWriter(capacity: records.reduce(96) { $0 + $1.json.count + $1.id.utf8.count + 4 })
        w.openObject()
        w.key("t"); w.string("snapshot"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("clock"); w.integer(head); w.comma()
        w.key("records"); w.openObject()
        for (i, record) in records.enumerated() {
            if i > 0 { w.comma() }
            w.string(record.id)
            w.raw(":")
            w.raw(record.json)
        }
        w.closeObject(); w.comma()
        w.key("more"); w.bool(more)
        if let sum { w.comma(); w.key("sum"); w.string(sum.hex) }
        w.closeObject()
        return w.bytes
    }
}

/// A catch-up (log or snapshot) produced one chunk at a time, so it is encoded and queued only as fast
/// as the client reads. Queued all at once, a catch-up longer than `--max-outbound-bytes` closed the
/// client with 1013 every time it came back: exactly the clients that fell behind could never catch up.
public protocol CatchUpChunker: Sendable {
    /// The doc the catch-up is for.
    var doc: String { get }
    /// True once every chunk (at least one) was produced.
    var isFinished: Bool { get }
    /// The next complete frame, or nil when finished.
    mutating func next() -> [UInt8]?
    /// About how many bytes the frames not produced yet will take, counting no further than `cap` (so a
    /// large catch-up is not walked in full just to be accounted for).
    func estimatedRemainingBytes(upTo cap: Int) -> Int
}

extension ServerMessage {
    /// About how many bytes `value` serializes to (strings without escapes), without serializing it.
    /// Stops adding once the total passes `cap`.
    static func estimatedSize(of value: JSONValue, upTo cap: Int) -> Int {
        switch value {
        case .null: return 4
        case .bool(let b): return b ? 4 : 5
        case .number(let lexeme): return lexeme.utf8.count
        case .string(let s): return s.utf8.count + 2
        case .array(let items):
            var total = 2
            for item in items {
                total += estimatedSize(of: item, upTo: cap) + 1
                if total >= cap { break }
            }
            return total
        case .object(let fields):
            var total = 2
            for (key, item) in fields {
                total += key.utf8.count + 4 + estimatedSize(of: item, upTo: cap)
                if total >= cap { break }
            }
            return total
        }
    }
}

/// `{"t":"log","doc":D,"entries":[…],"head":H,"more":B}` chunks of at most `maxChunkItems` entries or
/// about `maxChunkBytes`; the last has `more` = `moreAfter`. No entries gives one empty chunk.
public struct LogChunker: CatchUpChunker {
    public let doc: String
    public let head: UInt64
    private let entries: [CommitNotice]
    private let moreAfter: Bool
    private var index = 0
    private var emittedAny = false

    public init(doc: String, entries: some Collection<CommitNotice>, head: UInt64, moreAfter: Bool) {
        self.doc = doc
        self.head = head
        self.entries = Array(entries)
        self.moreAfter = moreAfter
    }

    public var isFinished: Bool { emittedAny && index >= entries.count }

    public func estimatedRemainingBytes(upTo cap: Int) -> Int {
        guard !isFinished else { return 0 }
        var total = 64 + doc.utf8.count
        var i = index
        while i < entries.count, total < cap {
            let entry = entries[i]
            total += 48 + entry.by.utf8.count + ServerMessage.estimatedSize(of: entry.ops, upTo: cap)
                + (entry.pushID.map { ServerMessage.estimatedSize(of: $0, upTo: cap) } ?? 0)
            i += 1
        }
        return min(total, cap)
    }

    public mutating func next() -> [UInt8]? {
        guard !isFinished else { return nil }
        var body = JSONWriter(capacity: 1024)
        var count = 0
        while index < entries.count, count < ServerMessage.maxChunkItems, body.bytes.count < ServerMessage.maxChunkBytes {
            if count > 0 { body.comma() }
            ServerMessage.writeEntry(entries[index], into: &body)
            count += 1
            index += 1
        }
        emittedAny = true
        var w = JSONWriter(capacity: body.bytes.count + 96)
        w.openObject()
        w.key("t"); w.string("log"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("entries"); w.openArray(); w.raw(body.bytes); w.closeArray(); w.comma()
        w.key("head"); w.integer(head); w.comma()
        w.key("more"); w.bool(index < entries.count || moreAfter)
        w.closeObject()
        return w.bytes
    }
}

/// Produces snapshot chunks one at a time, so a large doc is encoded only as fast as the client reads.
public struct SnapshotChunker: CatchUpChunker {
    public let doc: String
    public let head: UInt64
    private let records: [String: JSONValue]
    private let ids: [String]
    private let sum: DocChecksum?
    private var index = 0
    private var emittedAny = false

    public init(doc: String, head: UInt64, records: [String: JSONValue], sum: DocChecksum? = nil) {
        self.doc = doc
        self.head = head
        self.records = records
        self.sum = sum
        self.ids = records.keys.sorted()
    }

    public var isFinished: Bool { emittedAny && index >= ids.count }

    public func estimatedRemainingBytes(upTo cap: Int) -> Int {
        guard !isFinished else { return 0 }
        var total = 64 + doc.utf8.count
        var i = index
        while i < ids.count, total < cap {
            total += ids[i].utf8.count + 4 + (records[ids[i]].map { ServerMessage.estimatedSize(of: $0, upTo: cap) } ?? 0)
            i += 1
        }
        return min(total, cap)
    }

    public mutating func next() -> [UInt8]? {
        guard let batch = nextBatch() else { return nil }
        return ServerMessage.snapshotChunk(doc: doc, head: head, records: batch, more: !isFinished, sum: sum)
    }

    /// The next chunk's records (id order, serialized), nil once finished; `next()` wraps them in a
    /// snapshot message, other answers in chunks of records (history's `at`) in theirs.
    public mutating func nextBatch() -> [(id: String, json: [UInt8])]? {
        guard !isFinished else { return nil }
        var batch: [(id: String, json: [UInt8])] = []
        var bytes = 0
        while index < ids.count, batch.count < ServerMessage.maxChunkItems, bytes < ServerMessage.maxChunkBytes {
            let json = records[ids[index]]!.serialized
            batch.append((ids[index], json))
            bytes += json.count + ids[index].utf8.count
            index += 1
        }
        emittedAny = true
        return batch
    }
}

extension JSONWriter {
    /// A checksum as its JSON string (`"` + 16 hex digits + `"`), without making the `hex` string.
    mutating func checksum(_ sum: DocChecksum) {
        raw("\"")
        written(DocChecksum.hexLength) { sum.writeHex(to: $0.baseAddress!) }
        raw("\"")
    }
}
