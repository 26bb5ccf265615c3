/// A replica plus the changes of the pushes already placed in a batch: what the batch's next push is
/// decided against, so each push of a batch sees the state the previous ones produced.
///
/// The replica is only read (copying a 100,000-record replica per batch would cost more than the
/// batch); the batch's changes live in small dictionaries beside it. Records the batch changed get a
/// version above every clock a client can have seen (`pendingClock`), so a later push of the batch that
/// had not seen the change counts it as concurrent, exactly as if it came in the next commit.
struct BatchOverlay: RecordSource {
    let base: DocReplica
    /// Records the batch changed: the new value, or nil when removed.
    private(set) var changed: [String: JSONValue?] = [:]
    private(set) var changedVersions: [String: UInt64] = [:]
    private(set) var recordCount: Int

    init(base: DocReplica) {
        self.base = base
        self.recordCount = base.records.count
    }

    func record(_ id: String) -> JSONValue? {
        if let value = changed[id] { return value }
        return base.records[id]
    }

    func version(of id: String) -> UInt64 {
        changedVersions[id] ?? base.version(of: id)
    }

    /// Places a commit or rebase in the batch. `pendingClock` stands for its (not yet known) clock.
    mutating func apply(_ decision: PushDecision, pendingClock: UInt64) {
        for (id, value) in decision.values {
            let wasLive = record(id) != nil
            changed.updateValue(value, forKey: id)
            changedVersions[id] = pendingClock
            recordCount += (value != nil ? 1 : 0) - (wasLive ? 1 : 0)
        }
    }
}
