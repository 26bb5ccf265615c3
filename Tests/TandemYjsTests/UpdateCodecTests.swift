import Testing

@testable import TandemYjs

@Suite struct UpdateCodecTests {
    // What Yjs writes for `doc.getText('t').insert(0, 'hi')` with client id 3,000,000,000 + 7.
    let hi: [UInt8] = [0x01, 0x01, 0x87, 0xBC, 0xC1, 0x96, 0x0B, 0x00, 0x04, 0x01, 0x01, 0x74, 0x02, 0x68, 0x69, 0x00]

    @Test func decodesAnItemWithEveryField() throws {
        let update = try YUpdate(decoding: self.hi)
        #expect(update.sections.count == 1)
        #expect(update.sections[0].client == 3_000_000_007)
        guard case .item(let item) = update.sections[0].structs[0] else {
            Issue.record("not an item")
            return
        }
        #expect(item.id == YID(client: 3_000_000_007, clock: 0))
        #expect(item.parent == .root("t"))
        #expect(item.content == .string(UTF8Text("hi")))
        #expect(item.length == 2)
        #expect(update.encoded() == self.hi)
    }

    // Every content ref, GC and Skip, the parentSub bit with an origin (yjs and yrs set it on map
    // entries that have an origin, without writing the key), and a delete set with an empty entry:
    // all come back byte for byte.
    @Test func everyStructAndContentRoundTrips() throws {
        var any = Lib0Encoder()
        any.writeVarUInt(2 as UInt64)
        Lib0Any.integer(42).encode(to: &any)
        Lib0Any.object([("k", .array([.null, .bytes([9])]))]).encode(to: &any)
        var doc = Lib0Encoder()
        doc.writeVarString("guid-1")
        Lib0Any.object([("gc", .bool(true))]).encode(to: &doc)
        func strings(_ list: [String]) -> [UInt8] {
            var encoder = Lib0Encoder()
            list.forEach { encoder.writeVarString($0) }
            return encoder.bytes
        }
        let parentRoot: [UInt8] = [0x01, 0x01, 0x61]  // parent info 1, root "a"
        let bytes = UpdateBuilder.update(
            [
                .init(
                    9, 0,
                    [
                        .text("ab😀"),
                        .raw(info: 0x01 | 0x80, [9, 3] + [5]),  // ContentDeleted(5) after 9:3
                        .raw(info: 0x02 | 0x80, [9, 8] + [2] + strings(["{\"x\":1}", "undefined"])),  // ContentJSON
                        .raw(info: 0x03 | 0x80, [9, 10] + [3, 1, 2, 3]),  // ContentBinary
                        .raw(info: 0x05 | 0x80, [9, 11] + strings(["{\"image\":\"x.png\"}"])),  // ContentEmbed
                        .raw(info: 0x06 | 0x80, [9, 12] + strings(["bold", "true"])),  // ContentFormat
                        .raw(info: 0x07 | 0x20, parentRoot + strings(["key"]) + [3] + strings(["p"])),  // XmlElement under a.key
                        .raw(info: 0x07, [0x00, 9, 14] + [5] + strings(["hook"])),  // XmlHook under the type 9:14
                        .raw(info: 0x08 | 0x80 | 0x40 | 0x20, [9, 13, 9, 14] + any.bytes),  // ContentAny, both origins, parentSub bit
                        .raw(info: 0x09, parentRoot + doc.bytes),  // ContentDoc
                        .gc(3),
                        .skip(2),
                    ]),
                .init(4, 7, [.gc(1)]),
                .init(2, 0, []),
            ],
            deletes: [(9, [(0, 1), (5, 2)]), (1, []), (9, [(100, 1)])])
        let update = try YUpdate(decoding: bytes)
        #expect(update.encoded() == bytes)
        let kinds = update.structs.map { block -> String in
            switch block {
            case .gc: return "gc"
            case .skip: return "skip"
            case .item(let item): return "\(item.content.ref)"
            }
        }
        #expect(kinds == ["4", "1", "2", "3", "5", "6", "7", "7", "8", "9", "gc", "skip", "gc"])
        // Clocks follow from lengths: "ab😀" is four UTF-16 units.
        #expect(update.structs.map(\.id.clock) == [0, 4, 9, 11, 12, 13, 14, 15, 16, 18, 19, 22, 7])
        guard case .item(let anyItem) = Array(update.structs)[8] else { return }
        #expect(anyItem.parentSub == nil && anyItem.parentSubBit)
        #expect(update.deleteSet.clients.count == 3)
    }

