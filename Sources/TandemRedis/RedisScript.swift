import NIOConcurrencyHelpers

/// A Lua script run with `EVALSHA`, falling back to `EVAL` when the server has not cached it yet
/// (see ``RedisClient/evalScript(_:keys:args:completion:)``).
///
/// A connection loads every script its client has run (`SCRIPT LOAD`) as soon as it connects, and a
/// script new to it just before its first call, so `EVALSHA` finds it after a restart or failover too.
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// Lowercase hex SHA-1 of `source`, the name Redis caches the script under.
    public let sha1: String
    /// A small number of its own per distinct source in this process (``ScriptRegistry``), so that a
    /// connection's owner thread tracks which scripts it loaded in an array instead of hashing digests.
    let id: Int

    /// Creates a script and computes its SHA-1 once.
    public init(_ source: String) {
        self.source = source
        self.sha1 = ScriptDigest.sha1Hex(Array(source.utf8))
        self.id = ScriptRegistry.id(forSHA1: sha1)
    }
}

extension RedisScript: CustomStringConvertible {
    /// Its digest and first line, not the whole source: scripts are kilobytes of Lua, and test names and
    /// logs that print one (a parameterized test's arguments) should stay readable.
    public var description: String {
        let firstLine = source.prefix { $0 != "\n" }.prefix(60)
        return "RedisScript(sha1: \(sha1.prefix(12)), \"\(firstLine)…\")"
    }
}

/// Numbers scripts by digest, process-wide: 0, 1, 2… in order of first creation. Taken once per
/// `RedisScript` made (scripts are made once, as static constants), never per call.
enum ScriptRegistry {
    private static let ids = NIOLockedValueBox<[String: Int]>([:])

    static func id(forSHA1 sha1: String) -> Int {
        ids.withLockedValue { ids in
            if let id = ids[sha1] { return id }
            let id = ids.count
            ids[sha1] = id
            return id
        }
    }
}
