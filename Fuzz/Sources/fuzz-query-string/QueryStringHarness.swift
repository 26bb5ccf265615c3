import FuzzSupport
import TandemCore

// The handshake's request-target parser, `QueryString.parse(uri:)` (WebSocketServer: path check,
// `?user=`, `?name=`, `?token=`, `?resume=`), on any string an unauthenticated client can send.
//
// Invariants:
// - nothing traps;
// - the path is everything before the first `?` byte (compared as UTF-8: as Characters, a `?` after a
//   prepended concatenation mark such as U+0603 is part of the mark's grapheme, so `hasPrefix` and
//   `contains` on String would see neither the separator nor the prefix — the parser splits bytes);
// - re-encoding the parsed query (percent-encoding every byte but unreserved ones) and parsing it again
//   gives the same pairs.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQueryString(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let uri = String(decoding: UnsafeBufferPointer(start: data, count: data == nil ? 0 : size), as: UTF8.self)
    let (path, query) = QueryString.parse(uri: uri)
    require(!path.utf8.contains(UInt8(ascii: "?")), "path \(path) holds a '?'")
    require(uri.utf8.starts(with: path.utf8), "path \(path) is not the start of the URI")
    let encoded = "/v1/ws?" + query.map { "\(percentEncoded($0.key))=\(percentEncoded($0.value))" }.joined(separator: "&")
    let (_, again) = QueryString.parse(uri: encoded)
    require(again == query, "query does not survive re-encoding: \(query) → \(again)")
    return 0
}

private func percentEncoded(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }
    }
    return out
}
