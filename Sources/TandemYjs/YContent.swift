/// The content of a Yjs item (yjs src/structs/Content*.js), in its update v1 form. The ref (the low
/// five bits of the item's info byte) is in each case's comment.
///
/// Text that Yjs parses with `JSON.parse` (ContentJSON, ContentEmbed, ContentFormat values) is kept
/// as the exact JSON text, checked by ``JSONSyntax``.
public enum YContent: Equatable, Sendable {
    /// 1: `length` deleted elements whose content was dropped (varUint length).
    case deleted(length: Int)
    /// 2: legacy JSON array content: varUint count, then each element as varString JSON text
    /// (`undefined` for undefined).
    case json([String])
    /// 3: a Uint8Array (varUint8Array).
    case binary([UInt8])
    /// 4: text (varString); its length is counted in UTF-16 code units.
    case string(UTF8Text)
    /// 5: a text embed (varString JSON).
    case embed(json: String)
    /// 6: a formatting attribute: varString key, varString JSON value (`null` ends a format range).
    case format(key: String, valueJSON: String)
    /// 7: a nested shared type.
    case type(YTypeRef)
    /// 8: array/map values: varUint count, then lib0 Any values.
    case any([Lib0Any])
    /// 9: a sub-document: varString guid, lib0 Any options.
    case doc(guid: String, options: Lib0Any)

    public var ref: UInt8 {
        switch self {
        case .deleted: return 1
        case .json: return 2
        case .binary: return 3
        case .string: return 4
        case .embed: return 5
        case .format: return 6
        case .type: return 7
        case .any: return 8
        case .doc: return 9
        }
    }

    /// How many clock values the content takes (Yjs `getLength()`).
    public var length: Int {
        switch self {
        case .deleted(let length): return length
        case .json(let elements): return elements.count
        case .string(let text): return text.utf16Count
        case .any(let values): return values.count
        case .binary, .embed, .format, .type, .doc: return 1
        }
    }

    /// The content from element `offset` on (Yjs `content.splice(offset)` keeps the right part;
    /// update writers with an offset write the same). Only multi-element contents can be split;
    /// the others have length 1 and are only ever taken whole (`offset` 0).
    public func suffix(from offset: Int) -> YContent {
        precondition(offset >= 0 && offset < self.length, "content split outside its length")
        guard offset > 0 else { return self }
        switch self {
        case .deleted(let length): return .deleted(length: length - offset)
        case .json(let elements): return .json(Array(elements[offset...]))
        case .string(let text): return .string(text.suffix(fromUTF16Offset: offset))
        case .any(let values): return .any(Array(values[offset...]))
        case .binary, .embed, .format, .type, .doc: preconditionFailure("length-1 content split")
        }
    }

    static func decode(ref: UInt8, from decoder: inout Lib0Decoder, limits: YDecodingLimits) throws(YDecodingError) -> YContent {
        let offset = decoder.position
        let content: YContent
        switch ref {
        case 1:
            content = .deleted(length: try decoder.readVarLength())
        case 2:
            let count = try decoder.readCount(minimumBytesEach: 1)
            var elements: [String] = []
            elements.reserveCapacity(count)
            for _ in 0..<count {
                let elementOffset = decoder.position
                let text = try decoder.readVarString()
                guard text == "undefined" || JSONSyntax.isValid(text, maxDepth: limits.maxNestingDepth) else {
                    throw YDecodingError(.invalidJSON, at: elementOffset)
                }
                elements.append(text)
            }
            content = .json(elements)
        case 3:
            content = .binary(try decoder.readVarBytes())
        case 4:
            content = .string(try decoder.readVarUTF8Text())
        case 5:
            content = .embed(json: try Self.readJSON(from: &decoder, limits: limits))
        case 6:
            let key = try decoder.readVarString()
            content = .format(key: key, valueJSON: try Self.readJSON(from: &decoder, limits: limits))
        case 7:
            content = .type(try YTypeRef.decode(from: &decoder))
        case 8:
            let count = try decoder.readCount(minimumBytesEach: 1)
            var values: [Lib0Any] = []
            values.reserveCapacity(count)
            for _ in 0..<count {
                values.append(try Lib0Any.decode(from: &decoder, maxDepth: limits.maxNestingDepth))
            }
            content = .any(values)
        case 9:
            let guid = try decoder.readVarString()
            content = .doc(guid: guid, options: try Lib0Any.decode(from: &decoder, maxDepth: limits.maxNestingDepth))
        default:
            preconditionFailure("content ref \(ref) is checked by the struct decoder")
        }
        guard content.length > 0 else { throw YDecodingError(.emptyStruct, at: offset) }
        return content
    }

    private static func readJSON(from decoder: inout Lib0Decoder, limits: YDecodingLimits) throws(YDecodingError) -> String {
        let offset = decoder.position
        let text = try decoder.readVarString()
        guard JSONSyntax.isValid(text, maxDepth: limits.maxNestingDepth) else {
            throw YDecodingError(.invalidJSON, at: offset)
        }
        return text
    }

    func encode(to encoder: inout Lib0Encoder) {
        switch self {
        case .deleted(let length):
            encoder.writeVarUInt(length)
        case .json(let elements):
            encoder.writeVarUInt(elements.count)
            for element in elements { encoder.writeVarString(element) }
        case .binary(let bytes):
            encoder.writeVarBytes(bytes)
        case .string(let text):
            encoder.writeVarBytes(text.bytes)
        case .embed(let json):
            encoder.writeVarString(json)
        case .format(let key, let valueJSON):
            encoder.writeVarString(key)
            encoder.writeVarString(valueJSON)
        case .type(let typeRef):
            typeRef.encode(to: &encoder)
        case .any(let values):
            encoder.writeVarUInt(values.count)
            for value in values { value.encode(to: &encoder) }
        case .doc(let guid, let options):
            encoder.writeVarString(guid)
            options.encode(to: &encoder)
        }
    }
}
