/// Appends compact JSON to a byte array. Server messages are written directly with it (no intermediate
/// `JSONValue`), so a per-tick presence delta is built in one pass over already-encoded entries.
public struct JSONWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: raw("null")
        case .bool(let b): raw(b ? "true" : "false")
        case .number(let lexeme): utf8(lexeme)
        case .string(let s): string(s)
        case .array(let items):
            bytes.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                write(item)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            // Sorted as pairs, not keys looked up again (a hash per key showed in the presence profile,
            // issue 14), into one array: `Dictionary.sorted` cost a couple of dozen allocations per object
            // in a debug build. Keys are unique, so the order is the same. Small objects (presence states)
            // are insertion-sorted in place.
            var pairs: [(key: String, value: JSONValue)] = []
            pairs.reserveCapacity(members.count)
            for member in members { pairs.append(member) }
            if pairs.count <= 16 {
                var i = 1
                while i < pairs.count {
                    var j = i
                    while j > 0 && Self.keyPrecedes(pairs[j].key, pairs[j - 1].key) {
                        let moved = pairs[j]
                        pairs[j] = pairs[j - 1]
                        pairs[j - 1] = moved
                        j -= 1
                    }
                    i += 1
                }
            } else {
                pairs.sort { Self.keyPrecedes($0.key, $1.key) }
            }
            var first = true
            for member in pairs {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                string(member.key)
                bytes.append(UInt8(ascii: ":"))
                write(member.value)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// `a < b` as `String` orders them. Two ASCII keys (nearly every key) are compared byte for byte,
    /// which is the same order (String compares Unicode scalars of the NFC form; ASCII is NFC and its
    /// bytes are its scalars) without the general comparison's cost; anything else goes through `<`.
    static func keyPrecedes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        let order: Int? = a.withUTF8 { x in
            b.withUTF8 { y in
                var ascii: UInt8 = 0
                for byte in x { ascii |= byte }
                for byte in y { ascii |= byte }
                guard ascii < 0x80 else { return nil }
                let common = min(x.count, y.count)
                var i = 0
                while i < common {
                    if x[i] != y[i] { return x[i] < y[i] ? -1 : 1 }
                    i += 1
                }
                return x.count < y.count ? -1 : (x.count == y.count ? 0 : 1)
            }
        }
        guard let order else { return a < b }
        return order < 0
    }

    /// Appends bytes that are already valid JSON.
    public mutating func raw(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends bytes that are already valid JSON (an encoded entry, a stored record).
    public mutating func raw(_ json: some Sequence<UInt8>) {
        bytes.append(contentsOf: json)
    }

    /// Appends a presence entry's encoding, spliced straight into the output.
    public mutating func entry(_ entry: PresenceEntry) {
        entry.appendEncoded(to: &bytes)
    }

    public mutating func integer(_ value: some BinaryInteger) {
        if let value = UInt64(exactly: value) {
            digits(value)
        } else if let value = Int64(exactly: value) {
            bytes.append(UInt8(ascii: "-"))  // (negative: a non-negative one fits UInt64)
            digits(value.magnitude)
        } else {
            utf8(String(value))
        }
    }

    /// The decimal digits of `value`, appended in place: `String(value)` made a string per number, ~1,000
    /// instructions for the clock of every result and patch (callgrind, issue 8 stop 28).
    private mutating func digits(_ value: UInt64) { Self.appendDecimal(value, to: &bytes) }

    /// Appends `value` in decimal without going through a `String`, digit by digit from the most
    /// significant (also every presence entry's version, spliced per entry per delta, node message and
    /// Redis write: appending a slice of a digit buffer went through the generic sequence path).
    static func appendDecimal(_ value: UInt64, to bytes: inout [UInt8]) {
        var divisor: UInt64 = 1
        while divisor <= value / 10 { divisor *= 10 }
        var rest = value
        repeat {
            bytes.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest / divisor))
            rest %= divisor
            divisor /= 10
        } while divisor > 0
    }

    /// Appends `count` bytes that `body` writes in place (they must be valid JSON where they go: digits,
    /// a checksum's hex).
    public mutating func written(_ count: Int, _ body: (UnsafeMutableBufferPointer<UInt8>) -> Void) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        bytes.withUnsafeMutableBufferPointer { all in
            body(UnsafeMutableBufferPointer(rebasing: all[start..<start + count]))
        }
    }

    /// Appends a string's UTF-8 bytes as they are (a number's lexeme: already valid JSON).
    private mutating func utf8(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    public mutating func bool(_ value: Bool) { raw(value ? "true" : "false") }

    /// A JSON string literal, escaping what RFC 8259 requires plus U+2028/U+2029 (so the output is also
    /// safe to embed in JavaScript source).
    ///
    /// Works on the UTF-8 bytes: runs that need no escape are copied as they are (strings are valid
    /// UTF-8, so this copies whole scalars). Going scalar by scalar through `String(scalar)` cost a
    /// string per character and was a large part of encoding every message.
    public mutating func string(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var start = 0
            var i = 0
            while i < utf8.count {
                let byte = utf8[i]
                let escape: StaticString?
                switch byte {
                case 0x22: escape = "\\\""
                case 0x5C: escape = "\\\\"
                case 0x0A: escape = "\\n"
                case 0x0D: escape = "\\r"
                case 0x09: escape = "\\t"
                case 0x08: escape = "\\b"
                case 0x0C: escape = "\\f"
                case 0x00..<0x20, 0xE2:
                    escape = nil
                default:
                    i += 1
                    continue
                }
                if let escape {
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i]))
                    raw(escape)
                    i += 1
                    start = i
                } else if byte < 0x20 {
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i]))
                    appendUnicodeEscape(UInt32(byte))
                    i += 1
                    start = i
                } else if i + 2 < utf8.count, utf8[i + 1] == 0x80, utf8[i + 2] == 0xA8 || utf8[i + 2] == 0xA9 {
                    // U+2028 LINE SEPARATOR / U+2029 PARAGRAPH SEPARATOR (E2 80 A8/A9).
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i]))
                    appendUnicodeEscape(utf8[i + 2] == 0xA8 ? 0x2028 : 0x2029)
                    i += 3
                    start = i
                } else {
                    i += 1
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<utf8.count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// `\uXXXX` (lower-case hex, four digits).
    private mutating func appendUnicodeEscape(_ value: UInt32) {
        let digits: StaticString = "0123456789abcdef"
        raw("\\u")
        for shift in stride(from: 12, through: 0, by: -4) {
            bytes.append(digits.utf8Start[Int((value >> UInt32(shift)) & 0xF)])
        }
    }

    /// Writes `"key":` (the key is a literal, known not to need escaping).
    public mutating func key(_ key: StaticString) {
        bytes.append(UInt8(ascii: "\""))
        raw(key)
        raw("\":")
    }

    public mutating func comma() { bytes.append(UInt8(ascii: ",")) }
    public mutating func openObject() { bytes.append(UInt8(ascii: "{")) }
    public mutating func closeObject() { bytes.append(UInt8(ascii: "}")) }
    public mutating func openArray() { bytes.append(UInt8(ascii: "[")) }
    public mutating func closeArray() { bytes.append(UInt8(ascii: "]")) }

    /// Writes `[a,b,c]` with `element` writing each item.
    public mutating func array<C: Collection>(_ items: C, _ element: (inout JSONWriter, C.Element) -> Void) {
        openArray()
        var first = true
        for item in items {
            if !first { comma() }
            first = false
            element(&self, item)
        }
        closeArray()
    }
}
