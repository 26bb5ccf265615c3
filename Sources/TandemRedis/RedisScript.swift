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
        self.sha1 = ScriptDigest.sha1Hex(Array(source.utf8))
    }
}
