/// The order in which Yjs's mergeUpdates takes structs from its inputs, without sorting every
/// input on every step.
///
/// Yjs keeps one lazy reader per input update and, before each step, stable-sorts the readers by
/// their current struct: higher client first, then lower clock. Only the reader at the front moves
/// during a step, and the others stay sorted, so the stable sort moves that one reader to the front
/// of the readers whose current struct compares equal to its own. Ties are therefore broken by
/// "moved most recently first", and among readers that have not moved yet by input order. This
/// heap orders by (client descending, clock ascending, sequence descending), where a reader's
/// sequence is −(input index) at the start and a fresh, increasing number each time it is put
/// back: the minimum is exactly the reader Yjs puts first, in O(log n) instead of O(n log n).
struct YStructHeap {
    struct Entry {
        var client: UInt64
        var clock: Int
        var sequence: Int
        var reader: Int
    }

    private var entries: [Entry] = []
    private var nextSequence = 1

    var isEmpty: Bool { self.entries.isEmpty }

    /// Adds reader `reader` whose current struct has `id`, as it starts (input order breaks ties).
    mutating func insertInitial(reader: Int, id: YID) {
        self.push(Entry(client: id.client, clock: id.clock, sequence: -reader, reader: reader))
    }

    /// Puts reader `reader` back after it moved (or stayed) during a step.
    mutating func reinsert(reader: Int, id: YID) {
        self.push(Entry(client: id.client, clock: id.clock, sequence: self.nextSequence, reader: reader))
        self.nextSequence += 1
    }

    mutating func popFirst() -> Int? {
        guard !self.entries.isEmpty else { return nil }
        let first = self.entries[0].reader
        let last = self.entries.removeLast()
        if !self.entries.isEmpty {
            self.entries[0] = last
            self.siftDown(0)
        }
        return first
    }

    private static func precedes(_ a: Entry, _ b: Entry) -> Bool {
        if a.client != b.client { return a.client > b.client }
        if a.clock != b.clock { return a.clock < b.clock }
        return a.sequence > b.sequence
    }

    private mutating func push(_ entry: Entry) {
        self.entries.append(entry)
        var child = self.entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.precedes(self.entries[child], self.entries[parent]) else { break }
            self.entries.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let count = self.entries.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { return }
            var best = left
            let right = left + 1
            if right < count && Self.precedes(self.entries[right], self.entries[left]) { best = right }
            guard Self.precedes(self.entries[best], self.entries[parent]) else { return }
            self.entries.swapAt(best, parent)
            parent = best
        }
    }
}
