import TandemYjs

/// A room's document as a node holds it: everything up to the room's seq, as one merged update plus the
/// updates applied since, merged lazily.
///
/// Merging costs about the document's size whatever the number of updates folded in (docs/yjs.md,
/// *Cost*), so updates are only appended here and folded when something needs the whole document (a
/// step 2, a compaction) or when `maxUnfolded` pile up. The state vector is kept up to date per update
/// while the document has no gaps (the usual case: every client's updates follow on from what the room
/// has), so checking an incoming update (`isKnown`, once per update) costs the update's size, not the
/// document's. Pure: no I/O, no time.
struct YjsDocument: Sendable {
    private var merged: YUpdate
    private var unfolded: [YUpdate] = []
    /// Per client, the clock its next struct will have (what `YStateVector(fromUpdate: whole())` says),
    /// while `clocksExact`; otherwise recomputed from a fold when next needed.
    private var clocks: [UInt64: Int] = [:]
    /// `clocks` is the document's state vector, and the document has no struct past it (no gap a later
    /// update could fill, which would move a client's clock past that update's own end).
    private var clocksExact = false
    private var cachedStateVector: YStateVector?

    /// Updates applied but not merged before the next one folds them: bounds the memory a busy room with
    /// nobody joining holds twice, at one merge per this many updates.
    static let maxUnfolded = 512

    init(snapshot: YUpdate = .empty) {
        merged = snapshot
    }

    mutating func apply(_ update: YUpdate) {
        unfolded.append(update)
        guard !update.sections.isEmpty else {
            // A delete set only: no clock moves.
            if unfolded.count >= Self.maxUnfolded { fold() }
            return
        }
        cachedStateVector = nil
        if clocksExact {
            for section in update.sections {
                // Follows on from what the document has (overlapping it is fine), without a gap inside:
                // the client's clock becomes its end. Anything else may leave a gap: recompute later.
                let known = clocks[section.client] ?? 0
                guard section.clock <= known, !section.structs.contains(where: \.isSkip) else {
                    clocksExact = false
                    break
                }
                if section.endClock > known { clocks[section.client] = section.endClock }
            }
        }
        if unfolded.count >= Self.maxUnfolded { fold() }
    }

    /// Everything, as one update (Yjs `mergeUpdates`).
    mutating func whole() -> YUpdate {
        fold()
        return merged
    }

    /// The document's state vector (Yjs `encodeStateVectorFromUpdate` of `whole()`: clients in
    /// descending order).
    mutating func stateVector() -> YStateVector {
        if let cachedStateVector { return cachedStateVector }
        let vector: YStateVector
        if clocksExact {
            vector = YStateVector(
                entries: clocks.filter { $0.value > 0 }.sorted { $0.key > $1.key }.map { YStateVector.Entry(client: $0.key, clock: $0.value) })
        } else {
            vector = recomputeClocks()
        }
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
        if !clocksExact { _ = recomputeClocks() }
        return update.sections.allSatisfy { $0.endClock <= clocks[$0.client] ?? 0 }
    }

    /// Folds, and sets `clocks` from the whole document.
    private mutating func recomputeClocks() -> YStateVector {
        let whole = whole()
        let vector = YStateVector(fromUpdate: whole)
        clocks = vector.clocks
        // Merged updates have one section per client; a gap in it is a Skip, and a client whose
        // structs do not start at 0 is missing its beginning.
        clocksExact = whole.sections.allSatisfy { $0.clock == 0 && !$0.structs.contains(where: \.isSkip) }
        cachedStateVector = vector
        return vector
    }

    private mutating func fold() {
        guard !unfolded.isEmpty else { return }
        merged = Yjs.mergeUpdates([merged] + unfolded)
        unfolded.removeAll(keepingCapacity: true)
    }
}
