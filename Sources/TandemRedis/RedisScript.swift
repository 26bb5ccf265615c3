import Crypto

/// A Lua script run with `EVALSHA`, falling back to `EVAL` when the server has not cached it yet
/// (see ``RedisClient/evalScript(_:keys:args:completion:)``).
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// Lowercase hex SHA-1 of `source`, the name Redis caches the script under.
    public let sha1: String

    /// Creates a script and computes its SHA-1 once.
    public init(_ source: String) {
        self.source = source
        let digest = Insecure.SHA1.hash(data: Array(source.utf8))
        let hexDigits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(40)
        for byte in digest {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0f)])
        }
        self.sha1 = String(decoding: hex, as: UTF8.self)
    }
}
