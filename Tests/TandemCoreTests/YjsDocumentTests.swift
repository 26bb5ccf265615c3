import Testing
import TandemYjs

@testable import TandemCore

/// `YjsDocument`'s state vector, kept per update instead of merging the whole document each time: always
/// what Yjs's `encodeStateVectorFromUpdate` says of everything applied, gaps and overlaps included.
@Suite struct YjsDocumentTests {
    @Test func theStateVectorKeptPerUpdateIsTheMergedDocumentsThroughGapsAndOverlaps() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<40 {
            var document = YjsDocument()
            var applied: [YUpdate] = []
            // Per client, the next clock it types at; updates are typed, then applied shuffled a little
            // (a gap until the one before arrives), and some twice (a step 2 after a reconnect).
            var typed: [YUpdate] = []
            var clocks: [UInt64: Int] = [:]
            for _ in 0..<30 {
                let client = UInt64.random(in: 1...4, using: &generator)
                let clock = clocks[client] ?? 0
                let text = String(repeating: "x", count: Int.random(in: 1...3, using: &generator))
                clocks[client] = clock + text.count
                typed.append(try YUpdate(decoding: YjsRoomMachineTests.typing(client: client, clock: clock, text)))
            }
            var order = typed
            for i in order.indices where Bool.random(using: &generator) && i + 1 < order.count { order.swapAt(i, i + 1) }
            for update in order + typed.shuffled(using: &generator).prefix(5) {
                let expectedKnown = update.sections.allSatisfy {
                    $0.endClock <= YStateVector(fromUpdate: Yjs.mergeUpdates(applied.isEmpty ? [.empty] : applied))[$0.client]
                }
                let known = document.isKnown(update)
                #expect(known == expectedKnown, "round \(round)")
                document.apply(update)
                applied.append(update)
                let vector = document.stateVector()
                #expect(vector == YStateVector(fromUpdate: Yjs.mergeUpdates(applied)), "round \(round)")
            }
            let final = document.stateVector()
            #expect(final.clocks == clocks)
        }
    }

    @Test func aSnapshotWithAGapIsRecomputedUntilTheGapIsFilled() throws {
        // The snapshot holds client 3's clocks 0–1 and 4–5 (2–3 missing): its state vector says 2, and an
        // update filling 2–3 moves it to 6, past the update's own end.
        let a = try YUpdate(decoding: YjsRoomMachineTests.typing(client: 3, clock: 0, "ab"))
        let c = try YUpdate(decoding: YjsRoomMachineTests.typing(client: 3, clock: 4, "ef"))
        var document = YjsDocument(snapshot: Yjs.mergeUpdates([a, c]))
        var vector = document.stateVector()
        #expect(vector.clocks == [3: 2])
        let b = try YUpdate(decoding: YjsRoomMachineTests.typing(client: 3, clock: 2, "cd"))
        var known = document.isKnown(b)
        #expect(!known)
        document.apply(b)
        vector = document.stateVector()
        #expect(vector.clocks == [3: 6])
        known = document.isKnown(c)
        #expect(known)
        // From here on the document has no gap: the next update moves the clock by itself.
        document.apply(try YUpdate(decoding: YjsRoomMachineTests.typing(client: 3, clock: 6, "g")))
        vector = document.stateVector()
        #expect(vector.clocks == [3: 7])
    }
}