    @Test(arguments: [
        ("empty", [UInt8](), YDecodingError(.unexpectedEnd, at: 0)),
        ("section count past the input", [0x05, 0x00], YDecodingError(.lengthExceedsInput, at: 0)),
        ("struct count past the input", [0x01, 0x7F, 0x01, 0x00], YDecodingError(.lengthExceedsInput, at: 1)),
        ("GC info with a flag", [0x01, 0x01, 0x01, 0x00, 0x20, 0x01, 0x00], YDecodingError(.invalidStructInfo(0x20), at: 4)),
        ("content ref 11", [0x01, 0x01, 0x01, 0x00, 0x0B, 0x01, 0x00], YDecodingError(.invalidStructInfo(0x0B), at: 4)),
        ("Skip info with a flag", [0x01, 0x01, 0x01, 0x00, 0x8A, 0x01, 0x00, 0x00], YDecodingError(.invalidStructInfo(0x8A), at: 4)),
        ("parent info 2", [0x01, 0x01, 0x01, 0x00, 0x04, 0x02, 0x01, 0x61, 0x00], YDecodingError(.invalidParentInfo(2), at: 5)),
        ("type ref 7 (yrs weak link)", [0x01, 0x01, 0x01, 0x00, 0x07, 0x01, 0x01, 0x74, 0x07, 0x00], YDecodingError(.unknownTypeRef(7), at: 8)),
        ("type ref 15 (yrs undefined)", [0x01, 0x01, 0x01, 0x00, 0x07, 0x01, 0x01, 0x74, 0x0F, 0x00], YDecodingError(.unknownTypeRef(15), at: 8)),
        ("empty string", [0x01, 0x01, 0x01, 0x00, 0x04, 0x01, 0x01, 0x74, 0x00, 0x00], YDecodingError(.emptyStruct, at: 8)),
        ("empty GC", [0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00], YDecodingError(.emptyStruct, at: 4)),
        ("zero deleted", [0x01, 0x01, 0x01, 0x00, 0x01, 0x01, 0x01, 0x74, 0x00, 0x00], YDecodingError(.emptyStruct, at: 8)),
        ("invalid embed JSON", [0x01, 0x01, 0x01, 0x00, 0x05, 0x01, 0x01, 0x74, 0x02, 0x7B, 0x7D + 1, 0x00], YDecodingError(.invalidJSON, at: 8)),
        ("undefined is no embed", [0x01, 0x01, 0x01, 0x00, 0x05, 0x01, 0x01, 0x74, 0x09, 0x75, 0x6E, 0x64, 0x65, 0x66, 0x69, 0x6E, 0x65, 0x64, 0x00], YDecodingError(.invalidJSON, at: 8)),
        ("invalid UTF-8 text", [0x01, 0x01, 0x01, 0x00, 0x04, 0x01, 0x01, 0x74, 0x01, 0xFF, 0x00], YDecodingError(.invalidUTF8, at: 8)),
        ("GC past 2^53", [0x01, 0x01, 0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x05, 0x00], YDecodingError(.clockOutOfRange, at: 11)),
        ("delete past 2^53", [0x00, 0x01, 0x01, 0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x05], YDecodingError(.clockOutOfRange, at: 4)),
        ("delete count past the input", [0x00, 0x01, 0x01, 0x7F, 0x00, 0x00], YDecodingError(.lengthExceedsInput, at: 3)),
        ("trailing bytes", [0x00, 0x00, 0x00], YDecodingError(.trailingBytes, at: 2)),
        ("clients ascending", [0x02, 0x01, 0x01, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00, 0x00, 0x01, 0x00], YDecodingError(.clientsNotDescending, at: 6)),
        ("a client twice", [0x02, 0x01, 0x01, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x01, 0x00], YDecodingError(.clientsNotDescending, at: 6)),
    ] as [(String, [UInt8], YDecodingError)])
    func hostileUpdatesAreRefused(name: String, bytes: [UInt8], error: YDecodingError) {
        #expect(throws: error, "\(name)") { try YUpdate(decoding: bytes) }
    }

