#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Allocation-free reading of the few fields the bench needs from the server's compact JSON.
///
/// The server writes every message with a fixed key order (`ServerMessage`) and every presence ENTRY and
/// state object with sorted keys (`JSONValue.serialized`), so a field can be found by searching for its
/// `"key":` bytes. This is only valid for messages whose embedded user content the bench controls (its
/// own names, states and record values never contain the searched patterns).
struct ByteScanner {
    let base: UnsafeRawBufferPointer
    var index: Int

    init(_ base: UnsafeRawBufferPointer, from index: Int = 0) {
        self.base = base
        self.index = index
    }

    var count: Int { base.count }
    var atEnd: Bool { index >= base.count }

    /// Moves just past the next occurrence of `pattern` at or after `index`; false (index unchanged) if none.
    mutating func skip(past pattern: StaticPattern) -> Bool {
        guard let at = find(pattern, from: index) else { return false }
        index = at + pattern.count
        return true
    }

    /// Offset of the next occurrence of `pattern` at or after `from`, limited to `end` (exclusive).
    /// memchr for the pattern's anchor byte (a rare one), then a compare.
    func find(_ pattern: StaticPattern, from: Int, end: Int? = nil) -> Int? {
        let limit = Swift.min(end ?? base.count, base.count)
        guard from >= 0, from + pattern.count <= limit, let start = base.baseAddress else { return nil }
        let anchor = pattern.anchor
        let anchorByte = Int32(pattern.bytes[anchor])
        return pattern.bytes.withUnsafeBytes { p -> Int? in
            // Candidate starts are in [from, limit - count]; their anchor bytes in [from + anchor, limit - count + anchor].
            var searchFrom = from + anchor
            let searchEnd = limit - pattern.count + anchor + 1
            while searchFrom < searchEnd {
                guard let hit = memchr(start + searchFrom, anchorByte, searchEnd - searchFrom) else { return nil }
                let at = start.distance(to: UnsafeRawPointer(hit)) - anchor
                if memcmp(start + at, p.baseAddress!, pattern.count) == 0 { return at }
                searchFrom = at + anchor + 1
            }
            return nil
        }
    }

    /// True if the bytes at `index` are `pattern` (and moves past them).
    mutating func consume(_ pattern: StaticPattern) -> Bool {
        guard index + pattern.count <= base.count else { return false }
        for i in 0..<pattern.count where base[index + i] != pattern.bytes[i] { return false }
        index += pattern.count
        return true
    }

    func hasPrefix(_ pattern: StaticPattern) -> Bool {
        guard pattern.count <= base.count else { return false }
        for i in 0..<pattern.count where base[i] != pattern.bytes[i] { return false }
        return true
    }

    /// A non-negative decimal integer at `index` (moves past it).
    mutating func readUInt() -> UInt64? {
        var value: UInt64 = 0
        let start = index
        while index < base.count {
            let b = base[index]
            guard b >= 0x30 && b <= 0x39 else { break }
            value = value &* 10 &+ UInt64(b - 0x30)
            index += 1
        }
        return index > start ? value : nil
    }

    /// The contents of a JSON string without escapes, `index` at the character after the opening quote
    /// (moves past the closing quote).
    mutating func readSimpleString() -> String? {
        let start = index
        while index < base.count && base[index] != 0x22 {
            if base[index] == 0x5C { return nil }  // escapes: not produced for the bench's own values
            index += 1
        }
        guard index < base.count else { return nil }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: base[start..<index]), as: UTF8.self)
        index += 1
        return s
    }

    /// Finds `"key":` after `index` (before `end`) and reads the unsigned integer after it.
    mutating func uint(after pattern: StaticPattern, end: Int? = nil) -> UInt64? {
        guard let at = find(pattern, from: index, end: end) else { return nil }
        index = at + pattern.count
        return readUInt()
    }

    /// Finds `"key":"` after `index` and reads the string after it.
    mutating func string(after pattern: StaticPattern, end: Int? = nil) -> String? {
        guard let at = find(pattern, from: index, end: end) else { return nil }
        index = at + pattern.count
        return readSimpleString()
    }
}

/// A byte pattern made once (from a literal) and searched many times.
struct StaticPattern: Sendable {
    let bytes: [UInt8]
    /// Index of the byte memchr looks for: a bracket if there is one, else the first letter other than
    /// the pattern's opening quote — quotes, colons and commas are everywhere in JSON.
    let anchor: Int
    var count: Int { bytes.count }

    init(_ text: String) {
        let bytes = Array(text.utf8)
        precondition(!bytes.isEmpty)
        self.bytes = bytes
        if let bracket = bytes.firstIndex(where: { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "[") }) {
            anchor = bracket
        } else if let letter = bytes.indices.dropFirst().first(where: { (bytes[$0] | 0x20) >= 0x61 && (bytes[$0] | 0x20) <= 0x7A }) {
            anchor = letter
        } else {
            anchor = 0
        }
    }
}

/// The message type: the bytes between `{"t":"` and the next quote (the server always writes `t` first).
enum MessageType: Sendable {
    case welcome, joined, presence, snapshot, log, result, patch, error, left, pong, other

    static func of(_ scanner: ByteScanner) -> MessageType {
        let b = scanner.base
        // {"t":"X  -> X is at offset 6
        guard b.count > 8, b[0] == 0x7B, b[1] == 0x22, b[2] == 0x74, b[3] == 0x22, b[5] == 0x22 else { return .other }
        switch (b[6], b[7]) {
        case (UInt8(ascii: "w"), _): return .welcome
        case (UInt8(ascii: "j"), _): return .joined
        case (UInt8(ascii: "p"), UInt8(ascii: "r")): return .presence
        case (UInt8(ascii: "p"), UInt8(ascii: "a")): return .patch
        case (UInt8(ascii: "p"), UInt8(ascii: "o")): return .pong
        case (UInt8(ascii: "s"), _): return .snapshot
        case (UInt8(ascii: "l"), UInt8(ascii: "o")): return .log
        case (UInt8(ascii: "l"), UInt8(ascii: "e")): return .left
        case (UInt8(ascii: "r"), _): return .result
        case (UInt8(ascii: "e"), _): return .error
        default: return .other
        }
    }
}

enum Patterns {
    static let code = StaticPattern(#""code":""#)
    static let session = StaticPattern(#""session":""#)
    static let resumedTrue = StaticPattern(#""resumed":true"#)
    static let clock = StaticPattern(#""clock":"#)
    static let id = StaticPattern(#""id":"#)
    static let action = StaticPattern(#""action":""#)
    static let moreFalse = StaticPattern(#""more":false"#)
    static let head = StaticPattern(#""head":"#)
    static let sid = StaticPattern(#""sid":""#)
    static let leftList = StaticPattern(#""left":["#)
    static let presenceList = StaticPattern(#""presence":["#)
    static let stateB = StaticPattern(#""state":{"b":"#)
    static let commaN = StaticPattern(#","n":"#)
    static let commaTs = StaticPattern(#","ts":"#)
}
