import TandemSystem

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

    /// Percent-decodes one key or value (`+` is a space); nil when an escape is malformed or the result is
    /// not UTF-8.
    static func decode(_ part: ArraySlice<UInt8>) -> String? {
        let plus = part.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 }
        guard let bytes = PercentDecoding.decode(String(decoding: plus, as: UTF8.self), malformed: .reject) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }
}
