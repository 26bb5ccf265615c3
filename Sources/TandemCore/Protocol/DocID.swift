/// Document ids: 1–128 characters of `[A-Za-z0-9._:-]` (protocol v1).
///
/// The character set keeps ids safe inside Redis keys (`tandem:{D}:…` — no `{`/`}` that would break the
/// cluster hash tag), URLs and log lines without escaping.
public enum DocID {
    public static let maxLength = 128

    public static func isValid(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard !utf8.isEmpty, utf8.count <= maxLength else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}
