@testable import TandemRedis
import Testing

@Suite("Cluster routing: slots, hash tags, command keys")
struct ClusterRoutingTests {
    @Test func crc16IsTheXmodemVariantTheSpecificationNames() {
        #expect(ClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(ClusterSlot.crc16([UInt8]()) == 0)
    }

    @Test func slotsMatchWhatRedisComputes() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0 (the cluster suite checks many more live).
        #expect(ClusterSlot.slot(forKey: "foo") == 12182)
        #expect(ClusterSlot.slot(forKey: "a") == 15495)
        #expect(ClusterSlot.slot(forKey: "b") == 3300)
        #expect(ClusterSlot.slot(forKey: "tandem:{doc1}") == 7282)
        #expect(ClusterSlot.slot(forKey: "") == 0)
    }

    @Test func hashTagsFollowTheSpecification() {
        let user = ClusterSlot.slot(forKey: "user1000")
        #expect(ClusterSlot.slot(forKey: "{user1000}.following") == user)
        #expect(ClusterSlot.slot(forKey: "{user1000}.followers") == user)
        #expect(ClusterSlot.slot(forKey: "tandem:{doc1}:clock") == ClusterSlot.slot(forKey: "tandem:{doc1}"))
        // Only the first { and the first } after it count; an empty tag hashes the whole key.
        #expect(ClusterSlot.slot(forKey: "foo{bar}{zap}") == ClusterSlot.slot(forKey: "bar"))
        #expect(ClusterSlot.slot(forKey: "foo{{bar}}zap") == ClusterSlot.slot(forKey: "{bar"))
        #expect(ClusterSlot.hashTag(of: Array("foo{}{bar}".utf8)) == 0..<10)
        #expect(ClusterSlot.hashTag(of: Array("x{".utf8)) == 0..<2)
        #expect(ClusterSlot.hashTag(of: Array("}{a}".utf8)) == 2..<3)
        // Binary keys, and slices that do not start at index 0.
        let bytes: [UInt8] = [0xff, 0x7b, 0x00, 0x7d]
        #expect(ClusterSlot.slot(forKey: bytes) == ClusterSlot.slot(forKey: [UInt8(0)]))
        #expect(ClusterSlot.slot(forKey: Array("xx{user1000}".utf8)[2...]) == user)
    }

    @Test func keysOfCommonCommands() {
        func keys(_ arguments: [any RedisArgument]) -> [Int] { ClusterCommandKeys.keyIndices(of: RedisCommand(arguments)) }
        #expect(keys(["GET", "k"]) == [1])
        #expect(keys(["hset", "k", "f", "v"]) == [1])
        #expect(keys(["PING"]) == [])
        #expect(keys(["INFO", "memory"]) == [])
        #expect(keys(["MGET", "a", "b", "c"]) == [1, 2, 3])
        #expect(keys(["MSET", "a", "1", "b", "2"]) == [1, 3])
        #expect(keys(["BLPOP", "a", "b", "0"]) == [1, 2])
        #expect(keys(["LMOVE", "a", "b", "LEFT", "RIGHT"]) == [1, 2])
        #expect(keys(["EVALSHA", "abc", 2, "k1", "k2", "arg"]) == [3, 4])
        #expect(keys(["EVAL", "return 1", 0, "arg"]) == [])
        #expect(keys(["EVAL", "return 1", 5, "k"]) == [])  // malformed: the server answers
        #expect(keys(["EVAL", "return 1", "x", "k"]) == [])
        #expect(keys(["ZUNIONSTORE", "d", 2, "a", "b", "WEIGHTS", 1, 2]) == [1, 3, 4])
        #expect(keys(["XREAD", "COUNT", 1, "STREAMS", "a", "b", "0", "0"]) == [4, 5])
        #expect(keys(["XREADGROUP", "GROUP", "g", "c", "streams", "s", ">"]) == [5])
        #expect(keys(["SPUBLISH", "tandem:{d}", "m"]) == [1])
        #expect(keys(["PUBLISH", "tandem:{d}", "m"]) == [])
    }

    @Test func routesAreOneSlotOrRefused() {
        #expect(ClusterCommandKeys.route(of: RedisCommand("GET", "foo")) == .slot(12182))
        #expect(ClusterCommandKeys.route(of: RedisCommand("MGET", "{t}a", "{t}b")) == .slot(ClusterSlot.slot(forKey: "t")))
        #expect(ClusterCommandKeys.route(of: RedisCommand("MGET", "a", "b")) == .crossSlot)
        #expect(ClusterCommandKeys.route(of: RedisCommand("PING")) == .anyNode)
        // A script's arguments are not keys.
        #expect(ClusterCommandKeys.route(of: RedisCommand("EVALSHA", "x", 1, "a", "b")) == .slot(15495))
        #expect(ClusterCommandKeys.route(ofKeys: ["tandem:{d}:clock", "tandem:{d}:log"]) == .slot(ClusterSlot.slot(forKey: "d")))
        #expect(ClusterCommandKeys.route(ofKeys: ["a", "b"]) == .crossSlot)
        #expect(ClusterCommandKeys.route(ofKeys: []) == .anyNode)
        // Batches: keyless commands ride along; two slots are refused.
        let same = [RedisCommand("PING"), RedisCommand("GET", "{d}1"), RedisCommand("SET", "{d}2", "v")]
        #expect(ClusterCommandKeys.route(of: same) == .slot(ClusterSlot.slot(forKey: "d")))
        #expect(ClusterCommandKeys.route(of: [RedisCommand("GET", "a"), RedisCommand("GET", "b")]) == .crossSlot)
        #expect(ClusterCommandKeys.route(of: [RedisCommand("INFO"), RedisCommand("TIME")]) == .anyNode)
        #expect(ClusterCommandKeys.route(of: [RedisCommand("GET", "a"), RedisCommand("MGET", "a", "b")]) == .crossSlot)
    }
}

