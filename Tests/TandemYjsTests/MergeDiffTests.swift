import Testing

@testable import TandemYjs

/// Hand-made cases for the rules of Yjs's mergeUpdates and diffUpdate; the randomized comparison
/// with Yjs itself is in InteropTests.
@Suite struct MergeTests {
    func decode(_ bytes: [UInt8]) throws -> YUpdate { try YUpdate(decoding: bytes) }

    @Test func noUpdatesMergeToTheEmptyUpdate() throws {
        #expect(try Yjs.mergeUpdates([[UInt8]]()) == [0, 0])
    }

    // Yjs returns a single update untouched, even its unsorted delete set.
    @Test func oneUpdateComesBackAsItIs() throws {
        let update = UpdateBuilder.update([.init(3, 0, [.text("a")])], deletes: [(1, [(5, 1), (0, 1)]), (2, [])])
        #expect(try Yjs.mergeUpdates([update]) == update)
        #expect(throws: YDecodingError.self) { try Yjs.mergeUpdates([[0x01]]) }
    }

    @Test func clientsComeInDescendingOrderAndDeleteSetsMerge() throws {
        let a = UpdateBuilder.update([.init(3, 0, [.text("a")])], deletes: [(3, [(4, 2)]), (8, [(0, 1)])])
        let b = UpdateBuilder.update([.init(8, 0, [.text("b")])], deletes: [(3, [(0, 2), (5, 3), (2, 1)])])
        let merged = try self.decode(try Yjs.mergeUpdates([a, b]))
        #expect(merged.sections.map(\.client) == [8, 3])
        #expect(
            merged.deleteSet
                == YDeleteSet(clients: [
                    .init(client: 8, ranges: [.init(clock: 0, length: 1)]),
                    .init(client: 3, ranges: [.init(clock: 0, length: 3), .init(clock: 4, length: 4)]),
                ]))
    }

    @Test func aGapBecomesASkip() throws {
        let first = UpdateBuilder.update([.init(5, 0, [.text("ab")])])
        let later = UpdateBuilder.update([.init(5, 6, [.text("z", origin: YID(client: 5, clock: 5), parent: nil)])])
        let merged = try self.decode(try Yjs.mergeUpdates([later, first]))
        #expect(merged.sections.count == 1)
        #expect(merged.sections[0].structs.map(\.length) == [2, 4, 1])
        #expect(merged.sections[0].structs[1] == .skip(YID(client: 5, clock: 2), length: 4))
        // A state vector stops at the gap.
        #expect(YStateVector(fromUpdate: merged).entries == [.init(client: 5, clock: 2)])
    }

    @Test func overlapsAreCutAndDuplicatesDropped() throws {
        let abc = UpdateBuilder.update([.init(5, 0, [.text("abc")])])
        // The same client's "c" (clock 2) and "de" (clocks 3–4), as a diff from clock 2 sends them.
        let cde = UpdateBuilder.update([
            .init(5, 2, [.text("c", origin: YID(client: 5, clock: 1), parent: nil), .text("de", origin: YID(client: 5, clock: 2), parent: nil)])
        ])
        let bcd = UpdateBuilder.update([.init(5, 1, [.text("bcd", origin: YID(client: 5, clock: 0), parent: nil)])])
        let merged = try self.decode(try Yjs.mergeUpdates([cde, abc, bcd, abc]))
        let structs = merged.sections[0].structs
        #expect(structs.map(\.id.clock) == [0, 3, 4])
        // "bcd" was cut to "d" after "abc": origin is the element before the cut.
        guard case .item(let d) = structs[1] else { return }
        #expect(d.content == .string(UTF8Text("d")))
        #expect(d.origin == YID(client: 5, clock: 2))
    }

    @Test func adjacentGCsJoinAndItemsDoNot() throws {
        let a = UpdateBuilder.update([.init(5, 0, [.gc(2)])])
        let b = UpdateBuilder.update([.init(5, 2, [.gc(3), .text("x", origin: YID(client: 5, clock: 4), parent: nil)])])
        let c = UpdateBuilder.update([.init(5, 6, [.text("y", origin: YID(client: 5, clock: 5), parent: nil)])])
        let merged = try self.decode(try Yjs.mergeUpdates([a, b, c]))
        #expect(merged.sections[0].structs.map(\.length) == [5, 1, 1])
    }

    @Test func aStringCutInsideASurrogatePairStartsWithAReplacementCharacter() throws {
        let whole = UpdateBuilder.update([.init(5, 0, [.text("a😀b")])])
        // Clock 2 is the low half of 😀.
        let diff = try self.decode(try Yjs.diffUpdate(whole, stateVector: [1, 5, 2]))
        guard case .item(let item) = diff.sections[0].structs[0] else { return }
        #expect(item.content == .string(UTF8Text("\u{FFFD}b")))
        #expect(item.id.clock == 2 && item.length == 2)
    }

    // Yjs reads items with an origin without their parentSub, and writes them back without the
    // parentSub bit: merges and diffs do the same (byte-exact with Yjs in InteropTests).
    @Test func writtenItemsLoseTheParentSubBitOfAnOrigin() throws {
        let entry = UpdateBuilder.update([
            .init(5, 0, [.text("v1", parent: "m", parentSub: "k"), .raw(info: 0x04 | 0x80 | 0x20, [5, 1, 1, 0x77])])
        ])
        let other = UpdateBuilder.update([.init(2, 0, [.text("o")])])
        let merged = try self.decode(try Yjs.mergeUpdates([entry, other]))
        guard case .item(let second) = merged.sections[0].structs[1] else { return }
        #expect(!second.parentSubBit)
        guard case .item(let first) = merged.sections[0].structs[0] else { return }
        #expect(first.parentSubBit && first.parentSub == "k")
    }
}

