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

    @Test func aSnapshotWithAGapKeepsItsClockUntilTheGapIsFilled() throws {
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

    /// The finding this bounds: a client sending updates whose structs start past the room's clock made
    /// every following update merge the whole document (to recompute the state vector), so N such updates
    /// cost N merges of a growing document. Now checking and applying them merges nothing: the room pays one
    /// fold per `maxUnfolded` updates, as for any other updates.
    @Test func updatesWithMissingDependenciesDoNotMakeEachUpdateMergeTheDocument() throws {
        var document = YjsDocument()
        let count = 300
        for k in 0..<count {
            // Client 9 types at clocks 10, 20, 30…: clocks 0–9 never arrive, so every one of them waits.
            let gapped = try YUpdate(decoding: YjsRoomMachineTests.typing(client: 9, clock: 10 * (k + 1), "g"))
            // What the room does per update: is it new, apply it; and a joiner's step 1 now and then.
            let gappedKnown = document.isKnown(gapped)
            #expect(!gappedKnown)
            document.apply(gapped)
            let legit = try YUpdate(decoding: YjsRoomMachineTests.typing(client: 5, clock: k, "l"))
            let legitKnown = document.isKnown(legit)
            #expect(!legitKnown)
            document.apply(legit)
            _ = document.stateVector()
        }
        #expect(document.folds <= 2 * count / YjsDocument.maxUnfolded)
        #expect(document.pendingUpdates == count)
        #expect(document.stateVector().clocks == [5: count])
        // Filling client 9's first gap reaches only up to the next one.
        document.apply(try YUpdate(decoding: YjsRoomMachineTests.typing(client: 9, clock: 0, String(repeating: "f", count: 10))))
        #expect(document.stateVector().clocks == [5: count, 9: 11])
        #expect(document.pendingUpdates == count - 1)
        #expect(document.stateVector() == YStateVector(fromUpdate: document.whole()))
    }

    /// Updates applied in any order, as merged runs holding Skips (what a peer's `mergeUpdates` of an
    /// incomplete set sends) and twice: the state vector is always Yjs's for the merged document, and the
    /// pending count reaches 0 exactly when nothing waits any more.
    @Test func pendingRangesGiveYjsStateVectorInAnyOrder() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<30 {
            var typed: [YUpdate] = []
            var clocks: [UInt64: Int] = [:]
            for _ in 0..<24 {
                let client = UInt64.random(in: 1...3, using: &generator)
                let clock = clocks[client] ?? 0
                let text = String(repeating: "y", count: Int.random(in: 1...3, using: &generator))
                clocks[client] = clock + text.count
                typed.append(try YUpdate(decoding: YjsRoomMachineTests.typing(client: client, clock: clock, text)))
            }
            var order = typed.shuffled(using: &generator)
            // Some arrive as a merge of several (with Skips between them), some twice.
            for _ in 0..<4 {
                let picked = Array(typed.shuffled(using: &generator).prefix(3))
                order.insert(Yjs.mergeUpdates(picked), at: Int.random(in: 0...order.count, using: &generator))
            }
            var document = YjsDocument()
            var applied: [YUpdate] = []
            for update in order {
                document.apply(update)
                applied.append(update)
                #expect(document.stateVector() == YStateVector(fromUpdate: Yjs.mergeUpdates(applied)), "round \(round)")
            }
            #expect(document.stateVector().clocks == clocks, "round \(round)")
            #expect(document.pendingUpdates == 0, "round \(round)")
            // A snapshot with gaps starts with its pending ranges.
            let partial = Array(typed.shuffled(using: &generator).prefix(12))
            var reread = YjsDocument(snapshot: Yjs.mergeUpdates(partial))
            #expect(reread.stateVector() == YStateVector(fromUpdate: Yjs.mergeUpdates(partial)), "round \(round)")
            for update in typed { reread.apply(update) }
            #expect(reread.stateVector().clocks == clocks && reread.pendingUpdates == 0, "round \(round)")
        }
    }
}
