/// The JSON forms of a doc's history (issue 15, docs/history.md): sealed segments of commits and
/// checkpoints of the whole state. Pure: compression is the server's (`HistoryBlob`), these are the bytes
/// it compresses.
///
/// - Segment (v3): columns rather than one object per commit, so zlib sees long runs of alike values:
///   `{"v":3,"first":F,"sessions":[SID,…],"nodes":[NODE,…],"by":BY,"node":NODE,"at":[MS,Δ,…],"notes":{K:NOTE,…},"ops":[OPS,…]}`
///   — commit k has clock F + k, session `sessions[by[k]]`, node `nodes[node[k]]`, time `at[0] + … + at[k]`
///   (deltas: a node's clock may step back, so a delta may be negative). `by` and `node` are strings of one
///   character per commit (`indexAlphabet[i]`) while there are at most 64 sessions / nodes, arrays of
///   indexes beyond: one byte rather than a digit and a comma each, about half their compressed size.
///   Push ids are not kept: they only match a `result` to its push, and a client re-pushing reads the live
///   log. What is kept is a push id that is a note (an object: a fork's `{"forkOf":…}`), in `notes` by
///   index k. Measured on the history bench's ops (docs/benchmarks.md): one object per commit cost 5× the
///   compressed ops, v2's columns with push ids 2.4×, v3 in 1,000-commit segments 1.7×.
///   The ops come last. `encodeSegmentParts` splits the JSON where a compressor does well to start
///   afresh (blobs v4: the columns and the ops are two bzip2 streams; v3: a zlib flush).
/// - Segment (v2, still read): the same with `by`/`node` arrays and an `"id":[PUSHID|null,…]` column.
/// - Checkpoint: `{"clock":CLOCK,"at":MS,"records":{ID:RECORD,…}}`, the records after commit CLOCK. The
///   sealer's Lua base checkpoint has the same form.
public enum HistoryCodec {
    /// Nesting allowed when reading history back: records and ops nest at most `maxStoredJSONDepth` (128)
    /// inside the levels these forms add.
    public static let maxDepth = 136
    /// One character per index in the `by` and `node` strings (the base64url alphabet: no JSON escapes).
    static let indexAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func encodeSegment(_ commits: [CommitNotice]) -> [UInt8] {
        let parts = encodeSegmentParts(commits)
        return parts.columns + parts.times + parts.ops
    }