    @Test func everyTruncationIsAnErrorNotATrap() throws {
        let whole = UpdateBuilder.update(
            [.init(300, 0, [.text("héllo😀"), .gc(2), .text("x", origin: YID(client: 300, clock: 7), parent: nil), .skip(3)])],
            deletes: [(300, [(0, 2)])])
        #expect(try YUpdate(decoding: whole).encoded() == whole)
        for length in 0..<whole.count {
            #expect(throws: YDecodingError.self) { try YUpdate(decoding: Array(whole[..<length])) }
        }
    }

    @Test func nestingInContentIsBounded() {
        // ContentAny holding 65 nested arrays.
        let nested: [UInt8] = [UInt8](repeating: 117, count: 64).flatMap { [$0, 1] } + [117, 0]
        let prefix: [UInt8] = [0x01, 0x01, 0x61, 0x01]
        let bytes = UpdateBuilder.update([.init(1, 0, [.raw(info: 0x08, prefix + nested)])])
        #expect(throws: YDecodingError.self) { try YUpdate(decoding: bytes) }
        #expect(throws: Never.self) { try YUpdate(decoding: bytes, limits: YDecodingLimits(maxNestingDepth: 65)) }
    }
}

@Suite struct StateVectorTests {
    @Test func countsFromClockZeroUpToTheFirstGap() throws {
        let update = UpdateBuilder.update([
            .init(9, 0, [.text("abc"), .skip(2), .text("d", origin: YID(client: 9, clock: 4), parent: nil)]),
            .init(7, 5, [.text("late")]),
            .init(5, 0, [.gc(4), .text("z", origin: YID(client: 5, clock: 3), parent: nil)]),
        ])
        let vector = try YStateVector(decoding: try Yjs.stateVector(fromUpdate: update))
        #expect(vector.entries == [.init(client: 9, clock: 3), .init(client: 5, clock: 5)])
        #expect(vector[7] == 0)
    }

    // Deliberate difference from Yjs (see YStateVector.init(fromUpdate:)): a leading Skip is unknown.
    @Test func aLeadingSkipGivesNoEntry() throws {
        let update = UpdateBuilder.update([.init(9, 0, [.skip(4), .text("x", origin: YID(client: 9, clock: 3), parent: nil)])])
        #expect(try Yjs.stateVector(fromUpdate: update) == [0])
    }

    @Test func decodesAndEncodesInWireOrder() throws {
        let bytes: [UInt8] = [0x03, 0x01, 0x05, 0x09, 0x02, 0x01, 0x07]
        let vector = try YStateVector(decoding: bytes)
        #expect(vector.encoded() == bytes)
        #expect(vector[1] == 7)  // the last entry of a repeated client wins, as in Yjs's Map
        #expect(throws: YDecodingError(.lengthExceedsInput, at: 0)) { try YStateVector(decoding: [0x7F, 0x01, 0x01]) }
        #expect(throws: YDecodingError(.trailingBytes, at: 3)) { try YStateVector(decoding: [0x01, 0x01, 0x01, 0x00]) }
    }
}
