/// Session ids: 22 characters of base64url from 128 random bits. Unguessable, because `?resume=` takes
/// over a session by id (the user must match as well).
public enum SessionID {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(22)
        for _ in 0..<22 { bytes.append(alphabet[Int(generator.next(upperBound: UInt8(64)))]) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether a client-supplied `resume` value can be a session id.
    public static func isValid(_ id: String) -> Bool {
        id.utf8.count == 22 && id.utf8.allSatisfy { alphabet.contains($0) }
    }
}