    /// A segment's JSON in three parts, where a compressor may start afresh: everything up to the `at`
    /// column (ids and the `by`/`node` characters), `at` and `notes` (digits), and the ops (with the
    /// closing brace). The sealer compresses the columns and the ops apart (`HistorySealer`).
    public static func encodeSegmentParts(_ commits: [CommitNotice]) -> (columns: [UInt8], times: [UInt8], ops: [UInt8]) {
        var sessions: [String] = []
        var sessionIndex: [String: Int] = [:]
        var nodes: [String] = []
        var nodeIndex: [String: Int] = [:]
        var by: [Int] = []
        var node: [Int] = []
        by.reserveCapacity(commits.count)
        node.reserveCapacity(commits.count)
        for commit in commits {
            if sessionIndex[commit.by] == nil {
                sessionIndex[commit.by] = sessions.count
                sessions.append(commit.by)
            }
            if nodeIndex[commit.node] == nil {
                nodeIndex[commit.node] = nodes.count
                nodes.append(commit.node)
            }
            by.append(sessionIndex[commit.by]!)
            node.append(nodeIndex[commit.node]!)
        }
        func indexes(_ w: inout JSONWriter, _ list: [Int], count: Int) {
            if count <= indexAlphabet.count {
                w.raw("\"")
                w.raw(list.map { indexAlphabet[$0] })
                w.raw("\"")
            } else {
                w.array(list) { w, i in w.integer(i) }
            }
        }
        var w = JSONWriter(capacity: 128 + commits.count * 8 + sessions.count * 32)
        w.openObject()
        w.key("v"); w.integer(3); w.comma()
        w.key("first"); w.integer(commits.first?.clock ?? 0); w.comma()
        w.key("sessions"); w.array(sessions) { w, s in w.string(s) }; w.comma()
        w.key("nodes"); w.array(nodes) { w, n in w.string(n) }; w.comma()
        w.key("by"); indexes(&w, by, count: sessions.count); w.comma()
        w.key("node"); indexes(&w, node, count: nodes.count); w.comma()
        let columns = w.bytes
        w = JSONWriter(capacity: 64 + commits.count * 4)
        w.key("at")
        w.openArray()
        var previous: UInt64 = 0
        for (k, commit) in commits.enumerated() {
            if k > 0 { w.comma() }
            let at = commit.committedAtMs
            if at >= previous { w.integer(at - previous) } else { w.raw("-"); w.integer(previous - at) }
            previous = at
        }
        w.closeArray(); w.comma()
        w.key("notes")
        w.openObject()
        var firstNote = true
        for (k, commit) in commits.enumerated() {
            guard let id = commit.pushID, id.isObject else { continue }
            if !firstNote { w.comma() }
            firstNote = false
            w.string(String(k)); w.raw(":"); w.write(id)
        }
        w.closeObject(); w.comma()
        w.key("ops")
        let times = w.bytes
        var o = JSONWriter(capacity: 16 + commits.count * 64)
        o.array(commits) { o, c in c.writeOps(into: &o) }
        o.closeObject()
        return (columns, times, o.bytes)
    }

    /// The commits of a segment (v3 or v2); throws unless every column is well formed and as long as the
    /// others. v3 commits carry no push id but their note.
    public static func decodeSegment(_ bytes: some Collection<UInt8>) throws(HistoryError) -> [CommitNotice] {
        guard let o = (try? JSONParser.parse(bytes, maxDepth: maxDepth))?.objectValue, o["v"] == .number("2") || o["v"] == .number("3"),
            let first = o["first"]?.uint64Value, let sessions = o["sessions"]?.arrayValue?.compactMap(\.stringValue),
            let nodes = o["nodes"]?.arrayValue?.compactMap(\.stringValue), let by = indexColumn(o["by"]),
            let node = indexColumn(o["node"]), let at = o["at"]?.arrayValue, let ops = o["ops"]?.arrayValue
        else { throw .corrupt("a history segment is not {\"v\":3,\"first\":…,…}") }
        let n = ops.count
        var ids: [JSONValue?] = Array(repeating: nil, count: n)
        if o["v"] == .number("2") {
            guard let column = o["id"]?.arrayValue, column.count == n else { throw .corrupt("a history segment's columns differ in length") }
            ids = column.map { $0 == .null ? nil : $0 }
        } else if let notes = o["notes"]?.objectValue {
            for (key, note) in notes {
                guard let k = Int(key), ids.indices.contains(k) else { throw .corrupt("a history segment's note is out of range") }
                ids[k] = note
            }
        }
        guard by.count == n, node.count == n, at.count == n, first >= 1 || n == 0, first <= ClientMessage.maxClock
        else { throw .corrupt("a history segment's columns differ in length") }
        var commits: [CommitNotice] = []
        commits.reserveCapacity(n)
        var time: Int64 = 0
        for k in 0..<n {
            let s = by[k]
            let d = node[k]
            guard sessions.indices.contains(s), nodes.indices.contains(d), case .number(let lexeme) = at[k], let delta = Int64(lexeme),
                ops[k].isObject
            else { throw .corrupt("commit \(k) of a history segment is malformed") }
            let (sum, overflow) = time.addingReportingOverflow(delta)
            guard !overflow, sum >= 0 else { throw .corrupt("a history segment's times are out of range") }
            time = sum
            commits.append(
                CommitNotice(
                    clock: first + UInt64(k), ops: ops[k], by: sessions[s], node: nodes[d], pushID: ids[k],
                    committedAtMs: UInt64(time)))
        }
        return commits
    }

