/// Limits on what one push may do (`tandem serve` flags; each refusal is a `too_large` error and nothing
/// of the push is applied).
public struct SyncLimits: Sendable, Equatable {
    public var maxRecordBytes = 64 * 1024
    public var maxPushBytes = 1024 * 1024
    public var maxPushOps = 1_000
    public var maxDocRecords = 100_000
    public init() {}
}

/// What the server does with one push, decided against the doc state at `head`.
public struct PushDecision: Equatable, Sendable {
    public enum Action: String, Sendable {
        /// Applied exactly as sent.
        case commit
        /// Applied, but not exactly as sent: `applied` says what.
        case rebase
        /// Nothing applied.
        case discard
    }

    /// What must still hold in Redis for the decision to stand (checked atomically by the commit script).
    public enum Expectation: Equatable, Sendable {
        /// The record is live at this version (its content mattered).
        case version(UInt64)
        /// The record is live (any content).
        case exists
        /// The record does not exist.
        case absent
    }

    public var action: Action
    public var applied: Ops
    /// The new value of every record `applied` touches (nil: removed), serialized canonically.
    public var writes: [String: [UInt8]?]
    /// The same new values as `writes`, parsed (nil: removed): what a batch decides its next pushes against.
    public var values: [String: JSONValue?]
    public var expectations: [String: Expectation]
    public var reason: String?
    /// For a discard with reason `invalid`: the record the push would have left invalid under the doc's
    /// schema, and why.
    public var violation: RecordViolation? = nil
    /// A rebase or discard caused by a change the pusher had not seen (a record changed after `base`).
    public var conflicted: Bool
    /// Records created / removed, for the doc size limit.
    public var created: Int
    public var removed: Int
}

/// One document's records as of `head`: the state every push is decided against and every catch-up is
/// served from. A node keeps one per doc with local members and advances it commit by commit, in clock
/// order, so it equals Redis at `head`.
public struct DocReplica: Sendable, Equatable {
    public private(set) var head: UInt64
    public private(set) var records: [String: JSONValue]
    /// Clock of the last change of each live record.
    public private(set) var versions: [String: UInt64]
    /// Clock of each removal still retained.
    public private(set) var tombstones: [String: UInt64]
    /// The checksum of `records` (issue 13), kept up to date commit by commit.
    public private(set) var sum: DocChecksum
    /// Each live record's hash (`DocChecksum.record`): a change subtracts the old one without encoding
    /// the old value again.
    private var hashes: [String: DocChecksum]
    /// False for a copy that does not keep the checksum (`untracked`).
    private var tracksChecksum = true

    public init(
        head: UInt64 = 0, records: [String: JSONValue] = [:], versions: [String: UInt64] = [:],
        tombstones: [String: UInt64] = [:]
    ) {
        self.head = head
        self.records = records
        self.versions = versions
        self.tombstones = tombstones
        var hashes: [String: DocChecksum] = [:]
        hashes.reserveCapacity(records.count)
        var sum = DocChecksum.zero
        for (id, value) in records {
            let hash = DocChecksum.record(id: id, value: value)
            hashes[id] = hash
            sum += hash
        }
        self.hashes = hashes
        self.sum = sum
    }

    /// A replica that keeps no checksum from the start (`untracked` without hashing `records` first): for
    /// replays whose records are all that is read, such as history's (`HistoryReplay.state`).
    public static func untracked(head: UInt64, records: [String: JSONValue]) -> DocReplica {
        var replica = DocReplica(head: head)
        replica.records = records
        replica.tracksChecksum = false
        return replica
    }

    /// A copy that keeps no checksum (`sum` is zero and stays so): applying commits to it hashes nothing.
    /// For states nobody compares, such as a client's optimistic view (confirmed records plus pending edits).
    public var untracked: DocReplica {
        var copy = self
        copy.tracksChecksum = false
        copy.hashes = [:]
        copy.sum = .zero
        return copy
    }

    /// The hash of live record `id` (nil: missing).
    public func hash(of id: String) -> DocChecksum? { hashes[id] }

