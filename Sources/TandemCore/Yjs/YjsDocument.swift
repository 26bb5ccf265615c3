import TandemYjs

/// A room's document as a node holds it: everything up to the room's seq, as one merged update plus the
/// updates applied since, merged lazily.
///
/// Merging costs about the document's size whatever the number of updates folded in (docs/yjs.md,
/// *Cost*), so updates are only appended here and folded when something needs the whole document (a
/// step 2, a state vector, a compaction) or when `maxUnfolded` pile up. Pure: no I/O, no time.
struct YjsDocument: Sendable {
    private var merged: YUpdate
    private var unfolded: [YUpdate] = []
    private var cachedStateVector: YStateVector?

    /// Updates applied but not merged before the next one folds them: bounds the memory a busy room with
    /// nobody joining holds twice, at one merge per this many updates.
    static let maxUnfolded = 512

    init(snapshot: YUpdate = .empty) {
        merged = snapshot
    }

    mutating func apply(_ update: YUpdate) {
        unfolded.append(update)
        cachedStateVector = nil
        if unfolded.count >= Self.maxUnfolded { fold() }
    }

    /// Everything, as one update (Yjs `mergeUpdates`).
    mutating func whole() -> YUpdate {
        fold()
        return merged
    }

    mutating func stateVector() -> YStateVector {
        if let cachedStateVector { return cachedStateVector }
        let vector = YStateVector(fromUpdate: whole())
        cachedStateVector = vector
        return vector
    }

    /// What a peer at `stateVector` lacks (Yjs `diffUpdate`): its sync step 2.
    mutating func missing(for stateVector: YStateVector) -> YUpdate {
        Yjs.diffUpdate(whole(), stateVector: stateVector)
    }

    /// Whether `update` adds nothing: no delete set, and every struct's clock already known. A client's
    /// step 2 after a reconnect without offline edits is often this; it is not stored.
    mutating func isKnown(_ update: YUpdate) -> Bool {
        guard update.deleteSet.isEmpty else { return false }
        if update.sections.isEmpty { return true }
        let vector = stateVector()
        return update.sections.allSatisfy { $0.endClock <= vector[$0.client] }
    }

    private mutating func fold() {
        guard !unfolded.isEmpty else { return }
        merged = Yjs.mergeUpdates([merged] + unfolded)
        unfolded.removeAll(keepingCapacity: true)
    }
}
