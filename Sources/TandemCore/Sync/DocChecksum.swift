/// The integrity checksum of a doc's state (issue 13): a multiset hash of its records, maintained
/// incrementally so that each commit costs O(records it changes), and computable the same way by any
/// client (protocol.md, "Checksums", is the normative definition; `Web/client/tandem.js` implements it too).
///
/// - A record's hash is two 32-bit MurmurHash3 (x86_32) values — seeds `0` and `0x9747b28c` — of the
///   UTF-8 bytes of the canonical JSON of the two-element array `[id, value]` (`canonicalBytes`).
/// - The doc's checksum is the sum of its live records' hashes, each lane separately mod 2^32. A sum
///   does not depend on the order records were added in, and removing a record subtracts its hash, so
///   applying a commit is: minus the old hashes of the records it touches, plus their new ones.
/// - Written as 16 lower-case hex digits: lane 0 then lane 1 (`"0000000000000000"` for an empty doc).
///
/// Why two 32-bit lanes rather than one 64-bit hash: JavaScript has exact 32-bit integer arithmetic
/// (`Math.imul`, `>>> 0`) but no cheap 64-bit one (BigInt allocates), and Redis's Lua has only doubles —
/// a sum mod 2^32 of two values below 2^32 stays exact there. Two independent 32-bit lanes give the
/// 64 bits that make an accidental match of two different states negligible (divergence detection does
/// not defend against an adversary who controls both states: that one could write anything anyway).
public struct DocChecksum: Sendable, Hashable, CustomStringConvertible {
    public var lane0: UInt32
    public var lane1: UInt32

    public init(lane0: UInt32, lane1: UInt32) {
        self.lane0 = lane0
        self.lane1 = lane1
    }

    /// The checksum of an empty doc.
    public static let zero = DocChecksum(lane0: 0, lane1: 0)

    public static let seed0: UInt32 = 0
    public static let seed1: UInt32 = 0x9747_b28c

    public static func + (a: DocChecksum, b: DocChecksum) -> DocChecksum {
        DocChecksum(lane0: a.lane0 &+ b.lane0, lane1: a.lane1 &+ b.lane1)
    }

    public static func - (a: DocChecksum, b: DocChecksum) -> DocChecksum {
        DocChecksum(lane0: a.lane0 &- b.lane0, lane1: a.lane1 &- b.lane1)
    }

    public static func += (a: inout DocChecksum, b: DocChecksum) { a = a + b }
    public static func -= (a: inout DocChecksum, b: DocChecksum) { a = a - b }

    /// 16 lower-case hex digits, lane 0 first.
    public var hex: String {
        String(unsafeUninitializedCapacity: Self.hexLength) { buffer in
            writeHex(to: buffer.baseAddress!)
            return Self.hexLength
        }
    }

    /// Characters in `hex`.
    public static let hexLength = 16

