/// A Yjs document update in the v1 encoding (yjs `encodeStateAsUpdate`, `Y.applyUpdate`), decoded
/// exactly as written, so ``encoded()`` gives back the same bytes.
///
/// v1 layout: varUint section count; per section varUint struct count, varUint client, varUint
/// first clock, then the structs (each one's clock follows from the previous one's length); then
/// the ``YDeleteSet``.
///
/// Decoding checks more than Yjs's reader does (see ``YDecodingError/Reason``), so that nothing
/// Tandem accepts makes a Yjs or yrs client throw, and merging stays well defined: sections must
/// come in strictly descending client order, as both write them.
public struct YUpdate: Equatable, Sendable {
    /// The structs of one client, from `clock` on, contiguous.
    public struct Section: Equatable, Sendable {
        public internal(set) var client: UInt64
        public internal(set) var clock: Int
        public internal(set) var structs: [YStruct]

        public var endClock: Int { self.structs.last?.endClock ?? self.clock }
    }

    public internal(set) var sections: [Section]
    public internal(set) var deleteSet: YDeleteSet

    init(sections: [Section], deleteSet: YDeleteSet) {
        self.sections = sections
        self.deleteSet = deleteSet
    }

    /// An update with nothing in it (`[0, 0]`).
    public static let empty = YUpdate(sections: [], deleteSet: YDeleteSet())

    public init(decoding bytes: [UInt8], limits: YDecodingLimits = YDecodingLimits()) throws(YDecodingError) {
        var decoder = Lib0Decoder(bytes)
        // A section is at least three bytes: struct count, client, clock.
        let sectionCount = try decoder.readCount(minimumBytesEach: 3)
        var sections: [Section] = []
        sections.reserveCapacity(sectionCount)
        for _ in 0..<sectionCount {
            let sectionOffset = decoder.position
            // A struct is at least two bytes: info and a length or content.
            let structCount = try decoder.readCount(minimumBytesEach: 2)
            let client = try decoder.readVarUInt()
            if let previous = sections.last, previous.client <= client {
                throw YDecodingError(.clientsNotDescending, at: sectionOffset)
            }
            let firstClock = try decoder.readVarLength()
            var clock = firstClock
            var structs: [YStruct] = []
            structs.reserveCapacity(structCount)
            for _ in 0..<structCount {
                let decoded = try YStruct.decode(id: YID(client: client, clock: clock), from: &decoder, limits: limits)
                clock = decoded.endClock
                structs.append(decoded)
            }
            sections.append(Section(client: client, clock: firstClock, structs: structs))
        }
        self.sections = sections
        self.deleteSet = try YDeleteSet.decode(from: &decoder)
        try decoder.expectEnd()
    }

    public func encoded() -> [UInt8] {
        var encoder = Lib0Encoder()
        self.encode(to: &encoder)
        return encoder.bytes
    }

    func encode(to encoder: inout Lib0Encoder) {
        encoder.writeVarUInt(self.sections.count)
        for section in self.sections {
            encoder.writeVarUInt(section.structs.count)
            encoder.writeVarUInt(section.client)
            encoder.writeVarUInt(section.clock)
            for item in section.structs {
                item.encode(to: &encoder)
            }
        }
        self.deleteSet.encode(to: &encoder)
    }

    /// Every struct in wire order (what Yjs's LazyStructReader yields, Skips included).
    public var structs: some Sequence<YStruct> {
        self.sections.lazy.flatMap(\.structs)
    }
}

/// Builds an update's sections as Yjs's LazyStructWriter does (updates.js): a struct of another
/// client than the previous one starts a section whose first clock is the struct's clock plus the
/// offset it is written from; items are written as Yjs writes items it read lazily.
struct YUpdateWriter {
    private(set) var sections: [YUpdate.Section] = []

    mutating func write(_ block: YStruct, offset: Int = 0) {
        var written = block.suffix(from: offset)
        if case .item(let item) = written {
            written = .item(item.asYjsWritesIt)
        }
        if let last = self.sections.last, last.client == written.id.client, !last.structs.isEmpty {
            self.sections[self.sections.count - 1].structs.append(written)
        } else {
            self.sections.append(YUpdate.Section(client: written.id.client, clock: written.id.clock, structs: [written]))
        }
    }

    func finish(deleteSet: YDeleteSet) -> YUpdate {
        YUpdate(sections: self.sections, deleteSet: deleteSet)
    }
}