    /// A `by`/`node` column: a string of `indexAlphabet` characters, or an array of indexes (-1 for one
    /// that is not an index: the caller's range check refuses it). Nil when it is neither.
    private static func indexColumn(_ value: JSONValue?) -> [Int]? {
        switch value {
        case .string(let s)?:
            var out: [Int] = []
            out.reserveCapacity(s.utf8.count)
            for c in s.utf8 { out.append(alphabetIndex[Int(c)]) }
            return out
        case .array(let items)?:
            return items.map { $0.intValue ?? -1 }
        default:
            return nil
        }
    }

    private static let alphabetIndex: [Int] = {
        var table = Array(repeating: -1, count: 256)
        for (i, c) in indexAlphabet.enumerated() { table[Int(c)] = i }
        return table
    }()

    public static func encodeCheckpoint(_ checkpoint: HistoryCheckpoint) -> [UInt8] {
        var w = JSONWriter(capacity: 64 + checkpoint.records.count * 96)
        w.openObject()
        w.key("clock"); w.integer(checkpoint.clock); w.comma()
        w.key("at"); w.integer(checkpoint.atMs); w.comma()
        w.key("records"); w.write(.object(checkpoint.records))
        w.closeObject()
        return w.bytes
    }

    /// A delta checkpoint (blobs v5): `{"clock":C,"at":MS,"base":B,"ops":OPS}`, where OPS (protocol v1's
    /// ops: `put`, `patch` with field `put`/`delete`, `remove`) turn the checkpoint at clock B — the one
    /// before it — into the state after commit C. Stored in the checkpoints hash under `d:C`, and a read
    /// walks back to the full checkpoint the chain starts at (`HistoryScripts.read`). Why: on a big doc a
    /// checkpoint every 1,000 commits is the whole state again (the `history-at` doc: 1,000 records of
    /// ~90 B, 60 % of its history's bytes), while the commits between two checkpoints touch a part of
    /// it and, of a record, usually one field; a field-level delta holds only that.
    public static func encodeCheckpointDelta(from base: HistoryCheckpoint, to target: HistoryCheckpoint) -> [UInt8] {
        let ops = deltaOps(from: base.records, to: target.records)
        var w = JSONWriter(capacity: 64 + ops.records.count * 48)
        w.openObject()
        w.key("clock"); w.integer(target.clock); w.comma()
        w.key("at"); w.integer(target.atMs); w.comma()
        w.key("base"); w.integer(base.clock); w.comma()
        w.key("ops"); w.write(ops.json)
        w.closeObject()
        return w.bytes
    }

    /// The ops that turn `current` into `target`, field by field where both are objects and fewer than
    /// all fields changed (a `patch` of the fields that differ, `delete` of those gone), else a `put` of
    /// the record; `remove` for records `target` lacks. Applied (`applyCheckpointDelta`), they give
    /// `target` exactly (a field `put` replaces the whole field, nested objects included).
    static func deltaOps(from current: [String: JSONValue], to target: [String: JSONValue]) -> Ops {
        var ops: [String: RecordOp] = [:]
        for (id, value) in target {
            guard let old = current[id] else {
                ops[id] = .put(value)
                continue
            }
            guard old != value else { continue }
            guard case .object(let before) = old, case .object(let after) = value else {
                ops[id] = .put(value)
                continue
            }
            var fields: [String: FieldOp] = [:]
            for (field, v) in after where before[field] != v { fields[field] = .put(v) }
            for field in before.keys where after[field] == nil { fields[field] = .delete }
            ops[id] = fields.count < after.count ? .patch(Diff(fields)) : .put(value)
        }
        for id in current.keys where target[id] == nil { ops[id] = .remove }
        return Ops(ops)
    }

