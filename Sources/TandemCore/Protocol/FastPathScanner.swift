/// The byte-level primitives the parser-free fast paths share (`PushFastPath`, `PresenceFastPath`,
/// `NodeMessageFastPath`).
///
/// Each fast path accepts only compact, escape-free, printable-ASCII messages and returns nil for anything
/// else, so the parser decides (and words the error). What is accepted here must therefore mean exactly
/// what `JSONParser` makes of it: a string is printable ASCII without a backslash (the parser decodes it to
/// the same bytes), a number is an RFC 8259 number as `JSONParser.parseNumber` accepts it. Each fast path
/// adds its own message shape in a private extension, over the same `index`.
///
/// A plain struct over the caller's buffer: no allocation, and every method is small enough for the
/// optimizer to inline into the fast paths (same module). When the fast paths' two private copies of
/// these became this one type, a release build still took the same instructions per decode under
/// callgrind: 3,053 per push, 2,392 per presence update (`ClientMessage.decode` of a typical message).
struct FastPathScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    /// `ProtocolLimits.maxJSONDepth`: the fast paths bound nesting as `JSONParser` does.
    let maxDepth: Int
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// Whether the bytes in `range` are those of `literal`.
    func equals(_ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let start = literal.utf8Start
        for i in 0..<range.count where bytes[range.lowerBound + i] != start[i] { return false }
        return true
    }

    /// The bytes in `range`, as a buffer over the caller's (no copy).
    func slice(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: bytes[range])
    }

    /// Moves past `byte` if it is next.
    mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// Moves past `text` (`true`, `false`, `null`) if it is next.
    mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for i in 0..<count where bytes[index + i] != text.utf8Start[i] { return false }
        index += count
        return true
    }

    /// A string of printable ASCII without escapes (what the parser decodes to the same bytes, and
    /// `JSONWriter` writes back byte for byte); the range of its contents.
    mutating func asciiString() -> Range<Int>? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<(index - 1)
            }
            guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// An RFC 8259 number, as `JSONParser.parseNumber` accepts it (the parser keeps its lexeme).
    mutating func number() -> Bool {
        _ = consume(UInt8(ascii: "-"))
        guard index < bytes.count else { return false }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits() == 0 {
            return false
        }
        if consume(UInt8(ascii: ".")), digits() == 0 { return false }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            if !consume(UInt8(ascii: "+")) { _ = consume(UInt8(ascii: "-")) }
            if digits() == 0 { return false }
        }
        return true
    }

    /// Moves past ASCII digits; how many there were.
    mutating func digits() -> Int {
        let start = index
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
        return index - start
    }

    /// A compact object with keys in strictly increasing byte order (ASCII keys: the order
    /// `JSONWriter` sorts them in; strictly, so no duplicates) and canonical values: the bytes
    /// `JSONValue.serialized` writes for it, which `PresenceState` keeps (a client's state in
    /// `PresenceFastPath`, another node's entry state in `NodeMessageFastPath`).
    mutating func canonicalObject(depth: Int) -> Bool {
        guard depth <= maxDepth, consume(UInt8(ascii: "{")) else { return false }
        if consume(UInt8(ascii: "}")) { return true }
        var previous: Range<Int>?
        repeat {
            guard let key = asciiString() else { return false }
            if let previous {
                guard slice(previous).lexicographicallyPrecedes(slice(key)) else { return false }
            }
            previous = key
            guard consume(UInt8(ascii: ":")), canonicalValue(depth: depth) else { return false }
        } while consume(UInt8(ascii: ","))
        return consume(UInt8(ascii: "}"))
    }

    mutating func canonicalArray(depth: Int) -> Bool {
        guard depth <= maxDepth, consume(UInt8(ascii: "[")) else { return false }
        if consume(UInt8(ascii: "]")) { return true }
        repeat {
            guard canonicalValue(depth: depth) else { return false }
        } while consume(UInt8(ascii: ","))
        return consume(UInt8(ascii: "]"))
    }

    /// A value inside a container at `depth` (a nested container is at `depth + 1`). Any valid number is
    /// canonical: the parser keeps its lexeme.
    mutating func canonicalValue(depth: Int) -> Bool {
        guard index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "{"): return canonicalObject(depth: depth + 1)
        case UInt8(ascii: "["): return canonicalArray(depth: depth + 1)
        case UInt8(ascii: "\""): return asciiString() != nil
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        default: return false
        }
    }
}
