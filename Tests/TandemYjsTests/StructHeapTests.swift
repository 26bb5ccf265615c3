import Testing

@testable import TandemYjs

/// The heap picks, step after step, the same reader as Yjs's mergeUpdates does by stable-sorting
/// all readers before every step (see YStructHeap): checked against that sort itself, with many
/// equal keys so that the tie-breaking is what decides.
@Suite struct StructHeapTests {
    @Test func picksWhatAStableSortPutsFirst() {
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<200 {
            let readers = Int.random(in: 1...8, using: &rng)
            // Reader i's current (client, clock); nil once done.
            var keys: [(client: UInt64, clock: Int)?] = (0..<readers).map { _ in
                (UInt64.random(in: 1...3, using: &rng), Int.random(in: 0...3, using: &rng))
            }
            var sorted = Array(0..<readers)  // Yjs's array of readers, in its current order
            var heap = YStructHeap()
            for reader in 0..<readers {
                heap.insertInitial(reader: reader, id: YID(client: keys[reader]!.client, clock: keys[reader]!.clock))
            }
            while true {
                // Yjs: drop finished readers, stable-sort (client descending, clock ascending), take the first.
                sorted = sorted.filter { keys[$0] != nil }
                sorted = sorted.enumerated().sorted { a, b in
                    let x = keys[a.element]!
                    let y = keys[b.element]!
                    if x.client != y.client { return x.client > y.client }
                    if x.clock != y.clock { return x.clock < y.clock }
                    return a.offset < b.offset
                }.map(\.element)
                let expected = sorted.first
                let picked = heap.popFirst()
                #expect(picked == expected)
                guard let reader = picked else { break }
                // The step moves only this reader: on, or done.
                if Int.random(in: 0..<4, using: &rng) == 0 {
                    keys[reader] = nil
                } else {
                    let key = keys[reader]!
                    // Same struct, a later clock, or (a reader's next section) a lower client.
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: break
                    case 1: keys[reader] = (key.client, key.clock + Int.random(in: 1...2, using: &rng))
                    default: keys[reader] = (UInt64.random(in: 1...key.client, using: &rng), Int.random(in: 0...3, using: &rng))
                    }
                    heap.reinsert(reader: reader, id: YID(client: keys[reader]!.client, clock: keys[reader]!.clock))
                }
            }
        }
    }
}