    /// The state a delta checkpoint describes, applied to `base` (which must be the checkpoint it was
    /// made against: its `base` clock, else `.corrupt`).
    public static func applyCheckpointDelta(_ bytes: some Collection<UInt8>, to base: HistoryCheckpoint) throws(HistoryError)
        -> HistoryCheckpoint
    {
        guard let root = try? JSONParser.parse(bytes, maxDepth: maxDepth), let o = root.objectValue,
            let clock = o["clock"]?.uint64Value, let from = o["base"]?.uint64Value, let json = o["ops"], json.isObject
        else { throw .corrupt("a delta checkpoint is not {\"clock\":…,\"at\":…,\"base\":…,\"ops\":{…}}") }
        guard from == base.clock, clock > from else {
            throw .corrupt("a delta checkpoint at \(clock) stands on \(from), not on the checkpoint at \(base.clock)")
        }
        // Applied straight from the JSON rather than through `Ops(json:)`, whose validation formats an
        // error path for every record and field: a read applies up to 7 deltas of hundreds of records,
        // and only the forms `deltaOps` writes are accepted (anything else is corrupt).
        guard case .object(let entries) = json else { throw .corrupt("a delta checkpoint's ops are not an object") }
        var records = base.records
        for (id, op) in entries {
            guard case .array(let parts) = op, let verb = parts.first?.stringValue else {
                throw .corrupt("a delta checkpoint at \(clock) holds malformed ops")
            }
            switch (verb, parts.count) {
            case ("put", 2) where parts[1].isObject:
                records[id] = parts[1]
            case ("remove", 1):
                records.removeValue(forKey: id)
            case ("patch", 2):
                guard case .object(let fields) = parts[1], case .object(var object)? = records[id] else {
                    throw .corrupt("a delta checkpoint at \(clock) patches what is not a record")
                }
                for (field, fieldOp) in fields {
                    guard case .array(let f) = fieldOp, let fieldVerb = f.first?.stringValue else {
                        throw .corrupt("a delta checkpoint at \(clock) holds malformed ops")
                    }
                    switch (fieldVerb, f.count) {
                    case ("put", 2): object[field] = f[1]
                    case ("delete", 1): object.removeValue(forKey: field)
                    default: throw .corrupt("a delta checkpoint at \(clock) holds malformed ops")
                    }
                }
                records[id] = .object(object)
            default:
                throw .corrupt("a delta checkpoint at \(clock) holds malformed ops")
            }
        }
        return HistoryCheckpoint(clock: clock, atMs: o["at"]?.uint64Value ?? 0, records: records)
    }

    public static func decodeCheckpoint(_ bytes: some Collection<UInt8>) throws(HistoryError) -> HistoryCheckpoint {
        guard let root = try? JSONParser.parse(bytes, maxDepth: maxDepth), let o = root.objectValue,
            let clock = o["clock"]?.uint64Value, let records = o["records"]?.objectValue
        else { throw .corrupt("a history checkpoint is not {\"clock\":…,\"at\":…,\"records\":{…}}") }
        return HistoryCheckpoint(clock: clock, atMs: o["at"]?.uint64Value ?? 0, records: records)
    }
}

/// The whole state of a doc after commit `clock` (`atMs`: that commit's time; 0 for clock 0).
public struct HistoryCheckpoint: Equatable, Sendable {
    public var clock: UInt64
    public var atMs: UInt64
    public var records: [String: JSONValue]

    public init(clock: UInt64, atMs: UInt64, records: [String: JSONValue]) {
        self.clock = clock
        self.atMs = atMs
        self.records = records
    }
}

/// Why history could not be read or used.
public enum HistoryError: Error, Equatable, Sendable {
    /// Stored history does not decode (a corrupted key, or written by something else).
    case corrupt(String)
    /// The clocks needed are not in the history (before its start, or a gap).
    case missing(String)
}