@Suite struct DiffTests {
    let update = UpdateBuilder.update(
        [
            .init(9, 0, [.text("abcd"), .skip(2), .text("z", origin: YID(client: 9, clock: 5), parent: nil)]),
            .init(4, 0, [.gc(3)]),
        ],
        deletes: [(4, [(0, 3)]), (9, [(1, 1)]), (4, [(7, 1)])])

    @Test func aPeerGetsWhatItLacksCutAtItsClock() throws {
        let diff = try YUpdate(decoding: try Yjs.diffUpdate(self.update, stateVector: YStateVector(entries: [.init(client: 9, clock: 2)]).encoded()))
        #expect(diff.sections.map(\.client) == [9, 4])
        #expect(diff.sections[0].clock == 2)
        guard case .item(let cd) = diff.sections[0].structs[0] else { return }
        #expect(cd.content == .string(UTF8Text("cd")))
        #expect(cd.origin == YID(client: 9, clock: 1))
        // The rest of the client follows, Skip included.
        #expect(diff.sections[0].structs.count == 3)
        // The delete set is copied, clients descending, each client's ranges in wire order.
        #expect(diff.deleteSet.clients.map(\.client) == [9, 4])
        #expect(diff.deleteSet.clients[1].ranges == [.init(clock: 0, length: 3), .init(clock: 7, length: 1)])
    }

    @Test func knownClientsAreLeftOut() throws {
        let sv = YStateVector(entries: [.init(client: 9, clock: 7), .init(client: 4, clock: 3)])
        let diff = try YUpdate(decoding: try Yjs.diffUpdate(self.update, stateVector: sv.encoded()))
        #expect(diff.sections.isEmpty)
        #expect(!diff.deleteSet.isEmpty)
    }

    @Test func aPeerInsideTheGapGetsTheStructAfterIt() throws {
        let sv = YStateVector(entries: [.init(client: 9, clock: 5)])
        let diff = try YUpdate(decoding: try Yjs.diffUpdate(self.update, stateVector: sv.encoded()))
        // Skips are skipped, not cut: the peer gets "z" alone.
        #expect(diff.sections[0].clock == 6)
        #expect(diff.sections[0].structs.count == 1)
    }

    @Test func hostileStateVectorsAreRefused() {
        #expect(throws: YDecodingError.self) { try Yjs.diffUpdate(self.update, stateVector: [0x05, 0x01]) }
        #expect(throws: YDecodingError.self) { try Yjs.diffUpdate(self.update, stateVector: [0x00, 0x00]) }
    }
}
