/// The JSON forms of a doc's history (issue 15, docs/history.md): sealed segments of commits and
/// checkpoints of the whole state. Pure: compression is the server's (`HistoryBlob`), these are the bytes
/// it compresses.
///
/// - Segment: columns rather than one object per commit, so zlib sees long runs of alike values:
///   `{"v":2,"first":F,"sessions":[SID,…],"nodes":[NODE,…],"by":[i,…],"node":[i,…],"at":[MS,Δ,…],"id":[PUSHID|null,…],"ops":[OPS,…]}`
///   — commit k has clock F + k, session `sessions[by[k]]`, node `nodes[node[k]]`, time `at[0] + … + at[k]`
///   (deltas: a node's clock may step back, so a delta may be negative). Per commit the metadata then costs
///   about what its ops do after compression, where one object per commit repeated the field names, a
///   22-character session id, a node name and a 13-digit time in every commit (measured: 5× the
///   compressed ops for small ops, against about 1.5× in columns).
/// - Checkpoint: `{"clock":CLOCK,"at":MS,"records":{ID:RECORD,…}}`, the records after commit CLOCK. The
///   sealer's Lua base checkpoint has the same form.
public enum HistoryCodec {
    /// Nesting allowed when reading history back: records and ops nest at most `maxStoredJSONDepth` (128)
    /// inside the levels these forms add.
    public static let maxDepth = 136

    public static func encodeSegment(_ commits: [CommitNotice]) -> [UInt8] {
        var sessions: [String] = []
        var sessionIndex: [String: Int] = [:]
        var nodes: [String] = []
        var nodeIndex: [String: Int] = [:]
        var by: [Int] = []
        var node: [Int] = []
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
        var w = JSONWriter(capacity: 128 + commits.count * 96)
        w.openObject()
        w.key("v"); w.integer(2); w.comma()
        w.key("first"); w.integer(commits.first?.clock ?? 0); w.comma()
        w.key("sessions"); w.array(sessions) { w, s in w.string(s) }; w.comma()
        w.key("nodes"); w.array(nodes) { w, n in w.string(n) }; w.comma()
        w.key("by"); w.array(by) { w, i in w.integer(i) }; w.comma()
        w.key("node"); w.array(node) { w, i in w.integer(i) }; w.comma()
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
        w.key("id"); w.array(commits) { w, c in w.write(c.pushID ?? .null) }; w.comma()
        w.key("ops"); w.array(commits) { w, c in c.writeOps(into: &w) }
        w.closeObject()
        return w.bytes
    }

    /// The commits of a segment; throws unless every column is well formed and as long as the others.
    public static func decodeSegment(_ bytes: some Collection<UInt8>) throws(HistoryError) -> [CommitNotice] {
        guard let o = (try? JSONParser.parse(bytes, maxDepth: maxDepth))?.objectValue, o["v"] == .number("2"),
            let first = o["first"]?.uint64Value, let sessions = o["sessions"]?.arrayValue?.compactMap(\.stringValue),
            let nodes = o["nodes"]?.arrayValue?.compactMap(\.stringValue), let by = o["by"]?.arrayValue,
            let node = o["node"]?.arrayValue, let at = o["at"]?.arrayValue, let ids = o["id"]?.arrayValue,
            let ops = o["ops"]?.arrayValue
        else { throw .corrupt("a history segment is not {\"v\":2,\"first\":…,…}") }
        let n = ops.count
        guard by.count == n, node.count == n, at.count == n, ids.count == n, first >= 1 || n == 0,
            first <= ClientMessage.maxClock
        else { throw .corrupt("a history segment's columns differ in length") }
        var commits: [CommitNotice] = []
        commits.reserveCapacity(n)
        var time: Int64 = 0
        for k in 0..<n {
            guard let s = by[k].intValue, sessions.indices.contains(s), let d = node[k].intValue, nodes.indices.contains(d),
                case .number(let lexeme) = at[k], let delta = Int64(lexeme), ops[k].isObject
            else { throw .corrupt("commit \(k) of a history segment is malformed") }
            let (sum, overflow) = time.addingReportingOverflow(delta)
            guard !overflow, sum >= 0 else { throw .corrupt("a history segment's times are out of range") }
            time = sum
            commits.append(
                CommitNotice(
                    clock: first + UInt64(k), ops: ops[k], by: sessions[s], node: nodes[d], pushID: ids[k] == .null ? nil : ids[k],
                    committedAtMs: UInt64(time)))
        }
        return commits
    }

    public static func encodeCheckpoint(_ checkpoint: HistoryCheckpoint) -> [UInt8] {
        var w = JSONWriter(capacity: 64 + checkpoint.records.count * 96)
        w.openObject()
        w.key("clock"); w.integer(checkpoint.clock); w.comma()
        w.key("at"); w.integer(checkpoint.atMs); w.comma()
        w.key("records"); w.write(.object(checkpoint.records))
        w.closeObject()
        return w.bytes
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
