/// `%XX` escapes, as in URLs (RFC 3986 §2.1): the Redis URL's user info and the ops server's paths.
public enum PercentDecoding {
    /// What to do with a `%` not followed by two hex digits.
    public enum MalformedEscape: Sendable {
        /// Refuse the whole text (`decode` returns nil): credentials must mean exactly what was written.
        case reject
        /// Keep the `%` and what follows as they are: a path is looked up, never trusted.
        case keepLiterally
    }

    /// The bytes of `text` with every `%XX` escape decoded; nil when `malformed` is `.reject` and an
    /// escape is malformed.
    public static func decode(_ text: some StringProtocol, malformed: MalformedEscape) -> [UInt8]? {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                if index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) {
                    out.append(high << 4 | low)
                    index += 3
                    continue
                }
                if malformed == .reject { return nil }
            }
            out.append(bytes[index])
            index += 1
        }
        return out
    }

    /// The value of one ASCII hex digit (`0`–`9`, `a`–`f`, `A`–`F`), or nil.
    public static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
