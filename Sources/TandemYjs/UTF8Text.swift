/// The UTF-8 bytes of a ContentString, with their length in UTF-16 code units.
///
/// Yjs counts a string's clock length in UTF-16 code units (JavaScript's `string.length`) and
/// splits strings at code-unit offsets, so Tandem keeps the exact bytes (re-encoding is
/// byte-exact) and does its arithmetic in UTF-16 units without going through `String`.
public struct UTF8Text: Equatable, Hashable, Sendable {
    public let bytes: [UInt8]
    /// Length in UTF-16 code units: 1 per scalar below U+10000, 2 (a surrogate pair) above.
    public let utf16Count: Int

    init(validatedBytes: [UInt8], utf16Count: Int) {
        self.bytes = validatedBytes
        self.utf16Count = utf16Count
    }

    /// The UTF-8 of `string`.
    public init(_ string: String) {
        self.bytes = Array(string.utf8)
        self.utf16Count = string.utf16.count
    }

    public var string: String { String(decoding: self.bytes, as: UTF8.self) }

    /// The text from UTF-16 offset `offset` on, as JavaScript's `str.slice(offset)` followed by
    /// UTF-8 encoding gives it: when `offset` falls between the two halves of a surrogate pair,
    /// the lone low surrogate left at the start encodes as U+FFFD (Yjs's ContentString.splice
    /// writes U+FFFD there explicitly; TextEncoder does the same to a lone surrogate). The length in
    /// UTF-16 units is always `utf16Count - offset`.
    public func suffix(fromUTF16Offset offset: Int) -> UTF8Text {
        precondition(offset >= 0 && offset <= self.utf16Count)
        var units = 0
        var index = 0
        let bytes = self.bytes
        while units < offset {
            let lead = bytes[index]
            let width = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
            if width == 4 {
                if units + 1 == offset {
                    // Split inside a surrogate pair: the low half becomes U+FFFD (EF BF BD).
                    var result: [UInt8] = [0xEF, 0xBF, 0xBD]
                    result.append(contentsOf: bytes[(index + 4)...])
                    return UTF8Text(validatedBytes: result, utf16Count: self.utf16Count - offset)
                }
                units += 2
            } else {
                units += 1
            }
            index += width
        }
        return UTF8Text(validatedBytes: Array(bytes[index...]), utf16Count: self.utf16Count - offset)
    }

    /// Checks `bytes` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above
    /// U+10FFFF — what a fatal TextDecoder accepts) and returns its length in UTF-16 units.
    public static func validate(_ bytes: ArraySlice<UInt8>) -> Int? {
        var units = 0
        var index = bytes.startIndex
        let end = bytes.endIndex
        while index < end {
            let lead = bytes[index]
            if lead < 0x80 {
                units += 1
                index += 1
                continue
            }
            let width: Int
            var lower: UInt8 = 0x80
            var upper: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: width = 2
            case 0xE0: width = 3; lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: width = 3
            case 0xED: width = 3; upper = 0x9F  // U+D800…U+DFFF are not scalars
            case 0xF0: width = 4; lower = 0x90
            case 0xF1...0xF3: width = 4
            case 0xF4: width = 4; upper = 0x8F  // nothing above U+10FFFF
            default: return nil
            }
            guard end - index >= width else { return nil }
            let second = bytes[index + 1]
            guard second >= lower && second <= upper else { return nil }
            for offset in 2..<max(width, 2) where bytes[index + offset] & 0xC0 != 0x80 {
                return nil
            }
            units += width == 4 ? 2 : 1
            index += width
        }
        return units
    }
}
