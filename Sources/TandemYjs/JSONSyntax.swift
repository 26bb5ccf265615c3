/// Checks that text is what JavaScript's `JSON.parse` accepts (ECMA-404 JSON with surrounding
/// whitespace), without building a value.
///
/// Yjs clients call `JSON.parse` on ContentJSON elements, ContentEmbed, ContentFormat values and
/// awareness states. A relay that stored or forwarded text that fails there would break every
/// client that receives it (a room whose merged state throws on load cannot be opened), so Tandem
/// refuses such text where it decodes it. Iterative, with an explicit depth limit: no recursion
/// for a hostile input to exhaust.
public enum JSONSyntax {
    /// `true` when `bytes` (valid UTF-8) is one JSON value nested at most `maxDepth` deep.
    public static func isValid<C: Collection>(_ bytes: C, maxDepth: Int) -> Bool
    where C.Element == UInt8, C.Index == Int {
        var scanner = Scanner(bytes: bytes)
        return scanner.document(maxDepth: maxDepth)
    }

    public static func isValid(_ text: String, maxDepth: Int) -> Bool {
        let bytes = Array(text.utf8)
        return isValid(bytes, maxDepth: maxDepth)
    }

    private struct Scanner<C: Collection> where C.Element == UInt8, C.Index == Int {
        let bytes: C
        var index: Int

        init(bytes: C) {
            self.bytes = bytes
            self.index = bytes.startIndex
        }

        var atEnd: Bool { self.index >= self.bytes.endIndex }
        var peek: UInt8? { self.atEnd ? nil : self.bytes[self.index] }

        mutating func skipWhitespace() {
            while let byte = self.peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
                self.index += 1
            }
        }

        mutating func document(maxDepth: Int) -> Bool {
            // Each open container on the stack: true for an object, false for an array.
            var stack: [Bool] = []
            self.skipWhitespace()
            while true {
                // Expect a value.
                guard let byte = self.peek else { return false }
                switch byte {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    let isObject = byte == UInt8(ascii: "{")
                    guard stack.count < maxDepth else { return false }
                    self.index += 1
                    self.skipWhitespace()
                    if self.peek == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        self.index += 1
                        break  // an empty container is a complete value
                    }
                    stack.append(isObject)
                    if isObject {
                        guard self.key() else { return false }
                    }
                    continue  // its first value
                case UInt8(ascii: "\""):
                    guard self.string() else { return false }
                case UInt8(ascii: "t"):
                    guard self.literal("true") else { return false }
                case UInt8(ascii: "f"):
                    guard self.literal("false") else { return false }
                case UInt8(ascii: "n"):
                    guard self.literal("null") else { return false }
                default:
                    guard self.number() else { return false }
                }
                // A value is complete: close containers or move to the next element.
                while true {
                    self.skipWhitespace()
                    guard let isObject = stack.last else {
                        return self.atEnd
                    }
                    guard let next = self.peek else { return false }
                    if next == UInt8(ascii: ",") {
                        self.index += 1
                        self.skipWhitespace()
                        if isObject {
                            guard self.key() else { return false }
                        }
                        break
                    }
                    guard next == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else { return false }
                    self.index += 1
                    stack.removeLast()
                }
            }
        }

        /// `"key"` `:` with the whitespace around them.
        mutating func key() -> Bool {
            guard self.peek == UInt8(ascii: "\""), self.string() else { return false }
            self.skipWhitespace()
            guard self.peek == UInt8(ascii: ":") else { return false }
            self.index += 1
            self.skipWhitespace()
            return true
        }

        mutating func literal(_ word: String) -> Bool {
            var index = self.index
            for expected in word.utf8 {
                guard index < self.bytes.endIndex, self.bytes[index] == expected else { return false }
                index += 1
            }
            self.index = index
            return true
        }

        mutating func string() -> Bool {
            self.index += 1  // opening quote
            while let byte = self.peek {
                self.index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return true
                case UInt8(ascii: "\\"):
                    guard let escape = self.peek else { return false }
                    self.index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                        UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        for _ in 0..<4 {
                            guard let hex = self.peek, Self.isHexDigit(hex) else { return false }
                            self.index += 1
                        }
                    default:
                        return false
                    }
                case 0x00..<0x20:
                    return false  // control characters must be escaped
                default:
                    continue
                }
            }
            return false
        }

        static func isHexDigit(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
        }

        mutating func digits() -> Int {
            var count = 0
            while let byte = self.peek, byte >= 0x30 && byte <= 0x39 {
                self.index += 1
                count += 1
            }
            return count
        }

        mutating func number() -> Bool {
            if self.peek == UInt8(ascii: "-") { self.index += 1 }
            if self.peek == UInt8(ascii: "0") {
                self.index += 1
            } else {
                guard let first = self.peek, first >= 0x31 && first <= 0x39 else { return false }
                _ = self.digits()
            }
            if self.peek == UInt8(ascii: ".") {
                self.index += 1
                guard self.digits() > 0 else { return false }
            }
            if self.peek == UInt8(ascii: "e") || self.peek == UInt8(ascii: "E") {
                self.index += 1
                if self.peek == UInt8(ascii: "+") || self.peek == UInt8(ascii: "-") { self.index += 1 }
                guard self.digits() > 0 else { return false }
            }
            return true
        }
    }
}
