/// Where an item without origins lives: a root type by name, or the type an item created.
public enum YParent: Equatable, Sendable {
    /// Parent info 1: a root type of the document (`doc.get(name)`).
    case root(String)
    /// Parent info 0: the type created by the ContentType item with this id.
    case item(YID)
}

/// An item (yjs src/structs/Item.js) as update v1 carries it.
///
/// Update v1 writes `parent` (and `parentSub`) only for an item with neither origin: a receiver
/// finds the parent of the others through their origins. Decoding follows Yjs's lazy reader, so for
/// an item with an origin both are nil; `parentSubBit` keeps the info byte's "has parentSub" bit,
/// which Yjs and yrs set on map entries that have an origin too, so re-encoding is byte-exact.
public struct YItem: Equatable, Sendable {
    public internal(set) var id: YID
    /// The id of the element to the left at insertion.
    public internal(set) var origin: YID?
    /// The id of the element to the right at insertion.
    public internal(set) var rightOrigin: YID?
    /// Only when both origins are nil.
    public internal(set) var parent: YParent?
    /// The map key, only when both origins are nil.
    public internal(set) var parentSub: String?
    /// The info byte's bit 6 (0x20) as read.
    public internal(set) var parentSubBit: Bool
    public internal(set) var content: YContent

    public var length: Int { self.content.length }

    /// The item from element `offset` on (Yjs `sliceStruct` in updates.js): its origin becomes the
    /// element just before the cut; right origin, parent and parentSub are kept.
    func suffix(from offset: Int) -> YItem {
        guard offset > 0 else { return self }
        var right = self
        right.id.clock += offset
        right.origin = YID(client: self.id.client, clock: self.id.clock + offset - 1)
        right.content = self.content.suffix(from: offset)
        return right
    }

    /// The item as Yjs's `Item.write` writes one it read lazily: the info byte's parentSub bit is
    /// set exactly when `parentSub` is known (so it is cleared for items read with an origin).
    var asYjsWritesIt: YItem {
        var item = self
        item.parentSubBit = item.parentSub != nil
        return item
    }
}

/// One struct of an update (yjs src/structs): an item, a GC (a garbage-collected range) or a Skip
/// (a range the update does not hold, written by mergeUpdates between structs it has).
public enum YStruct: Equatable, Sendable {
    case item(YItem)
    case gc(YID, length: Int)
    case skip(YID, length: Int)

    public var id: YID {
        switch self {
        case .item(let item): return item.id
        case .gc(let id, _), .skip(let id, _): return id
        }
    }

    public var length: Int {
        switch self {
        case .item(let item): return item.length
        case .gc(_, let length), .skip(_, let length): return length
        }
    }

    /// The clock just past this struct.
    public var endClock: Int { self.id.clock + self.length }

    /// A gap marker (Yjs `Skip`): the clocks it covers are not in the update.
    public var isSkip: Bool {
        if case .skip = self { return true }
        return false
    }

    /// The struct from element `offset` on (Yjs `sliceStruct`).
    func suffix(from offset: Int) -> YStruct {
        guard offset > 0 else { return self }
        switch self {
        case .item(let item): return .item(item.suffix(from: offset))
        case .gc(let id, let length): return .gc(YID(client: id.client, clock: id.clock + offset), length: length - offset)
        case .skip(let id, let length): return .skip(YID(client: id.client, clock: id.clock + offset), length: length - offset)
        }
    }

    // Info byte bits (yjs uses lib0/binary BIT8, BIT7, BIT6 and BITS5).
    static let hasOrigin: UInt8 = 0x80
    static let hasRightOrigin: UInt8 = 0x40
    static let hasParentSub: UInt8 = 0x20
    static let refMask: UInt8 = 0x1F
    static let gcInfo: UInt8 = 0
    static let skipInfo: UInt8 = 10

    /// Reads one struct whose id is `id` (update v1: info byte, then the struct's fields).
    static func decode(id: YID, from decoder: inout Lib0Decoder, limits: YDecodingLimits) throws(YDecodingError) -> YStruct {
        let offset = decoder.position
        let info = try decoder.readUInt8()
        let decoded: YStruct
        switch info {
        case gcInfo:
            decoded = .gc(id, length: try decoder.readVarLength())
        case skipInfo:
            decoded = .skip(id, length: try decoder.readVarLength())
        default:
            let ref = info & refMask
            // Ref 0 with flags, ref 10 with flags and refs 11…31 are nothing Yjs reads.
            guard ref >= 1 && ref <= 9 else { throw YDecodingError(.invalidStructInfo(info), at: offset) }
            let origin = info & hasOrigin != 0 ? try YID.decode(from: &decoder) : nil
            let rightOrigin = info & hasRightOrigin != 0 ? try YID.decode(from: &decoder) : nil
            var parent: YParent?
            var parentSub: String?
            if origin == nil && rightOrigin == nil {
                let infoOffset = decoder.position
                switch try decoder.readVarUInt() {
                case 1: parent = .root(try decoder.readVarString())
                case 0: parent = .item(try YID.decode(from: &decoder))
                case let other: throw YDecodingError(.invalidParentInfo(other), at: infoOffset)
                }
                if info & hasParentSub != 0 {
                    parentSub = try decoder.readVarString()
                }
            }
            let content = try YContent.decode(ref: ref, from: &decoder, limits: limits)
            decoded = .item(
                YItem(
                    id: id, origin: origin, rightOrigin: rightOrigin, parent: parent, parentSub: parentSub,
                    parentSubBit: info & hasParentSub != 0, content: content))
        }
        guard decoded.length > 0 else { throw YDecodingError(.emptyStruct, at: offset) }
        guard decoded.endClock <= Int(Lib0Decoder.maxSafeInteger) else {
            throw YDecodingError(.clockOutOfRange, at: offset)
        }
        return decoded
    }

    /// Writes the struct from element `offset` on, as Yjs's `write(encoder, offset)` does: an
    /// item cut at an offset gets the element before the cut as its origin, which means its parent
    /// is not written.
    func encode(to encoder: inout Lib0Encoder, offset: Int = 0) {
        switch self {
        case .gc(_, let length):
            encoder.writeUInt8(Self.gcInfo)
            encoder.writeVarUInt(length - offset)
        case .skip(_, let length):
            encoder.writeUInt8(Self.skipInfo)
            encoder.writeVarUInt(length - offset)
        case .item(let whole):
            let item = offset > 0 ? whole.suffix(from: offset) : whole
            var info = item.content.ref
            if item.origin != nil { info |= Self.hasOrigin }
            if item.rightOrigin != nil { info |= Self.hasRightOrigin }
            if item.parentSubBit { info |= Self.hasParentSub }
            encoder.writeUInt8(info)
            if let origin = item.origin { origin.encode(to: &encoder) }
            if let rightOrigin = item.rightOrigin { rightOrigin.encode(to: &encoder) }
            if item.origin == nil && item.rightOrigin == nil {
                switch item.parent {
                case .root(let name):
                    encoder.writeVarUInt(1 as UInt64)
                    encoder.writeVarString(name)
                case .item(let id):
                    encoder.writeVarUInt(0 as UInt64)
                    id.encode(to: &encoder)
                case nil:
                    // Unreachable: decoding gives every item without origins a parent, and cutting
                    // an item gives it an origin.
                    preconditionFailure("item \(item.id) has neither origins nor parent")
                }
                if item.parentSubBit, let parentSub = item.parentSub {
                    encoder.writeVarString(parentSub)
                }
            }
            item.content.encode(to: &encoder)
        }
    }
}
