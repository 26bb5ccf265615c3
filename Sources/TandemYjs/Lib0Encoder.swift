/// Writes lib0's binary encoding (https://github.com/dmonad/lib0, encoding.js): the inverse of
/// ``Lib0Decoder``, always minimal varints.
public struct Lib0Encoder {
    public private(set) var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 0) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    public mutating func writeUInt8(_ value: UInt8) {
        self.bytes.append(value)
    }

    public mutating func writeVarUInt(_ value: UInt64) {
        var value = value
        while value > 0x7F {
            self.bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        self.bytes.append(UInt8(value))
    }

    /// A non-negative `Int` (lengths, clocks) as varUint.
    public mutating func writeVarUInt(_ value: Int) {
        precondition(value >= 0, "lib0 varUint of a negative number")
        self.writeVarUInt(UInt64(value))
    }

    /// lib0 `writeVarInt` of an integral Double of magnitude ≤ 2^53 − 1 (−0 gets the sign bit).
    public mutating func writeVarInt(_ value: Double) {
        let negative = value.sign == .minus
        var magnitude = UInt64(value.magnitude)
        self.bytes.append((magnitude > 0x3F ? 0x80 : 0) | (negative ? 0x40 : 0) | UInt8(magnitude & 0x3F))
        magnitude >>= 6
        while magnitude > 0 {
            self.bytes.append((magnitude > 0x7F ? 0x80 : 0) | UInt8(magnitude & 0x7F))
            magnitude >>= 7
        }
    }

    public mutating func writeBytes<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        self.bytes.append(contentsOf: bytes)
    }

    /// lib0 `writeVarUint8Array`.
    public mutating func writeVarBytes<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        self.writeVarUInt(bytes.count)
        self.bytes.append(contentsOf: bytes)
    }

    /// lib0 `writeVarString`.
    public mutating func writeVarString(_ string: String) {
        self.writeVarBytes(string.utf8)
    }

    public mutating func writeFloat32(_ value: Float) {
        self.writeBigEndian(UInt64(value.bitPattern), count: 4)
    }

    public mutating func writeFloat64(_ value: Double) {
        self.writeBigEndian(value.bitPattern, count: 8)
    }

    public mutating func writeBigInt64(_ value: Int64) {
        self.writeBigEndian(UInt64(bitPattern: value), count: 8)
    }

    private mutating func writeBigEndian(_ value: UInt64, count: Int) {
        for index in stride(from: count - 1, through: 0, by: -1) {
            self.bytes.append(UInt8(truncatingIfNeeded: value >> (UInt64(index) * 8)))
        }
    }
}
