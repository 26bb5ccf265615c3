/// The JSON forms of a doc's history (issue 15, docs/history.md): sealed segments of commits and
/// checkpoints of the whole state. Pure: compression is the server's (`HistoryBlob`), these are the bytes
/// it compresses.
///
/// - Segment: `{"v":1,"commits":[{"c":CLOCK,"by":SID,"id":PUSHID,"node":NODE,"at":MS,"ops":OPS},…]}`,
///   contiguous clocks in order. Field names repeat in every commit; zlib takes them out for nearly free,
///   and a self-describing form stays readable by hand (`redis-cli --raw HGET … | zlib-flate -uncompress`).
/// - Checkpoint: `{"clock":CLOCK,"at":MS,"records":{ID:RECORD,…}}`, the records after commit CLOCK. The
///   commit path's base checkpoint (written by a Lua script, uncompressed) has the same form.
public enum HistoryCodec {
    /// Nesting allowed when reading history back: records and ops nest at most `maxStoredJSONDepth` (128)
    /// inside the two levels these forms add.
    public static let maxDepth = 136

    public static func encodeSegment(_ commits: [CommitNotice]) -> [UInt8] {
        var w = JSONWriter(capacity: 64 + commits.count * 160)
        w.openObject()
        w.key("v"); w.integer(1); w.comma()
        w.key("commits")
        w.array(commits) { w, commit in
            w.openObject()
            w.key("c"); w.integer(commit.clock); w.comma()
            w.key("by"); w.string(commit.by); w.comma()
            if let pushID = commit.pushID { w.key("id"); w.write(pushID); w.comma() }
            w.key("node"); w.string(commit.node); w.comma()
            w.key("at"); w.integer(commit.committedAtMs); w.comma()
            w.key("ops"); commit.writeOps(into: &w)
            w.closeObject()
        }
        w.closeObject()
        return w.bytes
    }

    /// The commits of a segment; throws unless every commit is well formed and the clocks are contiguous.
    public static func decodeSegment(_ bytes: some Collection<UInt8>) throws(HistoryError) -> [CommitNotice] {
        guard let root = try? JSONParser.parse(bytes, maxDepth: maxDepth), let items = root.objectValue?["commits"]?.arrayValue
        else { throw .corrupt("a history segment is not {\"v\":1,\"commits\":[…]}") }
        var commits: [CommitNotice] = []
        commits.reserveCapacity(items.count)
        for item in items {
            guard let o = item.objectValue, let clock = o["c"]?.uint64Value, let ops = o["ops"], ops.isObject,
                let by = o["by"]?.stringValue, let node = o["node"]?.stringValue, let at = o["at"]?.uint64Value
            else { throw .corrupt("a commit of a history segment is malformed") }
            if let last = commits.last, clock != last.clock + 1 { throw .corrupt("a history segment's clocks are not contiguous") }
            commits.append(CommitNotice(clock: clock, ops: ops, by: by, node: node, pushID: o["id"], committedAtMs: at))
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