@Suite("Cluster topology: CLUSTER SHARDS / CLUSTER SLOTS parsing")
struct ClusterTopologyTests {
    static func text(_ value: String) -> RedisValue { .bulkString(Array(value.utf8)) }

    static func node(id: String, port: Int, ip: String = "127.0.0.1", endpoint: String? = nil, role: String, health: String = "online")
        -> RedisValue
    {
        .array([
            text("id"), text(id), text("port"), .integer(Int64(port)), text("ip"), text(ip),
            text("endpoint"), text(endpoint ?? ip), text("role"), text(role), text("replication-offset"), .integer(42),
            text("health"), text(health),
        ])
    }

    static func shard(_ slots: [Int], _ nodes: [RedisValue]) -> RedisValue {
        .array([text("slots"), .array(slots.map { .integer(Int64($0)) }), text("nodes"), .array(nodes)])
    }

    @Test func parsesClusterShardsAsRedis7SendsIt() throws {
        // Shaped like a real reply after a failover: the failed old primary is listed without slots.
        let reply = RedisValue.array([
            Self.shard([10923, 16383], [Self.node(id: "c", port: 7003, role: "master"), Self.node(id: "f", port: 7006, role: "replica")]),
            Self.shard([], [Self.node(id: "a", port: 7001, role: "master", health: "fail")]),
            Self.shard([0, 5460], [Self.node(id: "d", port: 7004, role: "master")]),
            Self.shard(
                [5461, 10921, 10922, 10922],
                [Self.node(id: "b", port: 7002, ip: "10.0.0.2", endpoint: "?", role: "master"),
                 Self.node(id: "e", port: 7005, ip: "", endpoint: "", role: "replica", health: "loading")]),
        ])
        let topology = try ClusterTopology.parseShards(reply, defaultHost: "seed.local")
        #expect(topology.shards.count == 3)
        #expect(topology.shards.map(\.primary.id) == ["d", "b", "c"])  // sorted by first slot
        #expect(topology.primary(forSlot: 0) == ClusterNodeAddress(host: "127.0.0.1", port: 7004))
        #expect(topology.primary(forSlot: 10922) == ClusterNodeAddress(host: "10.0.0.2", port: 7002))  // endpoint "?" → ip
        #expect(topology.primary(forSlot: 16383)?.port == 7003)
        #expect(topology.primary(forSlot: 16384) == nil)
        #expect(topology.shards[1].replicas.map(\.address.host) == ["seed.local"])  // no address → the seed's host
        #expect(topology.coversAllSlots)
        #expect(topology.isHealthy)
        #expect(topology.primaries.map(\.description) == ["10.0.0.2:7002", "127.0.0.1:7003", "127.0.0.1:7004"])
    }

    @Test func aShardWithAFailedPrimaryOrAGapIsNotHealthy() throws {
        let failed = RedisValue.array([
            Self.shard([0, 16383], [Self.node(id: "a", port: 7001, role: "master", health: "fail")])
        ])
        let topology = try ClusterTopology.parseShards(failed, defaultHost: "h")
        #expect(topology.coversAllSlots)
        #expect(!topology.isHealthy)
        let gap = RedisValue.array([Self.shard([0, 100], [Self.node(id: "a", port: 7001, role: "master")])])
        let partial = try ClusterTopology.parseShards(gap, defaultHost: "h")
        #expect(!partial.coversAllSlots)
        #expect(partial.primary(forSlot: 101) == nil)
    }