    /// Applies a committed change. Returns false (and changes nothing) unless `clock` is `head + 1`.
    ///
    /// A head of `UInt64.max` (only a corrupted clock key in Redis can hold one: INCR stops at `Int64.max`)
    /// has no next clock, so nothing applies rather than `head + 1` trapping (found by Fuzz/fuzz-doc-replica).
    /// - Parameter knownHashes: hashes of records the commit leaves live, computed already by whoever
    ///   decided it (`CommitNotice.recordHashes`); the others are hashed here.
    @discardableResult
    public mutating func apply(clock: UInt64, ops: Ops, knownHashes: [String: DocChecksum]? = nil) -> Bool {
        guard head < UInt64.max, clock == head + 1 else { return false }
        for (id, op) in ops.records {
            switch Self.applying(op, to: records[id]) {
            case .unchanged:
                continue
            case .value(let record):
                records[id] = record
                versions[id] = clock
                tombstones.removeValue(forKey: id)
                guard tracksChecksum else { continue }
                let hash = knownHashes?[id] ?? DocChecksum.record(id: id, value: record)
                if let old = hashes.updateValue(hash, forKey: id) { sum -= old }
                sum += hash
            case .removed:
                records.removeValue(forKey: id)
                versions.removeValue(forKey: id)
                tombstones[id] = clock
                if let old = hashes.removeValue(forKey: id) { sum -= old }
            }
        }
        head = clock
        return true
    }

    /// What a committed op does to a record (nil: missing).
    enum OpEffect {
        case unchanged
        case value(JSONValue)
        case removed
    }

    static func applying(_ op: RecordOp, to current: JSONValue?) -> OpEffect {
        switch op {
        case .put(let record):
            return .value(record)
        case .patch(let diff):
            guard case .object(let object)? = current else { return .unchanged }
            return .value(.object(apply(diff, to: object, changedAfterBase: false).result))
        case .remove:
            return current == nil ? .unchanged : .removed
        }
    }

    /// Forgets tombstones at or below `floor` (history older than the retention is gone; clients that far
    /// behind get a snapshot).
    public mutating func compact(floor: UInt64) {
        guard tombstones.values.contains(where: { $0 <= floor }) else { return }
        tombstones = tombstones.filter { $0.value > floor }
    }

    /// The clock of the last change of `id` (creation, update or removal), 0 if unknown.
    public func version(of id: String) -> UInt64 {
        versions[id] ?? tombstones[id] ?? 0
    }

    struct DiffOutcome {
        var result: [String: JSONValue]
        var applied: Diff
        var exact: Bool
        var conflicted: Bool
    }

    /// Applies a diff to an object. `changedAfterBase` marks the record as changed since the pusher's base,
    /// so a void or altered field counts as a conflict.
    static func apply(_ diff: Diff, to object: [String: JSONValue], changedAfterBase: Bool) -> DiffOutcome {
        var result = object
        var applied: [String: FieldOp] = [:]
        var exact = true
        for field in diff.fields.keys.sorted() {
            switch diff.fields[field]! {
            case .put(let value):
                result[field] = value
                applied[field] = .put(value)
            case .delete:
                result.removeValue(forKey: field)
                applied[field] = .delete
            case .patch(let sub):
                guard case .object(let nested)? = result[field] else {
                    exact = false
                    continue
                }
                let outcome = apply(sub, to: nested, changedAfterBase: changedAfterBase)
                exact = exact && outcome.exact
                if !outcome.applied.fields.isEmpty {
                    result[field] = .object(outcome.result)
                    applied[field] = .patch(outcome.applied)
                }
            case .append(let value, let offset):
                // A stale offset becomes an append at the current length: the same merged value, but the
                // commit carries only the appended part. (It was a put of the whole merged value: on a
                // shared text that grows, every rebased append then sent the whole text to every member,
                // to Redis's log and to the other nodes — on the hot-doc bench, tens of KB per rebase.)
                switch (result[field], value) {
                case (.string(let current)?, .string(let tail)):
                    let length = current.utf16.count
                    applied[field] = .append(value, offset: length)
                    if length != offset { exact = false }
                    result[field] = .string(current + tail)
                case (.array(let current)?, .array(let tail)):
                    applied[field] = .append(value, offset: current.count)
                    if current.count != offset { exact = false }
                    result[field] = .array(current + tail)
                case (nil, _):
                    applied[field] = .append(value, offset: 0)
                    if offset != 0 { exact = false }
                    result[field] = value
                default:
                    // Appending to a number, or a string to an array: nothing sensible to merge.
                    exact = false
                }
            }
        }
        return DiffOutcome(result: result, applied: Diff(applied), exact: exact, conflicted: !exact && changedAfterBase)
    }
}

// MARK: Deciding a push

/// Read access to a doc's records: what a push is decided against (a replica, or a replica plus the
/// earlier pushes of a batch, see `BatchOverlay`).
public protocol RecordSource {
    /// The live record `id`, nil if it is missing.
    func record(_ id: String) -> JSONValue?
    /// The clock of the last change of `id` (creation, update or removal), 0 if unknown.
    func version(of id: String) -> UInt64
    /// How many live records the doc holds.
    var recordCount: Int { get }
}

