/// A value in lib0's `Any` encoding (lib0 encoding.js `writeAny` / decoding.js `readAny`), used by
/// ContentAny and ContentDoc's options in update v1.
///
/// Every case keeps what is needed to re-encode the same bytes: the number tag (varInt, float32,
/// float64, bigint) is its own case, and object entries stay in wire order, duplicates included.
public indirect enum Lib0Any: Equatable, Sendable {
    /// Tag 127.
    case undefined
    /// Tag 126.
    case null
    /// Tag 125: a lib0 varInt, as JavaScript holds it (an integral Double, −0 kept).
    case integer(Double)
    /// Tag 124: big-endian float32.
    case float32(Float)
    /// Tag 123: big-endian float64.
    case float64(Double)
    /// Tag 122: big-endian 64-bit integer (a JavaScript BigInt).
    case bigInt(Int64)
    /// Tags 120 (true) and 121 (false).
    case bool(Bool)
    /// Tag 119: varString.
    case string(String)
    /// Tag 118: varUint count, then (varString key, value) pairs.
    case object([(key: String, value: Lib0Any)])
    /// Tag 117: varUint count, then values.
    case array([Lib0Any])
    /// Tag 116: varUint8Array.
    case bytes([UInt8])

    public static func == (lhs: Lib0Any, rhs: Lib0Any) -> Bool {
        switch (lhs, rhs) {
        case (.undefined, .undefined), (.null, .null): return true
        // Compare bit patterns: the value must re-encode to the same bytes (−0 ≠ 0, NaN == NaN).
        case (.integer(let a), .integer(let b)): return a.bitPattern == b.bitPattern
        case (.float32(let a), .float32(let b)): return a.bitPattern == b.bitPattern
        case (.float64(let a), .float64(let b)): return a.bitPattern == b.bitPattern
        case (.bigInt(let a), .bigInt(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.bytes(let a), .bytes(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// Reads one value; arrays and objects may nest `maxDepth` deep.
    public static func decode(from decoder: inout Lib0Decoder, maxDepth: Int) throws(YDecodingError) -> Lib0Any {
        try self.decode(from: &decoder, depthLeft: maxDepth)
    }

    private static func decode(from decoder: inout Lib0Decoder, depthLeft: Int) throws(YDecodingError) -> Lib0Any {
        let tagOffset = decoder.position
        let tag = try decoder.readUInt8()
        switch tag {
        case 127: return .undefined
        case 126: return .null
        case 125: return .integer(try decoder.readVarInt())
        case 124: return .float32(try decoder.readFloat32())
        case 123: return .float64(try decoder.readFloat64())
        case 122: return .bigInt(try decoder.readBigInt64())
        case 121: return .bool(false)
        case 120: return .bool(true)
        case 119: return .string(try decoder.readVarString())
        case 118:
            guard depthLeft > 0 else { throw YDecodingError(.nestingTooDeep, at: tagOffset) }
            // Each entry is at least a 1-byte key length and a 1-byte value.
            let count = try decoder.readCount(minimumBytesEach: 2)
            var entries: [(key: String, value: Lib0Any)] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let key = try decoder.readVarString()
                entries.append((key, try self.decode(from: &decoder, depthLeft: depthLeft - 1)))
            }
            return .object(entries)
        case 117:
            guard depthLeft > 0 else { throw YDecodingError(.nestingTooDeep, at: tagOffset) }
            let count = try decoder.readCount(minimumBytesEach: 1)
            var values: [Lib0Any] = []
            values.reserveCapacity(count)
            for _ in 0..<count {
                values.append(try self.decode(from: &decoder, depthLeft: depthLeft - 1))
            }
            return .array(values)
        case 116: return .bytes(try decoder.readVarBytes())
        default: throw YDecodingError(.unknownAnyTag(tag), at: tagOffset)
        }
    }

    public func encode(to encoder: inout Lib0Encoder) {
        switch self {
        case .undefined: encoder.writeUInt8(127)
        case .null: encoder.writeUInt8(126)
        case .integer(let value):
            if value.rounded(.towardZero) == value && value.magnitude <= Double(Lib0Decoder.maxSafeInteger) {
                encoder.writeUInt8(125)
                encoder.writeVarInt(value)
            } else {
                // Not a varInt (only a value built by hand can be): written as lib0 would write it.
                encoder.writeUInt8(123)
                encoder.writeFloat64(value)
            }
        case .float32(let value):
            encoder.writeUInt8(124)
            encoder.writeFloat32(value)
        case .float64(let value):
            encoder.writeUInt8(123)
            encoder.writeFloat64(value)
        case .bigInt(let value):
            encoder.writeUInt8(122)
            encoder.writeBigInt64(value)
        case .bool(let value): encoder.writeUInt8(value ? 120 : 121)
        case .string(let value):
            encoder.writeUInt8(119)
            encoder.writeVarString(value)
        case .object(let entries):
            encoder.writeUInt8(118)
            encoder.writeVarUInt(entries.count)
            for entry in entries {
                encoder.writeVarString(entry.key)
                entry.value.encode(to: &encoder)
            }
        case .array(let values):
            encoder.writeUInt8(117)
            encoder.writeVarUInt(values.count)
            for value in values { value.encode(to: &encoder) }
        case .bytes(let bytes):
            encoder.writeUInt8(116)
            encoder.writeVarBytes(bytes)
        }
    }
}
