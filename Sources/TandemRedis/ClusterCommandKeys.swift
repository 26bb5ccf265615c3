/// Where a command goes in a cluster, decided from its keys.
enum ClusterRoute: Sendable, Equatable {
    /// The command touches no key (`PING`, `INFO`, `SCRIPT LOAD`, `EVAL … 0`): any primary can run it.
    case anyNode
    /// Every key is in this slot.
    case slot(Int)
    /// The keys span several slots; a cluster refuses that with `CROSSSLOT`, so the client refuses it
    /// first with ``RedisError/crossSlot``.
    case crossSlot
}

/// Finds the keys of a command for routing (pure; what `COMMAND GETKEYS` would say for the commands
/// listed here).
///
/// A command not in the table is routed by its first argument. That is right for the single-key
/// commands that make up most of Redis, and harmless otherwise: a cluster node answers a misrouted
/// command with `MOVED` (followed) or `CROSSSLOT` (reported), never by running it in the wrong place.
enum ClusterCommandKeys {
    /// Where a command's keys sit among its arguments (index 0 is the command name).
    enum Positions: Equatable {
        /// No keys.
        case none
        /// Argument 1 only.
        case first
        /// The first `count` arguments after the name.
        case firstN(Int)
        /// Arguments from index 1 up to (not including) the last `trailing`, every `step`-th one.
        case range(trailing: Int, step: Int)
        /// A key count at `index`, the keys right after it (`EVAL script numkeys k1 k2 …`).
        case numKeys(at: Int)
        /// A destination key at 1, then a key count and the keys (`ZUNIONSTORE dest 2 a b`).
        case destinationAndNumKeys
        /// The first half of what follows the `STREAMS` keyword (`XREAD COUNT 1 STREAMS a b 0 0`).
        case streams
    }

    /// The route of one command.
    static func route(of command: RedisCommand) -> ClusterRoute {
        var slot: Int?
        for index in keyIndices(of: command) {
            let keySlot = ClusterSlot.slot(forKey: command.argument(at: index))
            if let slot, slot != keySlot { return .crossSlot }
            slot = keySlot
        }
        return slot.map(ClusterRoute.slot) ?? .anyNode
    }

    /// The route of a batch: one slot for all keyed commands (keyless ones ride along), or
    /// `crossSlot`.
    static func route(of commands: [RedisCommand]) -> ClusterRoute {
        var combined = ClusterRoute.anyNode
        for command in commands {
            switch (combined, route(of: command)) {
            case (_, .crossSlot): return .crossSlot
            case (_, .anyNode): continue
            case (.anyNode, .slot(let slot)): combined = .slot(slot)
            case (.slot(let a), .slot(let b)) where a != b: return .crossSlot
            default: continue
            }
        }
        return combined
    }

    /// The route of a script call with these keys (`EVALSHA`/`EVAL`).
    static func route(ofKeys keys: [any RedisArgument]) -> ClusterRoute {
        var slot: Int?
        var bytes: [UInt8] = []
        for key in keys {
            bytes.removeAll(keepingCapacity: true)
            key.appendRedisArgument(to: &bytes)
            let keySlot = ClusterSlot.slot(forKey: bytes)
            if let slot, slot != keySlot { return .crossSlot }
            slot = keySlot
        }
        return slot.map(ClusterRoute.slot) ?? .anyNode
    }

