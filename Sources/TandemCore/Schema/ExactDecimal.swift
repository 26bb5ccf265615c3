/// A JSON number as an exact decimal, for comparisons that must not go through `Double`: JSON Schema
/// compares numbers by value (`1` equals `1.0`, `-2.0001` is below `-2`) and Tandem keeps every number's
/// lexeme, so `9007199254740993` and `9007199254740992` must differ even though they are the same
/// `Double`.
///
/// The value is `sign × 0.d₁d₂…dₙ × 10^exponent` with d₁ ≠ 0 and dₙ ≠ 0 (zero has no digits).
struct ExactDecimal: Comparable, Hashable, Sendable {
    private var negative: Bool
    /// Significant digits (ASCII), without leading or trailing zeros.
    private var digits: [UInt8]
    private var exponent: Int

    /// Nil for anything but an RFC 8259 number lexeme (the parser has already checked it), or an exponent
    /// that does not fit: such a number is treated as not comparable and fails numeric keywords.
    init?(lexeme: String) {
        var bytes = Array(lexeme.utf8)[...]
        negative = bytes.first == UInt8(ascii: "-")
        if negative { bytes = bytes.dropFirst() }
        var integer: [UInt8] = []
        var fraction: [UInt8] = []
        while let byte = bytes.first, Self.isDigit(byte) {
            integer.append(byte)
            bytes = bytes.dropFirst()
        }
        guard !integer.isEmpty else { return nil }
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            while let byte = bytes.first, Self.isDigit(byte) {
                fraction.append(byte)
                bytes = bytes.dropFirst()
            }
            guard !fraction.isEmpty else { return nil }
        }
        var written = 0
        if let e = bytes.first, e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            var exponentNegative = false
            if let sign = bytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                exponentNegative = sign == UInt8(ascii: "-")
                bytes = bytes.dropFirst()
            }
            guard !bytes.isEmpty, bytes.count <= 9, bytes.allSatisfy(Self.isDigit) else { return nil }
            written = bytes.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            if exponentNegative { written = -written }
            bytes = bytes.dropFirst(bytes.count)
        }
        guard bytes.isEmpty else { return nil }
        // value = 0.(integer fraction) × 10^(integer.count + written)
        var all = integer + fraction
        var exponent = integer.count + written
        while all.first == UInt8(ascii: "0") {
            all.removeFirst()
            exponent -= 1
        }
        while all.last == UInt8(ascii: "0") { all.removeLast() }
        if all.isEmpty {
            negative = false
            exponent = 0
        }
        self.digits = all
        self.exponent = exponent
    }

    var isZero: Bool { digits.isEmpty }

    /// No fractional part (`1.0` and `1e2` are integers, JSON Schema's `integer`).
    var isInteger: Bool { isZero || exponent >= digits.count }

    static func < (lhs: ExactDecimal, rhs: ExactDecimal) -> Bool {
        if lhs.negative != rhs.negative { return lhs.negative }
        // Same sign: compare magnitudes, reversed for negatives.
        let smaller = magnitudeLess(lhs, rhs)
        let larger = magnitudeLess(rhs, lhs)
        return lhs.negative ? larger : smaller
    }

    private static func magnitudeLess(_ a: ExactDecimal, _ b: ExactDecimal) -> Bool {
        if a.isZero || b.isZero { return a.isZero && !b.isZero }
        if a.exponent != b.exponent { return a.exponent < b.exponent }
        return a.digits.lexicographicallyPrecedes(b.digits)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}

extension JSONValue {
    /// Equality as JSON Schema's `const` and `enum` define it: numbers by value (`1` equals `1.0`), objects
    /// regardless of key order, `true` never equal to `1`.
    func schemaEquals(_ other: JSONValue) -> Bool {
        switch (self, other) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a), .number(let b)):
            if a == b { return true }
            guard let x = ExactDecimal(lexeme: a), let y = ExactDecimal(lexeme: b) else { return false }
            return x == y
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.schemaEquals($1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { key, value in b[key].map { value.schemaEquals($0) } ?? false }
        default: return false
        }
    }
}
