import FuzzSupport
import TandemCore

// DocReplica.decide / apply over a random sequence of pushes from several clients, each with its own
// base (the clock it had seen), decoded from the fuzzer's bytes. Record ids, field names and values are
// drawn from small sets so that pushes collide: appends at stale offsets, patches of removed records,
// puts over patches, nested patches of non-objects, records at the size and count limits.
//
// Invariants, for every push:
// - decide is deterministic: deciding again, or on a copy of the doc built with another insertion order
//   and ops listed in another order, gives the same decision;
// - applying the decided `applied` ops at head + 1 (what every node does with the commit) advances head
//   by exactly one and yields exactly the records the decision's `writes` describe, touching no others,
//   with versions / tombstones at the new clock;
// - the commit as other nodes see it (applied ops → JSON → parsed) gives the same records;
// - a commit means "exactly as sent": applying the ops as the client sent them gives the same records;
// - re-deciding the applied ops against the same doc at head commits them unchanged;
// - the limits the decision enforced hold (record bytes, push ops, doc records);
// - discard ⇔ nothing applied; expectations name every op's record, `absent` exactly when it is missing.
// And apply with any clock but head + 1 changes nothing.

private let recordIDs = ["a", "b", "c", "d", "é😀"]
private let fieldNames = ["x", "y", "z", "😀"]
private let strings = ["", "a", "é", "😀", "ab", "\u{0}", "\"\\"]
private let numbers = ["0", "1", "-1", "0.5", "1e999", "18446744073709551615", "-9223372036854775808"]

struct Program {
    var input: FuzzInput

    mutating func value(depth: Int) -> JSONValue {
        switch input.int(in: 0...9) {
        case 0: return .null
        case 1: return .bool(input.bool())
        case 2: return .number(input.pick(numbers))
        case 3, 4: return .string(input.pick(strings))
        case 5: return .string(String(repeating: input.pick(["x", "😀"]), count: input.int(in: 0...300)))
        case 6, 7: return .array((0..<input.int(in: 0...3)).map { _ in depth > 0 ? value(depth: depth - 1) : .null })
        default: return depth > 0 ? object(depth: depth - 1) : .object([:])
        }
    }

    mutating func object(depth: Int) -> JSONValue {
        var members: [String: JSONValue] = [:]
        for _ in 0..<input.int(in: 0...3) { members[input.pick(fieldNames)] = value(depth: depth) }
        return .object(members)
    }

    mutating func appendValue() -> JSONValue {
        input.bool()
            ? .string(input.pick(strings) + input.pick(strings))
            : .array((0..<input.int(in: 0...2)).map { _ in value(depth: 0) })
    }

    mutating func offset() -> Int {
        switch input.int(in: 0...7) {
        case 6: return input.int(in: 0...400)
        case 7: return Int.max
        case let small: return small
        }
    }

    mutating func diff(depth: Int) -> Diff {
        var fields: [String: FieldOp] = [:]
        for _ in 0..<input.int(in: 0...3) {
            let op: FieldOp
            switch input.int(in: 0...5) {
            case 0: op = .put(value(depth: 2))
            case 1: op = .delete
            case 2: op = depth > 0 ? .patch(diff(depth: depth - 1)) : .delete
            default: op = .append(appendValue(), offset: offset())
            }
            fields[input.pick(fieldNames)] = op
        }
        return Diff(fields)
    }

