import TandemCore

/// Folds the OPS of a later edit into an earlier, not yet sent push, so that edits made while a push is in
/// flight leave as one push (at most one push per doc is in flight).
///
/// `compose(a, b)` is the one push whose effect on any record state equals applying `a`, then `b`, under the
/// rules of docs/protocol.md — or nil when no single op says that (an append that does not continue the
/// previous one, an append after a patch of the same field): the caller then queues `b` as its own push.
/// Composition keeps what matters to the server's decision: a `patch` stays a `patch` (void on a record
/// removed concurrently), a `put` stays a `put` (always applies).
enum OpsCoalescing {
    static func compose(_ first: Ops, _ second: Ops) -> Ops? {
        var records = first.records
        for (id, op) in second.records {
            guard let earlier = records[id] else {
                records[id] = op
                continue
            }
            guard let combined = compose(earlier, op) else { return nil }
            records[id] = combined
        }
        return Ops(records)
    }

    static func compose(_ first: RecordOp, _ second: RecordOp) -> RecordOp? {
        switch (first, second) {
        case (_, .put), (_, .remove):
            // A put replaces whatever came before; a remove removes it (void either way if the record is gone).
            return second
        case (.put(let record), .patch(let diff)):
            return .put(applying(diff, to: record))
        case (.remove, .patch):
            // Patching a removed record is void.
            return .remove
        case (.patch(let earlier), .patch(let later)):
            return compose(earlier, later).map(RecordOp.patch)
        }
    }

    static func compose(_ first: Diff, _ second: Diff) -> Diff? {
        var fields = first.fields
        for (name, op) in second.fields {
            guard let earlier = fields[name] else {
                fields[name] = op
                continue
            }
            guard let combined = compose(earlier, op) else { return nil }
            fields[name] = combined
        }
        return Diff(fields)
    }

    static func compose(_ first: FieldOp, _ second: FieldOp) -> FieldOp? {
        switch (first, second) {
        case (_, .put), (_, .delete):
            return second
        case (.put(let value), .patch(let diff)):
            // A nested patch needs an object there; on anything else it is void.
            guard case .object = value else { return first }
            return .put(applying(diff, to: value))
        case (.put(let value), .append(let tail, _)):
            return appended(value, tail).map(FieldOp.put) ?? first
        case (.delete, .patch):
            return .delete
        case (.delete, .append(let tail, let offset)):
            // A missing field counts as empty: the append lands at offset 0.
            return offset == 0 ? .put(tail) : nil
        case (.patch(let earlier), .patch(let later)):
            return compose(earlier, later).map(FieldOp.patch)
        case (.append(let head, let offset), .append(let tail, let next)):
            guard next == offset + length(head), let joined = appended(head, tail) else { return nil }
            return .append(joined, offset: offset)
        case (.patch, .append), (.append, .patch):
            return nil
        }
    }

    /// `record` with `diff` applied, exactly as the server applies a committed patch (`DocReplica`).
    static func applying(_ diff: Diff, to record: JSONValue) -> JSONValue {
        var replica = DocReplica(records: ["r": record])
        replica.apply(clock: 1, ops: Ops(["r": .patch(diff)]))
        return replica.records["r"] ?? record
    }

    /// Length in the units of an append offset: UTF-16 code units of a string, elements of an array.
    static func length(_ value: JSONValue) -> Int {
        switch value {
        case .string(let string): return string.utf16.count
        case .array(let elements): return elements.count
        default: return 0
        }
    }

    static func appended(_ value: JSONValue, _ tail: JSONValue) -> JSONValue? {
        switch (value, tail) {
        case (.string(let a), .string(let b)): return .string(a + b)
        case (.array(let a), .array(let b)): return .array(a + b)
        default: return nil
        }
    }
}
