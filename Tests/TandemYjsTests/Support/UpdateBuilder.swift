@testable import TandemYjs

/// Writes update v1 bytes by hand for the codec tests, field by field as yjs's UpdateEncoderV1
/// does, so a test reads like the wire format.
struct UpdateBuilder {
    enum Block {
        /// An item of text under a root type (`parent`) or after `origin`.
        case text(String, origin: YID? = nil, rightOrigin: YID? = nil, parent: String? = "t", parentSub: String? = nil)
        /// Raw item: info byte and the bytes after it.
        case raw(info: UInt8, [UInt8])
        case gc(Int)
        case skip(Int)
    }

    struct Section {
        var client: UInt64
        var clock: Int
        var blocks: [Block]
    }

    var sections: [Section] = []
    var deletes: [(client: UInt64, ranges: [(Int, Int)])] = []

    func bytes() -> [UInt8] {
        var encoder = Lib0Encoder()
        encoder.writeVarUInt(self.sections.count)
        for section in self.sections {
            encoder.writeVarUInt(section.blocks.count)
            encoder.writeVarUInt(section.client)
            encoder.writeVarUInt(section.clock)
            for block in section.blocks {
                switch block {
                case .gc(let length):
                    encoder.writeUInt8(0)
                    encoder.writeVarUInt(length)
                case .skip(let length):
                    encoder.writeUInt8(10)
                    encoder.writeVarUInt(length)
                case .raw(let info, let rest):
                    encoder.writeUInt8(info)
                    encoder.writeBytes(rest)
                case .text(let text, let origin, let rightOrigin, let parent, let parentSub):
                    var info: UInt8 = 4
                    if origin != nil { info |= 0x80 }
                    if rightOrigin != nil { info |= 0x40 }
                    if parentSub != nil { info |= 0x20 }
                    encoder.writeUInt8(info)
                    if let origin { origin.encode(to: &encoder) }
                    if let rightOrigin { rightOrigin.encode(to: &encoder) }
                    if origin == nil && rightOrigin == nil {
                        encoder.writeVarUInt(1 as UInt64)
                        encoder.writeVarString(parent ?? "")
                        if let parentSub { encoder.writeVarString(parentSub) }
                    }
                    encoder.writeVarString(text)
                }
            }
        }
        encoder.writeVarUInt(self.deletes.count)
        for entry in self.deletes {
            encoder.writeVarUInt(entry.client)
            encoder.writeVarUInt(entry.ranges.count)
            for (clock, length) in entry.ranges {
                encoder.writeVarUInt(clock)
                encoder.writeVarUInt(length)
            }
        }
        return encoder.bytes
    }

    static func update(_ sections: [Section], deletes: [(client: UInt64, ranges: [(Int, Int)])] = []) -> [UInt8] {
        UpdateBuilder(sections: sections, deletes: deletes).bytes()
    }
}

extension UpdateBuilder.Section {
    init(_ client: UInt64, _ clock: Int, _ blocks: [UpdateBuilder.Block]) {
        self.init(client: client, clock: clock, blocks: blocks)
    }
}