    /// Writes `hex` (`hexLength` bytes of ASCII) at `pointer`: what a group commit sends per commit,
    /// written into the command without a string (three allocations each before).
    public func writeHex(to pointer: UnsafeMutablePointer<UInt8>) {
        for i in 0..<8 {
            pointer[i] = Self.hexDigit((lane0 >> UInt32(28 - 4 * i)) & 0xF)
            pointer[8 + i] = Self.hexDigit((lane1 >> UInt32(28 - 4 * i)) & 0xF)
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt32) -> UInt8 {
        UInt8(truncatingIfNeeded: nibble < 10 ? 48 + nibble : 87 + nibble)  // 0-9, a-f
    }

    public var description: String { hex }

    /// Parses 16 hex digits (either case); nil for anything else.
    public init?(hex: some StringProtocol) {
        self.init(hexUTF8: Array(hex.utf8))
    }

    /// Parses 16 hex digits (either case) from their ASCII bytes, e.g. a Redis reply's, without making a
    /// string; nil for anything else.
    public init?(hexUTF8 utf8: [UInt8]) {
        guard let parsed = utf8.withUnsafeBufferPointer({ Self(hexBytes: $0) }) else { return nil }
        self = parsed
    }

    /// The same from bytes in place (a field of a longer reply: `SyncStore.okText`).
    public init?(hexBytes utf8: UnsafeBufferPointer<UInt8>) {
        guard utf8.count == Self.hexLength else { return nil }
        var lanes: (UInt32, UInt32) = (0, 0)
        for i in 0..<Self.hexLength {
            let byte = utf8[i]
            let nibble: UInt8
            switch byte {
            case 0x30...0x39: nibble = byte - 0x30
            case 0x61...0x66: nibble = byte - 0x61 + 10
            case 0x41...0x46: nibble = byte - 0x41 + 10
            default: return nil
            }
            if i < 8 { lanes.0 = lanes.0 << 4 | UInt32(nibble) } else { lanes.1 = lanes.1 << 4 | UInt32(nibble) }
        }
        self.init(lane0: lanes.0, lane1: lanes.1)
    }

    /// The hash of one record.
    public static func record(id: String, value: JSONValue) -> DocChecksum {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        appendCanonical(id: id, value: value, to: &bytes)
        return hash(bytes)
    }

    /// The checksum of a whole set of records (a load, a snapshot): O(size of the doc).
    public static func of(_ records: [String: JSONValue]) -> DocChecksum {
        var sum = DocChecksum.zero
        var bytes: [UInt8] = []
        for (id, value) in records {
            bytes.removeAll(keepingCapacity: true)
            appendCanonical(id: id, value: value, to: &bytes)
            sum += hash(bytes)
        }
        return sum
    }

    // MARK: Canonical JSON

    /// The canonical JSON of `[id, value]`, exactly as `JSON.stringify([id, value])` writes it in
    /// JavaScript once object keys are sorted (by UTF-16 code units, as `Array.prototype.sort` does)
    /// and numbers are read as IEEE doubles: a client that parsed the record with `JSON.parse` writes the
    /// same bytes. Numbers are written as ECMAScript's `Number.prototype.toString` does (shortest
    /// round-trip digits: `1.0` → `1`, `1e2` → `100`, `-0` → `0`, `1e21` → `1e+21`), numbers too large
    /// for a double as `null` (what `JSON.stringify(Infinity)` writes).
    public static func canonicalBytes(id: String, value: JSONValue) -> [UInt8] {
        var bytes: [UInt8] = []
        appendCanonical(id: id, value: value, to: &bytes)
        return bytes
    }

    static func appendCanonical(id: String, value: JSONValue, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        appendString(id, to: &out)
        out.append(UInt8(ascii: ","))
        append(value, to: &out)
        out.append(UInt8(ascii: "]"))
    }

    static func append(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let lexeme): appendNumber(lexeme, to: &out)
        case .string(let s): appendString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                append(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted(by: utf16Precedes)
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                append(members[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// JavaScript's default sort order: UTF-16 code units. (For ASCII keys it is byte order.)
    static func utf16Precedes(_ a: String, _ b: String) -> Bool {
        if a.utf8.allSatisfy({ $0 < 0x80 }) && b.utf8.allSatisfy({ $0 < 0x80 }) {
            return a.utf8.lexicographicallyPrecedes(b.utf8)
        }
        return a.utf16.lexicographicallyPrecedes(b.utf16)
    }

    /// A JSON string as `JSON.stringify` writes it: `"` `\` and the controls escaped (`\b \t \n \f \r`,
    /// others `\u00xx` in lower case), everything else (U+2028 and U+2029 too) as it is.
    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
        for byte in s.utf8 {
            switch byte {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x00..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A number lexeme as ECMAScript's Number::toString writes the double it denotes.
    static func appendNumber(_ lexeme: String, to out: inout [UInt8]) {
        // Fast path: an integer of at most 15 digits is exact as a double and written as it is.
        let utf8 = lexeme.utf8
        let digits = utf8.first == UInt8(ascii: "-") ? utf8.dropFirst() : utf8[...]
        if !digits.isEmpty, digits.count <= 15, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            digits.first != 0x30 || digits.count == 1
        {
            if digits.count == 1 && digits.first == 0x30 {
                out.append(0x30)  // "-0" is "0"
            } else {
                out.append(contentsOf: utf8)
            }
            return
        }
        guard let double = Double(lexeme), double.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        out.append(contentsOf: ecmaScriptString(double).utf8)
    }

    /// ECMAScript Number::toString(x) for a finite double, from Swift's shortest round-trip digits.
    static func ecmaScriptString(_ x: Double) -> String {
        if x == 0 { return "0" }
        let negative = x < 0
        // Swift's description: "123.45", "0.001", "1e-07", "1.2345e+20" — shortest round-trip digits.
        let text = Swift.abs(x).description
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        var digits = ""
        var pointAt: Int? = nil
        for c in mantissa {
            if c == "." { pointAt = digits.count } else { digits.append(c) }
        }
        // value = 0.DIGITS × 10^n
        var n = (pointAt ?? digits.count) + exponent
        while digits.hasPrefix("0") && digits.count > 1 {
            digits.removeFirst()
            n -= 1
        }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        let k = digits.count
        var s: String
        if k <= n && n <= 21 {
            s = digits + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            let split = digits.index(digits.startIndex, offsetBy: n)
            s = String(digits[..<split]) + "." + String(digits[split...])
        } else if -6 < n && n <= 0 {
            s = "0." + String(repeating: "0", count: -n) + digits
        } else {
            let e = n - 1
            let sign = e < 0 ? "-" : "+"
            s = String(digits.first!)
            if k > 1 { s += "." + String(digits.dropFirst()) }
            s += "e" + sign + String(Swift.abs(e))
        }
        return negative ? "-" + s : s
    }

    // MARK: MurmurHash3 x86_32, both lanes in one pass

    static func hash(_ bytes: [UInt8]) -> DocChecksum {
        let c1: UInt32 = 0xcc9e_2d51
        let c2: UInt32 = 0x1b87_3593
        var h0 = seed0
        var h1 = seed1
        let count = bytes.count
        bytes.withUnsafeBufferPointer { p in
            var i = 0
            while i + 4 <= count {
                var k = UInt32(p[i]) | UInt32(p[i + 1]) << 8 | UInt32(p[i + 2]) << 16 | UInt32(p[i + 3]) << 24
                k = k &* c1
                k = (k << 15) | (k >> 17)
                k = k &* c2
                h0 ^= k
                h0 = (h0 << 13) | (h0 >> 19)
                h0 = h0 &* 5 &+ 0xe654_6b64
                h1 ^= k
                h1 = (h1 << 13) | (h1 >> 19)
                h1 = h1 &* 5 &+ 0xe654_6b64
                i += 4
            }
            var k: UInt32 = 0
            let rest = count & 3
            if rest >= 3 { k ^= UInt32(p[i + 2]) << 16 }
            if rest >= 2 { k ^= UInt32(p[i + 1]) << 8 }
            if rest >= 1 {
                k ^= UInt32(p[i])
                k = k &* c1
                k = (k << 15) | (k >> 17)
                k = k &* c2
                h0 ^= k
                h1 ^= k
            }
        }
        return DocChecksum(lane0: fmix(h0 ^ UInt32(truncatingIfNeeded: count)), lane1: fmix(h1 ^ UInt32(truncatingIfNeeded: count)))
    }

    private static func fmix(_ h: UInt32) -> UInt32 {
        var h = h
        h ^= h >> 16
        h = h &* 0x85eb_ca6b
        h ^= h >> 13
        h = h &* 0xc2b2_ae35
        h ^= h >> 16
        return h
    }
}
