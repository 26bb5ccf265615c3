import TandemYjs

/// A room's document as a node holds it: everything up to the room's seq, as one merged update plus the
/// updates applied since, merged lazily.
///
/// Merging costs about the document's size whatever the number of updates folded in (docs/yjs.md,
/// *Cost*), so updates are only appended here and folded when something needs the whole document (a
/// step 2, a compaction) or when `maxUnfolded` pile up. The state vector is kept per update, never by
/// merging: per client, the clock up to which its structs are contiguous from 0, plus the ranges it has
/// past a gap (*pending*: structs whose predecessors the room lacks, which Yjs keeps as `pendingStructs`
/// and which a later update may fill). Checking or applying an update costs the update's size plus the
/// pending ranges of its clients, not the document's, however many gaps a client leaves (docs/yjs.md,
/// *Updates with missing dependencies*). Pure: no I/O, no time.
struct YjsDocument: Sendable {
    private var merged: YUpdate
    private var unfolded: [YUpdate] = []
    /// Per client, the clock its next struct will have (what `YStateVector(fromUpdate: whole())` says).
    private var clocks: [UInt64: Int] = [:]
    /// Per client, the ranges of clocks the document holds past `clocks` (after a gap), sorted and
    /// disjoint, each with the number of updates that brought it.
    private var pending: [UInt64: [PendingRange]] = [:]
    /// Updates (per client section) whose structs wait in `pending`: what `--yjs-max-pending-updates` bounds.
    private(set) var pendingUpdates = 0
    private var cachedStateVector: YStateVector?
    /// Merges of the whole document so far: the work tests measure (each costs about the document's size).
    private(set) var folds = 0

    struct PendingRange: Equatable, Sendable {
        var clocks: Range<Int>
        var updates: Int
    }

    /// Updates applied but not merged before the next one folds them: bounds the memory a busy room with
    /// nobody joining holds twice, at one merge per this many updates.
    static let maxUnfolded = 512

    init(snapshot: YUpdate = .empty) {
        merged = snapshot
        // Once, linear in the snapshot's structs: a snapshot with gaps starts with its pending ranges.
        track(snapshot)
    }

    mutating func apply(_ update: YUpdate) {
        unfolded.append(update)
        if !update.sections.isEmpty {
            // A delete set alone moves no clock.
            cachedStateVector = nil
            track(update)
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
        let vector = YStateVector(
            entries: clocks.filter { $0.value > 0 }.sorted { $0.key > $1.key }.map { YStateVector.Entry(client: $0.key, clock: $0.value) })
        cachedStateVector = vector
        return vector
    }

    /// What a peer at `stateVector` lacks (Yjs `diffUpdate`): its sync step 2.
    mutating func missing(for stateVector: YStateVector) -> YUpdate {
        Yjs.diffUpdate(whole(), stateVector: stateVector)
    }

    /// Whether `update` adds nothing: no delete set, and every struct's clock already known. A client's
    /// step 2 after a reconnect without offline edits is often this; it is not stored.
    func isKnown(_ update: YUpdate) -> Bool {
        guard update.deleteSet.isEmpty else { return false }
        return update.sections.allSatisfy { $0.endClock <= clocks[$0.client] ?? 0 }
    }

    /// How many more updates would wait in `pending` once `update` is applied (negative when it fills
    /// gaps). Costs what applying it costs; changes nothing.
    func pendingUpdatesAdded(by update: YUpdate) -> Int {
        var delta = 0
        for (client, runs) in Self.runs(of: update) {
            let before = pending[client] ?? []
            let after = Self.advance(clock: clocks[client] ?? 0, pending: before, runs: runs)
            delta += after.pending.reduce(0) { $0 + $1.updates } - before.reduce(0) { $0 + $1.updates }
        }
        return delta
    }

    /// Moves the clocks and pending ranges of `update`'s clients.
    private mutating func track(_ update: YUpdate) {
        for (client, runs) in Self.runs(of: update) {
            let before = pending[client] ?? []
            let after = Self.advance(clock: clocks[client] ?? 0, pending: before, runs: runs)
            pendingUpdates += after.pending.reduce(0) { $0 + $1.updates } - before.reduce(0) { $0 + $1.updates }
            clocks[client] = after.clock
            pending[client] = after.pending.isEmpty ? nil : after.pending
        }
    }

    /// Per client, the contiguous runs of clocks `update` holds (a Skip, Yjs's gap marker, ends a run).
    static func runs(of update: YUpdate) -> [UInt64: [Range<Int>]] {
        var runs: [UInt64: [Range<Int>]] = [:]
        for section in update.sections {
            var current: Range<Int>?
            var found: [Range<Int>] = []
            for block in section.structs {
                if block.isSkip {
                    if let run = current { found.append(run) }
                    current = nil
                } else if let run = current, run.upperBound == block.id.clock {
                    current = run.lowerBound..<block.endClock
                } else {
                    if let run = current { found.append(run) }
                    current = block.id.clock..<block.endClock
                }
            }
            if let run = current { found.append(run) }
            if !found.isEmpty { runs[section.client, default: []] += found }
        }
        return runs
    }

    /// One client's clock and pending ranges after `runs` arrive: a run starting at or before the clock
    /// moves it to the run's end, and then every pending range it now reaches; any other run waits, merged
    /// with the pending ranges it touches (a resent range already pending counts once).
    static func advance(clock: Int, pending: [PendingRange], runs: [Range<Int>]) -> (clock: Int, pending: [PendingRange]) {
        var clock = clock
        var pending = pending
        for run in runs where run.upperBound > clock {
            if run.lowerBound <= clock {
                clock = run.upperBound
            } else if let i = pending.firstIndex(where: { $0.clocks.lowerBound <= run.lowerBound && run.upperBound <= $0.clocks.upperBound }) {
                _ = i  // Already held: nothing new waits.
            } else {
                var joined = PendingRange(clocks: run, updates: 1)
                pending.removeAll { range in
                    guard range.clocks.lowerBound <= joined.clocks.upperBound, joined.clocks.lowerBound <= range.clocks.upperBound else { return false }
                    joined = PendingRange(
                        clocks: min(range.clocks.lowerBound, joined.clocks.lowerBound)..<max(range.clocks.upperBound, joined.clocks.upperBound),
                        updates: range.updates + joined.updates)
                    return true
                }
                let at = pending.firstIndex { $0.clocks.lowerBound > joined.clocks.lowerBound } ?? pending.endIndex
                pending.insert(joined, at: at)
            }
        }
        // Sorted and disjoint: the clock reaches a prefix of them.
        while let first = pending.first, first.clocks.lowerBound <= clock {
            clock = max(clock, first.clocks.upperBound)
            pending.removeFirst()
        }
        return (clock, pending)
    }

    private mutating func fold() {
        guard !unfolded.isEmpty else { return }
        merged = Yjs.mergeUpdates([merged] + unfolded)
        folds += 1
        unfolded.removeAll(keepingCapacity: true)
    }
}
