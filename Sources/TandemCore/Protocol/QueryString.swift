/// A request target split into its path and its query: `/v1/ws?a=b&c=d` → (`/v1/ws`, `["a": "b", "c":
/// "d"]`), percent-decoded, `+` as a space (as browsers encode forms). Used on the handshake of every
/// unauthenticated socket, so it works on bytes: splitting a `String` on `?`, `&` and `=` splits on
/// Characters, and a separator followed by a combining mark is not a separator then (found by
/// Fuzz/fuzz-query-string). A pair whose key or value does not decode to UTF-8 is skipped; a repeated key
/// keeps its last value.
public enum QueryString {
    public static func parse(uri: String) -> (path: String, query: [String: String]) {
        let bytes = Array(uri.utf8)
        guard let mark = bytes.firstIndex(of: UInt8(ascii: "?")) else { return (uri, [:]) }
        let path = String(decoding: bytes[..<mark], as: UTF8.self)
        var query: [String: String] = [:]
        for pair in bytes[(mark + 1)...].split(separator: UInt8(ascii: "&")) {
            let equals = pair.firstIndex(of: UInt8(ascii: "="))
            guard let key = decode(pair[..<(equals ?? pair.endIndex)]) else { continue }
            guard let equals else {
                query[key] = ""
                continue
            }
            guard let value = decode(pair[(equals + 1)...]) else { continue }
            query[key] = value
        }
        return (path, query)
    }

    /// Percent-decodes one key or value; nil when an escape is malformed or the result is not UTF-8.
    static func decode(_ part: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(part.count)
        var index = part.startIndex
        while index < part.endIndex {
            let byte = part[index]
            switch byte {
            case UInt8(ascii: "+"):
                out.append(UInt8(ascii: " "))
                index += 1
            case UInt8(ascii: "%"):
                guard index + 2 < part.endIndex,
                    let high = hexValue(part[index + 1]), let low = hexValue(part[index + 2])
                else { return nil }
                out.append(high << 4 | low)
                index += 3
            default:
                out.append(byte)
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