    @Test func rejectsMalformedReplies() {
        #expect(throws: ClusterTopology.ParseError.self) { try ClusterTopology.parseShards(.integer(1), defaultHost: "h") }
        #expect(throws: ClusterTopology.ParseError.self) {
            try ClusterTopology.parseShards(.array([Self.shard([0], [])]), defaultHost: "h")  // odd slot list
        }
        #expect(throws: ClusterTopology.ParseError.self) {
            try ClusterTopology.parseShards(.array([Self.shard([0, 16384], [])]), defaultHost: "h")  // out of range
        }
        #expect(throws: ClusterTopology.ParseError.self) {
            try ClusterTopology.parseShards(.array([.array([Self.text("slots")])]), defaultHost: "h")
        }
        #expect(throws: ClusterTopology.ParseError.self) {
            try ClusterTopology.parseSlots(.array([.array([.integer(5), .integer(1), .array([Self.text("h"), .integer(1)])])]), defaultHost: "h")
        }
    }

    @Test func parsesClusterSlotsAndMergesRangesPerPrimary() throws {
        func node(_ host: String, _ port: Int, _ id: String) -> RedisValue {
            .array([Self.text(host), .integer(Int64(port)), Self.text(id)])
        }
        let reply = RedisValue.array([
            .array([.integer(0), .integer(5460), node("127.0.0.1", 7001, "a"), node("127.0.0.1", 7004, "d")]),
            .array([.integer(5461), .integer(10922), node("", 7002, "b")]),
            .array([.integer(10923), .integer(16000), node("127.0.0.1", 7003, "c")]),
            .array([.integer(16001), .integer(16383), node("127.0.0.1", 7001, "a")]),
        ])
        let topology = try ClusterTopology.parseSlots(reply, defaultHost: "seed")
        #expect(topology.shards.count == 3)
        #expect(topology.shards[0].slots == [0...5460, 16001...16383])
        #expect(topology.shards[0].replicas.map(\.address.port) == [7004])
        #expect(topology.primary(forSlot: 6000) == ClusterNodeAddress(host: "seed", port: 7002))
        #expect(topology.primary(forSlot: 16383)?.port == 7001)
        #expect(topology.coversAllSlots)
    }

    @Test func routesTakeMovedCorrections() throws {
        let topology = try ClusterTopology.parseShards(
            .array([
                Self.shard([0, 8191], [Self.node(id: "a", port: 7001, role: "master")]),
                Self.shard([8192, 16383], [Self.node(id: "b", port: 7002, role: "master")]),
            ]), defaultHost: "h")
        var routes = topology.routes()
        #expect(routes.servingAddresses.map(\.port).sorted() == [7001, 7002])
        let elsewhere = ClusterNodeAddress(host: "127.0.0.1", port: 7009)
        let first = routes.update(slot: 5, to: elsewhere)
        let second = routes.update(slot: 5, to: elsewhere)
        #expect(first && !second)
        #expect(routes.address(forSlot: 5) == elsewhere)
        #expect(routes.address(forSlot: 6)?.port == 7001)
        #expect(routes.servingAddresses.map(\.port).sorted() == [7001, 7002, 7009])
        #expect(routes != topology.routes())
        let outOfRange = routes.update(slot: 99999, to: elsewhere)
        #expect(!outOfRange)
    }

    @Test func addressesParseAsRedisPrintsThem() {
        #expect(ClusterNodeAddress(parsing: "127.0.0.1:7000", defaultHost: "d") == ClusterNodeAddress(host: "127.0.0.1", port: 7000))
        #expect(ClusterNodeAddress(parsing: "::1:7000", defaultHost: "d") == ClusterNodeAddress(host: "::1", port: 7000))
        #expect(ClusterNodeAddress(parsing: "[::1]:7000", defaultHost: "d") == ClusterNodeAddress(host: "::1", port: 7000))
        #expect(ClusterNodeAddress(parsing: ":7000", defaultHost: "d") == ClusterNodeAddress(host: "d", port: 7000))
        #expect(ClusterNodeAddress(parsing: "host:0", defaultHost: "d") == nil)
        #expect(ClusterNodeAddress(parsing: "host", defaultHost: "d") == nil)
        #expect(ClusterNodeAddress(host: "::1", port: 1).description == "[::1]:1")
    }
}