    mutating func ops() -> Ops {
        var records: [String: RecordOp] = [:]
        for _ in 0..<input.int(in: 1...5) {
            let op: RecordOp
            switch input.int(in: 0...3) {
            case 0: op = .put(object(depth: 2))
            case 1: op = .remove
            default: op = .patch(diff(depth: 2))
            }
            records[input.pick(recordIDs)] = op
        }
        return Ops(records)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDocReplica(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var program = Program(input: FuzzInput(data, size))
    var limits = SyncLimits()
    limits.maxRecordBytes = program.input.pick([64, 256, 64 * 1024])
    limits.maxPushOps = program.input.pick([2, 4, 1000])
    limits.maxDocRecords = program.input.pick([2, 3, 100_000])
    // Heads come from Redis; include ones at the top of the clock range.
    let startHead = program.input.pick([0, 1, 41, UInt64(Int64.max) - 2, UInt64.max - 2])
    var replica = DocReplica(head: startHead)
    var bases = [UInt64](repeating: startHead, count: 3)

    for _ in 0..<64 where !program.input.isExhausted {
        let client = program.input.int(in: 0...2)
        switch program.input.int(in: 0...9) {
        case 0...4:
            let ops = program.ops()
            require((try? Ops(json: ops.json)) == ops, "generated ops do not round-trip")
            if let next = push(ops, base: bases[client], to: replica, limits: limits, commit: program.input.byte() < 230) {
                replica = next
                bases[client] = replica.head
            }
        case 5:
            bases[client] = replica.head
        case 6:
            bases[client] = replica.head == 0 ? 0 : UInt64(program.input.int(in: 0...Int(min(replica.head, 300))))
        case 7:
            bases[client] = program.input.pick([replica.head &+ 1, UInt64.max, UInt64(Int64.max)])
        case 8:
            replica.compact(floor: replica.head == 0 ? 0 : replica.head - UInt64(program.input.int(in: 0...3)) % replica.head)
        default:
            var copy = replica
            let wrong = program.input.pick([replica.head, replica.head &+ 2, 0, UInt64.max])
            guard wrong != replica.head &+ 1 else { continue }
            require(!copy.apply(clock: wrong, ops: program.ops()), "apply accepted clock \(wrong) at head \(replica.head)")
            require(copy == replica, "a refused apply changed the replica")
        }
    }
    return 0
}

/// Decides `ops` and checks every invariant; returns the replica after the commit (nil if nothing was
/// committed).
private func push(_ ops: Ops, base: UInt64, to replica: DocReplica, limits: SyncLimits, commit: Bool) -> DocReplica? {
    let decision: PushDecision
    do {
        decision = try replica.decide(ops: ops, base: base, limits: limits)
    } catch {
        require(error.code == .tooLarge, "decide threw \(error)")
        require((try? replica.decide(ops: ops, base: base, limits: limits)) == nil, "decide threw only once")
        return nil
    }

    // Deterministic, also on an equal replica built in another order and ops listed in another order.
    require((try? replica.decide(ops: ops, base: base, limits: limits)) == decision, "decide is not deterministic")
    let rebuilt = DocReplica(
        head: replica.head, records: reordered(replica.records), versions: reordered(replica.versions),
        tombstones: reordered(replica.tombstones))
    require(
        (try? rebuilt.decide(ops: Ops(reordered(ops.records)), base: base, limits: limits)) == decision,
        "decide depends on dictionary order")

    // Shape of the decision.
    require(ops.records.count <= limits.maxPushOps, "a push over maxPushOps was decided")
    require((decision.action == .discard) == decision.applied.isEmpty, "discard ⇔ nothing applied")
    require(Set(decision.applied.records.keys) == Set(decision.writes.keys), "writes and applied name different records")
    require(decision.action != .commit || !decision.conflicted, "a commit counted as a conflict")
    for id in ops.records.keys {
        guard let expectation = decision.expectations[id] else { fatalError("no expectation for \(id)") }
        require((expectation == .absent) == (replica.records[id] == nil), "expectation \(expectation) for \(id)")
    }
    guard decision.action != .discard else { return nil }

    // Applying the decision gives exactly the writes, at head + 1.
    // No clock follows UInt64.max (Redis's INCR already stops at Int64.max): nothing to commit.
    guard replica.head < UInt64.max else { return nil }
    let clock = replica.head + 1
    var next = replica
    require(next.apply(clock: clock, ops: decision.applied), "apply refused head + 1")
    require(next.head == clock, "apply did not advance head by one")
    for id in Set(replica.records.keys).union(next.records.keys) {
        if let write = decision.writes[id] {
            require(next.records[id]?.serialized == write, "record \(id) differs from the decision's write")
            if write == nil {
                require(next.tombstones[id] == clock && next.versions[id] == nil, "removal of \(id) not at the new clock")
            } else {
                require(next.versions[id] == clock && next.tombstones[id] == nil, "write of \(id) not at the new clock")
            }
        } else {
            require(next.records[id] == replica.records[id], "record \(id) changed without a write")
            require(next.versions[id] == replica.versions[id], "version of \(id) changed without a write")
        }
    }
    for write in decision.writes.values { require((write?.count ?? 0) <= limits.maxRecordBytes, "record over maxRecordBytes") }
    if decision.created > 0 { require(next.records.count <= limits.maxDocRecords, "doc over maxDocRecords") }
    require(
        next.records.count == replica.records.count + decision.created - decision.removed, "created/removed counts are wrong")

    // Other nodes apply the commit from its JSON.
    let published = try! JSONParser.parse(decision.applied.json.serialized)
    guard let remoteOps = try? Ops(json: published) else { fatalError("applied ops do not parse back") }
    var remote = replica
    require(remote.apply(clock: clock, ops: remoteOps) && remote == next, "a node applying the published commit diverges")

    // A commit is exactly what the client applied optimistically.
    if decision.action == .commit {
        var optimistic = replica
        optimistic.apply(clock: clock, ops: ops)
        require(optimistic.records == next.records, "commit differs from the ops as sent")
    }

    // What was applied is itself a clean commit against the same state.
    let again = try? replica.decide(ops: decision.applied, base: replica.head, limits: limits)
    require(again?.action == .commit && again?.writes == decision.writes, "applied ops do not re-decide as a commit")
    return commit ? next : nil
}

/// The same dictionary, built by inserting in reverse key order (another iteration order).
private func reordered<V>(_ dictionary: [String: V]) -> [String: V] {
    var out: [String: V] = [:]
    for key in dictionary.keys.sorted().reversed() { out[key] = dictionary[key] }
    return out
}
