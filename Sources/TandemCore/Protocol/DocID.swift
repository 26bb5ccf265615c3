/// Document ids: 1–128 characters of `[A-Za-z0-9._:-]` (protocol v1).
///
/// The character set keeps ids safe inside Redis keys (`tandem:{D}:…` — no `{`/`}` that would break the
/// cluster hash tag), URLs and log lines without escaping.
public enum DocID {
    public static let maxLength = 128

    public static func isValid(_ id: String) -> Bool {
        id.utf8.withContiguousStorageIfAvailable { isValid(utf8: $0) } ?? isValid(utf8: Array(id.utf8))
    }

    /// The same check on an id's UTF-8 bytes, before any `String` is made of them (the presence fast path
    /// checks a message's doc id in its frame: the generic `allSatisfy` over a string's UTF-8 view cost
    /// more than the rest of the message's doc handling, issue 14).
    public static func isValid(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !bytes.isEmpty, bytes.count <= maxLength else { return false }
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                continue
            default:
                return false
            }
        }
        return true
    }

    public static func isValid(utf8 bytes: [UInt8]) -> Bool { bytes.withUnsafeBufferPointer { isValid(utf8: $0) } }
}