extension DocReplica: RecordSource {
    public func record(_ id: String) -> JSONValue? { records[id] }
    public var recordCount: Int { records.count }
}

extension RecordSource {
    /// Decides what `ops`, pushed by a client that had seen `base`, does to this state.
    ///
    /// - put: always applies (latest wins), creating or replacing the record.
    /// - remove: applies to a live record; void if it is already gone.
    /// - patch: void on a missing record; field by field otherwise: put/delete apply; a nested patch
    ///   needs an object there (else void); an append whose offset matches the current length applies
    ///   as sent, otherwise it becomes an append at the current length (a rebase: the same merged value).
    /// A push where nothing applies is discarded; one where something applies differently is rebased.
    /// With a `schema`, a push that would leave any record it writes invalid is discarded whole (reason
    /// `invalid`, naming the first such record in id order): nothing invalid is committed, whichever op
    /// (put, patch, append) produced the value. Records it does not write are not checked, so a schema
    /// reloaded with stricter rules does not block edits to other records.
    public func decide(ops: Ops, base: UInt64, limits: SyncLimits, schema: DocSchema? = nil) throws(ProtocolError)
        -> PushDecision
    {
        guard ops.records.count <= limits.maxPushOps else {
            throw ProtocolError(.tooLarge, "a push holds at most \(limits.maxPushOps) ops; this one has \(ops.records.count)")
        }
        var applied: [String: RecordOp] = [:]
        var writes: [String: [UInt8]?] = [:]
        var values: [String: JSONValue?] = [:]
        var expectations: [String: PushDecision.Expectation] = [:]
        var exact = true
        var conflicted = false
        var created = 0
        var removed = 0

        for id in ops.records.keys.sorted() {
            let op = ops.records[id]!
            let current = record(id)
            let changedAfterBase = version(of: id) > base
            switch op {
            case .put(let record):
                let bytes = record.serialized
                try checkSize(bytes, id: id, limits: limits)
                applied[id] = op
                writes[id] = bytes
                values[id] = record
                expectations[id] = current == nil ? .absent : .exists
                if current == nil { created += 1 }
            case .remove:
                if current == nil {
                    expectations[id] = .absent
                    exact = false
                    conflicted = conflicted || changedAfterBase
                } else {
                    applied[id] = op
                    writes[id] = .some(nil)
                    values[id] = .some(nil)
                    expectations[id] = .exists
                    removed += 1
                }
            case .patch(let diff):
                guard case .object(let object)? = current else {
                    expectations[id] = current == nil ? .absent : .version(version(of: id))
                    exact = false
                    conflicted = conflicted || changedAfterBase
                    continue
                }
                expectations[id] = .version(version(of: id))
                let outcome = DocReplica.apply(diff, to: object, changedAfterBase: changedAfterBase)
                if !outcome.exact {
                    exact = false
                    conflicted = conflicted || outcome.conflicted
                }
                guard !outcome.applied.fields.isEmpty else { continue }
                let value = JSONValue.object(outcome.result)
                let bytes = value.serialized
                try checkSize(bytes, id: id, limits: limits)
                applied[id] = .patch(outcome.applied)
                writes[id] = bytes
                values[id] = value
            }
        }
        if let schema {
            for id in values.keys.sorted() {
                guard let violation = schema.violation(record: id, value: values[id] ?? nil) else { continue }
                return PushDecision(
                    action: .discard, applied: Ops([:]), writes: [:], values: [:], expectations: [:], reason: "invalid",
                    violation: violation, conflicted: false, created: 0, removed: 0)
            }
        }
        guard recordCount + created - removed <= limits.maxDocRecords || created == 0 else {
            throw ProtocolError(.tooLarge, "a doc holds at most \(limits.maxDocRecords) records")
        }
        let action: PushDecision.Action = applied.isEmpty ? .discard : (exact ? .commit : .rebase)
        return PushDecision(
            action: action, applied: Ops(applied), writes: writes, values: values, expectations: expectations,
            reason: action == .discard ? "void" : nil, conflicted: conflicted && action != .commit,
            created: created, removed: removed)
    }

    private func checkSize(_ bytes: [UInt8], id: String, limits: SyncLimits) throws(ProtocolError) {
        guard bytes.count <= limits.maxRecordBytes else {
            throw ProtocolError(.tooLarge, "record \(id.prefix(64)) would be \(bytes.count) bytes; the limit is \(limits.maxRecordBytes)")
        }
    }
}
