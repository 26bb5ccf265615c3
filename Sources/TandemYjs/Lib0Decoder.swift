/// Reads lib0's binary encoding (https://github.com/dmonad/lib0, decoding.js) from a byte array,
/// checking every read against the end of the input.
///
/// Integers are limited to 2^53 − 1 as in lib0, which represents them as JavaScript numbers; that
/// also keeps every clock + length sum far from overflowing `Int`. Varints must be minimal (the
/// last byte of a multi-byte varint is not 0): lib0 and yrs only write minimal ones, and refusing
/// the others keeps decode → encode byte-exact.
public struct Lib0Decoder {
    /// Largest integer lib0 reads (JavaScript's Number.MAX_SAFE_INTEGER).
    public static let maxSafeInteger: UInt64 = (1 << 53) - 1

    public let bytes: [UInt8]
    public private(set) var position: Int

    public init(_ bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    public var remaining: Int { self.bytes.count - self.position }
    public var isAtEnd: Bool { self.position >= self.bytes.count }

    public func error(_ reason: YDecodingError.Reason) -> YDecodingError {
        YDecodingError(reason, at: self.position)
    }

    public mutating func readUInt8() throws(YDecodingError) -> UInt8 {
        guard self.position < self.bytes.count else { throw self.error(.unexpectedEnd) }
        defer { self.position += 1 }
        return self.bytes[self.position]
    }

    /// lib0 `readVarUint`: 7 bits per byte, least significant first, high bit = more follows.
    public mutating func readVarUInt() throws(YDecodingError) -> UInt64 {
        let start = self.position
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard self.position < self.bytes.count else { throw self.error(.unexpectedEnd) }
            let byte = self.bytes[self.position]
            self.position += 1
            // 53 bits fit in 8 bytes of 7 bits; a ninth byte can only push the value past the limit.
            guard shift < 56 else { throw YDecodingError(.integerOutOfRange, at: start) }
            value |= UInt64(byte & 0x7F) << shift
            guard value <= Self.maxSafeInteger else { throw YDecodingError(.integerOutOfRange, at: start) }
            if byte < 0x80 {
                if byte == 0 && shift > 0 { throw YDecodingError(.nonMinimalInteger, at: start) }
                return value
            }
            shift += 7
        }
    }

    /// A varUint used as a length, count, clock or client: an `Int` in 0…2^53 − 1.
    public mutating func readVarLength() throws(YDecodingError) -> Int {
        Int(try self.readVarUInt())
    }

    /// A count of elements that each take at least `minimumBytes` bytes: checked against what
    /// remains, so no caller ever reserves room for more elements than the input can hold.
    public mutating func readCount(minimumBytesEach: Int = 1) throws(YDecodingError) -> Int {
        let start = self.position
        let count = try self.readVarLength()
        guard count <= self.remaining / max(minimumBytesEach, 1) else {
            throw YDecodingError(.lengthExceedsInput, at: start)
        }
        return count
    }

    /// lib0 `readVarInt`: the first byte holds a continuation bit, a sign bit and 6 bits of
    /// magnitude; further bytes 7 bits each. Returned as JavaScript sees it: a Double that is an
    /// integer of magnitude ≤ 2^53 − 1, with −0 kept (lib0 writes −0 as 0x40).
    public mutating func readVarInt() throws(YDecodingError) -> Double {
        let start = self.position
        let first = try self.readUInt8()
        let negative = first & 0x40 != 0
        var magnitude = UInt64(first & 0x3F)
        if first & 0x80 != 0 {
            var shift: UInt64 = 6
            while true {
                guard self.position < self.bytes.count else { throw self.error(.unexpectedEnd) }
                let byte = self.bytes[self.position]
                self.position += 1
                guard shift < 55 else { throw YDecodingError(.integerOutOfRange, at: start) }
                magnitude |= UInt64(byte & 0x7F) << shift
                guard magnitude <= Self.maxSafeInteger else { throw YDecodingError(.integerOutOfRange, at: start) }
                if byte < 0x80 {
                    if byte == 0 { throw YDecodingError(.nonMinimalInteger, at: start) }
                    break
                }
                shift += 7
            }
        }
        let value = Double(magnitude)
        return negative ? -value : value
    }

    /// `length` raw bytes.
    public mutating func readBytes(_ length: Int) throws(YDecodingError) -> [UInt8] {
        guard length >= 0, length <= self.remaining else { throw self.error(.lengthExceedsInput) }
        defer { self.position += length }
        return Array(self.bytes[self.position..<(self.position + length)])
    }

    /// lib0 `readVarUint8Array`: a varUint length, then that many bytes.
    public mutating func readVarBytes() throws(YDecodingError) -> [UInt8] {
        let start = self.position
        let length = try self.readVarLength()
        guard length <= self.remaining else { throw YDecodingError(.lengthExceedsInput, at: start) }
        return try self.readBytes(length)
    }

    /// lib0 `readVarString`: varUint8Array holding UTF-8 (invalid UTF-8 is refused, as lib0's fatal
    /// TextDecoder does; a leading BOM is kept, as lib0's `ignoreBOM: true` does).
    public mutating func readVarString() throws(YDecodingError) -> String {
        let start = self.position
        let length = try self.readVarLength()
        guard length <= self.remaining else { throw YDecodingError(.lengthExceedsInput, at: start) }
        let range = self.position..<(self.position + length)
        guard UTF8Text.validate(self.bytes[range]) != nil else { throw YDecodingError(.invalidUTF8, at: start) }
        self.position += length
        return String(decoding: self.bytes[range], as: UTF8.self)
    }

    /// A varString's bytes, validated as UTF-8, with their length in UTF-16 code units (what
    /// JavaScript's `string.length` counts, and so what Yjs counts clocks in).
    public mutating func readVarUTF8Text() throws(YDecodingError) -> UTF8Text {
        let start = self.position
        let length = try self.readVarLength()
        guard length <= self.remaining else { throw YDecodingError(.lengthExceedsInput, at: start) }
        let range = self.position..<(self.position + length)
        guard let utf16Count = UTF8Text.validate(self.bytes[range]) else {
            throw YDecodingError(.invalidUTF8, at: start)
        }
        self.position += length
        return UTF8Text(validatedBytes: Array(self.bytes[range]), utf16Count: utf16Count)
    }

    /// Big-endian IEEE 754 single, as lib0 `readFloat32`.
    public mutating func readFloat32() throws(YDecodingError) -> Float {
        Float(bitPattern: UInt32(truncatingIfNeeded: try self.readBigEndian(4)))
    }

    /// Big-endian IEEE 754 double, as lib0 `readFloat64`.
    public mutating func readFloat64() throws(YDecodingError) -> Double {
        Double(bitPattern: try self.readBigEndian(8))
    }

    /// Big-endian two's complement 64-bit integer, as lib0 `readBigInt64`.
    public mutating func readBigInt64() throws(YDecodingError) -> Int64 {
        Int64(bitPattern: try self.readBigEndian(8))
    }

    private mutating func readBigEndian(_ count: Int) throws(YDecodingError) -> UInt64 {
        guard count <= self.remaining else { throw self.error(.unexpectedEnd) }
        var value: UInt64 = 0
        for index in self.position..<(self.position + count) {
            value = value << 8 | UInt64(self.bytes[index])
        }
        self.position += count
        return value
    }

    /// Throws `trailingBytes` unless the whole input was read.
    public func expectEnd() throws(YDecodingError) {
        guard self.isAtEnd else { throw self.error(.trailingBytes) }
    }
}