    /// The argument indices holding keys, in order; empty for keyless commands and for malformed key
    /// counts (the server then answers with its own error).
    static func keyIndices(of command: RedisCommand) -> [Int] {
        let count = command.count
        guard count > 1 else { return [] }
        switch positions(ofCommandNamed: uppercasedName(of: command)) {
        case .none:
            return []
        case .first:
            return [1]
        case .firstN(let n):
            return Array(1..<min(count, 1 + n))
        case .range(let trailing, let step):
            let end = count - trailing
            return end > 1 ? Array(stride(from: 1, to: end, by: step)) : []
        case .numKeys(let index):
            guard index < count, let n = integer(command.argument(at: index)), n >= 0, index + 1 + n <= count else {
                return []
            }
            return Array((index + 1)..<(index + 1 + n))
        case .destinationAndNumKeys:
            guard count > 2, let n = integer(command.argument(at: 2)), n >= 0, 3 + n <= count else { return [1] }
            return [1] + Array(3..<(3 + n))
        case .streams:
            for index in 1..<count where uppercased(command.argument(at: index)) == "STREAMS" {
                let rest = count - index - 1
                guard rest > 0, rest % 2 == 0 else { return [] }
                return Array((index + 1)..<(index + 1 + rest / 2))
            }
            return []
        }
    }

    static func positions(ofCommandNamed name: String) -> Positions {
        table[name] ?? .first
    }

    private static func uppercasedName(of command: RedisCommand) -> String {
        uppercased(command.argument(at: 0))
    }

    private static func uppercased(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.map { $0 >= 0x61 && $0 <= 0x7a ? $0 - 0x20 : $0 }, as: UTF8.self)
    }

    private static func integer(_ bytes: ArraySlice<UInt8>) -> Int? {
        Int(String(decoding: bytes, as: UTF8.self))
    }

    /// Commands whose keys are not just argument 1 (Redis 7.0 key specifications).
    private static let table: [String: Positions] = {
        var table: [String: Positions] = [:]
        for name in [
            "PING", "ECHO", "INFO", "TIME", "DBSIZE", "LASTSAVE", "SCRIPT", "CLUSTER", "COMMAND", "CONFIG",
            "CLIENT", "FUNCTION", "SLOWLOG", "LATENCY", "MEMORY", "PUBLISH", "PUBSUB", "RANDOMKEY", "READONLY",
            "READWRITE", "ASKING", "ROLE", "SELECT", "AUTH", "HELLO", "QUIT", "WAIT", "FLUSHALL", "FLUSHDB",
            "SAVE", "BGSAVE", "BGREWRITEAOF", "DEBUG", "SWAPDB", "KEYS", "SCAN", "MULTI", "EXEC", "DISCARD",
            "UNWATCH", "RESET", "MONITOR", "SHUTDOWN", "ACL", "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE",
            "PUNSUBSCRIBE", "FAILOVER", "REPLICAOF", "SLAVEOF", "MODULE", "LOLWUT",
        ] {
            table[name] = Positions.none
        }
        for name in [
            "DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "WATCH", "SINTER", "SUNION", "SDIFF", "SINTERSTORE",
            "SUNIONSTORE", "SDIFFSTORE", "PFCOUNT", "PFMERGE", "RENAME", "RENAMENX", "RPOPLPUSH",
            "SSUBSCRIBE", "SUNSUBSCRIBE",
        ] {
            table[name] = .range(trailing: 0, step: 1)
        }
        for name in ["BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "SMOVE", "BRPOPLPUSH"] {
            table[name] = .range(trailing: 1, step: 1)
        }
        for name in ["LMOVE", "BLMOVE", "COPY", "GEOSEARCHSTORE", "GEORADIUS_STORE"] {
            table[name] = .firstN(2)
        }
        table["MSET"] = .range(trailing: 0, step: 2)
        table["MSETNX"] = .range(trailing: 0, step: 2)
        for name in ["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO", "BLMPOP", "BZMPOP"] {
            table[name] = .numKeys(at: 2)
        }
        for name in ["SINTERCARD", "ZDIFF", "ZINTER", "ZUNION", "ZINTERCARD", "LMPOP", "ZMPOP"] {
            table[name] = .numKeys(at: 1)
        }
        for name in ["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"] {
            table[name] = .destinationAndNumKeys
        }
        table["XREAD"] = .streams
        table["XREADGROUP"] = .streams
        return table
    }()
}
