import Foundation
@testable import TandemRedis
import TandemTestSupport
import Testing

@Suite("RedisClusterClient against a real 3-primary/3-replica cluster", .serialized, .sharedCluster, .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisClusterClientTests {
    @Test func routesEveryCommandToThePrimaryOfItsSlot() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        #expect(client.mode == .cluster)
        #expect(client.isClusterMode)
        #expect(client.publishCommandName == "SPUBLISH")
        let primaries = await blocking { cluster.primaryPorts() }
        #expect(primaries.count == 3)
        #expect(client.topology?.primaries.map(\.port).sorted() == primaries)

        // Five keys per primary, written through the client and read back directly on the owner (a
        // misrouted key would not be there: the owner would answer MOVED to redis-cli).
        for port in primaries {
            let keys = await blocking { cluster.names(ownedBy: port, count: 5) { "route:\($0)" } }
            for key in keys {
                #expect(try await client.send(RedisCommand("SET", key, "v-\(key)")) == .simpleString("OK"))
            }
            for key in keys {
                #expect(await blocking { cluster.node(port: port)!.command("GET", key) } == "v-\(key)")
                #expect(try await client.send(RedisCommand("GET", key)).string == "v-\(key)")
            }
        }
        // Slots as the cluster computes them, for a spread of keys (hash tags included).
        let names = (0..<200).map { $0 % 3 == 0 ? "tag{\($0 % 7)}x\($0)" : "key:\($0):\(UUID().uuidString.prefix(4))" }
        let slots = try await client.send(names.map { RedisCommand("CLUSTER", "KEYSLOT", $0) })
        #expect(slots == names.map { .integer(Int64(ClusterSlot.slot(forKey: $0))) })

        // Keyless commands go to any primary.
        #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))
        // A batch in one slot is one pipeline; error replies stay in place.
        let batch = try await client.send([
            RedisCommand("SET", "{batch}a", "1"), RedisCommand("INCR", "{batch}a"), RedisCommand("PING"),
            RedisCommand("HGET", "{batch}a", "f"), RedisCommand("GET", "{batch}a"),
        ])
        #expect(batch[0] == .simpleString("OK") && batch[1] == .integer(2) && batch[2] == .simpleString("PONG"))
        #expect(batch[3].errorMessage?.hasPrefix("WRONGTYPE") == true)
        #expect(batch[4].string == "2")
    }

    /// Per-shard figures (issue 11): every attempt is reported with the shard of its slot (index in the
    /// map) and whether it was answered, redirected or failed; each key is available while its shard's
    /// primary is connected.
    @Test func reportsEachAttemptByShardAndTheShardsAvailability() async throws {
        let cluster = try SharedCluster.get()
        struct Attempt: Sendable, Equatable {
            var shard: Int?
            var outcome: ClusterAttemptOutcome
        }
        let attempts = Recorder<Attempt>()
        let availabilityReports = Recorder<Int>()
        let client = try startedClusterClient(cluster.seedURLs) { configuration in
            configuration.shardObserver = { shard, outcome in attempts.append(Attempt(shard: shard, outcome: outcome)) }
            configuration.onAvailabilityChange = { availabilityReports.append(1) }
        }
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        #expect(await waitUntil { !availabilityReports.values.isEmpty })  // reported from the timer thread, after isConnected can read true
        let shards = client.shards
        #expect(shards.map(\.index) == [0, 1, 2] && shards.allSatisfy(\.connected), "\(shards)")
        #expect(shards.map(\.slots).reduce(0, +) == ClusterSlot.count)
        let primaries = await blocking { cluster.primaryPorts() }
        #expect(Set(shards.map(\.primary.port)) == Set(primaries))

        for shard in shards {
            let key = await blocking { cluster.names(ownedBy: shard.primary.port, count: 1) { "shard-figures:\($0)" } }[0]
            #expect(client.isAvailable(forKey: key))
            let before = attempts.values.count
            #expect(try await client.send(RedisCommand("SET", key, "1")) == .simpleString("OK"))
            #expect(Array(attempts.values.dropFirst(before)) == [Attempt(shard: shard.index, outcome: .reply)])
        }

        // A stale route (the slot believed on another primary): MOVED, counted as a redirection of the
        // slot's shard, then the answer.
        let owner = shards[0]
        let key = await blocking { cluster.names(ownedBy: owner.primary.port, count: 1) { "shard-moved:\($0)" } }[0]
        let slot = ClusterSlot.slot(forKey: key)
        client.core.learnMoved(slot: slot, to: shards[1].primary)
        var before = attempts.values.count
        #expect(try await client.send(RedisCommand("SET", key, "2")) == .simpleString("OK"))
        #expect(Array(attempts.values.dropFirst(before)) == [Attempt(shard: 0, outcome: .redirect), Attempt(shard: 0, outcome: .reply)])

        // A route to a node that does not answer: the key is unavailable, and an attempt fails (counted as
        // an error) until the map is fetched again and the command is retried on the owner.
        // The MOVED above scheduled a map refresh (after `minRefreshInterval`); if it lands between the
        // stale route and the send, it repairs the route first and nothing fails — a round that proves
        // nothing, so it is tried again (the refresh comes once; a later round is not raced).
        var recovered: [Attempt] = []
        for _ in 0..<5 {
            client.core.learnMoved(slot: slot, to: ClusterNodeAddress(host: "127.0.0.1", port: freeTCPPort()))
            let unavailable = !client.isAvailable(forKey: key)
            before = attempts.values.count
            #expect(try await client.send(RedisCommand("SET", key, "3")) == .simpleString("OK"))
            recovered = Array(attempts.values.dropFirst(before))
            #expect(await waitUntil { client.isAvailable(forKey: key) })
            if unavailable && recovered.first == Attempt(shard: 0, outcome: .error) { break }
        }
        #expect(recovered.first == Attempt(shard: 0, outcome: .error) && recovered.last == Attempt(shard: 0, outcome: .reply), "\(recovered)")
    }

    @Test func crossSlotWorkIsRefusedBeforeSending() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let sent = await blocking { cluster.primaryPorts().reduce(0) { $0 + cluster.statistic($1, "cmdstat_mget", "calls") } }

        await #expect(throws: RedisError.crossSlot) { try await client.send(RedisCommand("MGET", "a", "b")) }
        await #expect(throws: RedisError.crossSlot) {
            try await client.send([RedisCommand("GET", "a"), RedisCommand("GET", "b")])
        }
        await #expect(throws: RedisError.crossSlot) {
            try await client.evalScript(RedisScript("return 1"), keys: ["a", "b"])
        }
        // The callback API refuses at once, on the calling thread, with every result of the batch.
        let results = Recorder<[Result<RedisValue, RedisError>]>()
        client.send([RedisCommand("GET", "a"), RedisCommand("PING"), RedisCommand("GET", "b")]) { results.append($0) }
        #expect(results.values == [Array(repeating: .failure(.crossSlot), count: 3)])
        #expect(client.pendingCommandCount == 0)
        // Nothing reached the cluster; one slot is fine.
        #expect(await blocking { cluster.primaryPorts().reduce(0) { $0 + cluster.statistic($1, "cmdstat_mget", "calls") } } == sent)
        #expect(try await client.send(RedisCommand("MGET", "{t}a", "{t}b")) == .array([.null, .null]))
    }

    @Test func noscriptFallsBackToEvalOnTheNodeThatSaidSo() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let script = RedisScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
        let primaries = await blocking { cluster.primaryPorts() }
        await blocking { for port in primaries { cluster.node(port: port)!.command("SCRIPT", "FLUSH") } }
        func cached() async -> [Int] {
            await blocking { primaries.map { Int(cluster.node(port: $0)!.command("SCRIPT", "EXISTS", script.sha1)) ?? -1 } }
        }
        #expect(await cached() == [0, 0, 0])
        for (index, port) in primaries.enumerated() {
            let key = await blocking { cluster.names(ownedBy: port, count: 1) { "script:{\($0)}" } }[0]
            let reply = try await client.evalScript(script, keys: [key], args: ["x"])
            #expect(reply == .array([.bulkString(Array(key.utf8)), .bulkString(Array("x".utf8)), .integer(1)]))
            // Only the node that ran it learned the script (its connection loaded it before the call).
            #expect(await cached() == primaries.indices.map { $0 <= index ? 1 : 0 })
            // Flushed under the live connection: that node answers NOSCRIPT once, and the call falls back
            // to EVAL there.
            let (noscripts, evals) = await blocking {
                (cluster.statistic(port, "errorstat_NOSCRIPT", "count"), cluster.statistic(port, "cmdstat_eval", "calls"))
            }
            _ = await blocking { cluster.node(port: port)!.command("SCRIPT", "FLUSH") }
            #expect(try await client.evalScript(script, keys: [key], args: ["y"]).array?.last == .integer(2))
            #expect(await blocking { cluster.statistic(port, "errorstat_NOSCRIPT", "count") } == noscripts + 1)
            #expect(await blocking { cluster.statistic(port, "cmdstat_eval", "calls") } == evals + 1)
            #expect(await cached() == primaries.indices.map { $0 <= index ? 1 : 0 })
        }
    }

    /// Issue 8: a node connection that reconnects loads every script the client ran before anything else
    /// goes out on it, so the first call after a node's restart or failover does not meet NOSCRIPT.
    @Test func aNodeConnectionLoadsTheScriptsAgainWhenItReconnects() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        let port = await blocking { cluster.primaryPorts() }[0]
        let key = await blocking { cluster.names(ownedBy: port, count: 1) { "reload:{\($0)}" } }[0]
        #expect(try await client.evalScript(script, keys: [key]) == .integer(1))

        // What a restart does to the node's connection: the cache is gone and so is the connection
        // (this suite's tests run one at a time, so the only normal clients are this test's).
        let noscripts = await blocking {
            let node = cluster.node(port: port)!
            node.command("SCRIPT", "FLUSH")
            node.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            return cluster.statistic(port, "errorstat_NOSCRIPT", "count")
        }
        // The reconnect alone loads it, no call needed.
        #expect(await waitUntilBlocking { cluster.node(port: port)!.command("SCRIPT", "EXISTS", script.sha1) == "1" })
        #expect(await waitUntil { client.isConnected })
        #expect(try await client.evalScript(script, keys: [key]) == .integer(2))
        #expect(await blocking { cluster.statistic(port, "errorstat_NOSCRIPT", "count") } == noscripts)
    }

    /// The cluster's NOSCRIPT fallback keeps a node's script calls in the order they were made, as the
    /// single client's does (before, each fell back on its own, and a later call could run first).
    @Test func scriptCallsOnANodeKeepTheirOrderAcrossANoscriptRetry() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let script = RedisScript("return redis.call('RPUSH', KEYS[1], ARGV[1])")
        let port = await blocking { cluster.primaryPorts() }[1]
        let keys = await blocking { cluster.names(ownedBy: port, count: 1) { "{order\($0)}" } }
        let list = keys[0] + ":list"
        let blocker = keys[0] + ":blocker"
        _ = try await client.evalScript(script, keys: [keys[0] + ":warm"], args: ["-"])
        let noscripts = await blocking {
            cluster.node(port: port)!.command("SCRIPT", "FLUSH")
            return cluster.statistic(port, "errorstat_NOSCRIPT", "count")
        }
        let done = Recorder<String>()
        client.evalScript(script, keys: [list], args: ["a"]) { _ in done.append("a") }
        // BLPOP on an empty list in the same slot holds this node's connection for a second: "b" stays
        // behind it in Redis while "a"'s NOSCRIPT comes back and its retry is sent.
        client.send(RedisCommand("BLPOP", blocker, "1")) { _ in done.append("blpop") }
        client.evalScript(script, keys: [list], args: ["b"]) { _ in done.append("b") }
        #expect(await waitUntilBlocking { cluster.statistic(port, "errorstat_NOSCRIPT", "count") > noscripts })
        // Made after "a"'s retry went out, while "b" (sent before it) has yet to meet NOSCRIPT.
        client.evalScript(script, keys: [list], args: ["c"]) { _ in done.append("c") }
        #expect(await waitUntil { done.count == 4 })
        #expect(await blocking { cluster.node(port: port)!.command("LRANGE", list, "0", "-1") } == "a\nb\nc")
        #expect(done.values.filter { $0 != "blpop" } == ["a", "b", "c"])
    }

    @Test func followsMovedAfterASlotMigrationAndRefreshesTheMap() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs) { $0.cluster.refreshInterval = .seconds(60) }
        defer { client.shutdown() }
        // Connected, and no refresh due for a while: the map goes stale when the slot moves.
        #expect(await waitUntil { client.isConnected && client.core.refreshIsQuiet(forNanoseconds: 30_000_000_000) })
        let primaries = await blocking { cluster.primaryPorts() }
        let (source, target) = (primaries[0], primaries[1])
        let key = await blocking { cluster.names(ownedBy: source, count: 1) { "moved:{\($0)}" } }[0]
        let slot = ClusterSlot.slot(forKey: key)
        #expect(try await client.send(RedisCommand("SET", key, "before")) == .simpleString("OK"))
        #expect(client.core.address(forSlot: slot)?.port == source)

        try await blocking { try cluster.migrateSlot(slot, from: source, to: target) }
        let movedBefore = await blocking { cluster.statistic(source, "errorstat_MOVED", "count") }
        // The client's map is stale: the source answers MOVED, the client follows it to the target.
        #expect(try await client.send(RedisCommand("GET", key)).string == "before")
        #expect(await blocking { cluster.statistic(source, "errorstat_MOVED", "count") } == movedBefore + 1)
        #expect(client.core.address(forSlot: slot)?.port == target)
        #expect(try await client.send(RedisCommand("SET", key, "after")) == .simpleString("OK"))
        #expect(await blocking { cluster.node(port: target)!.command("GET", key) } == "after")
        #expect(await blocking { cluster.statistic(source, "errorstat_MOVED", "count") } == movedBefore + 1)
        // The MOVED also asked for a fresh map, which now says the same.
        #expect(await waitUntil { client.topology?.primary(forSlot: slot)?.port == target })
        #expect(client.isConnected)
    }

    @Test func refreshesTheMapPeriodicallyWithoutAnyError() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs) { $0.cluster.refreshInterval = .milliseconds(200) }
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let primaries = await blocking { cluster.primaryPorts() }
        let (source, target) = (primaries[1], primaries[0])
        let slot = ClusterSlot.slot(forKey: await blocking { cluster.names(ownedBy: source, count: 1) { "periodic\($0)" }[0] })
        let movedBefore = await blocking { cluster.statistic(source, "errorstat_MOVED", "count") }
        try await blocking { try cluster.migrateSlot(slot, from: source, to: target) }
        // No command touches the slot: only the periodic fetch can teach the client where it went.
        #expect(await waitUntil { client.core.address(forSlot: slot)?.port == target })
        #expect(client.topology?.primary(forSlot: slot)?.port == target)
        #expect(await blocking { cluster.statistic(source, "errorstat_MOVED", "count") } == movedBefore)
    }

    @Test func followsAskDuringAMigrationAndRetriesTryAgainWithinTheWindow() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs) { $0.cluster.retryTimeout = .milliseconds(300) }
        let patient = try startedClusterClient(cluster.seedURLs)
        defer {
            client.shutdown()
            patient.shutdown()
        }
        #expect(await waitUntil { client.isConnected && patient.isConnected })
        let primaries = await blocking { cluster.primaryPorts() }
        let (source, target) = (primaries[2], primaries[0])
        let tag = await blocking { cluster.names(ownedBy: source, count: 1) { "ask\($0)" } }[0]
        let (moving, staying, created) = ("{\(tag)}moving", "{\(tag)}staying", "{\(tag)}created")
        let slot = ClusterSlot.slot(forKey: tag)
        _ = try await client.send([RedisCommand("SET", moving, "m"), RedisCommand("SET", staying, "s")])

        try await blocking {
            try cluster.beginMigration(slot: slot, from: source, to: target)
            try cluster.migrateKeys([moving], from: source, to: target)
        }
        let askBefore = await blocking { cluster.statistic(source, "errorstat_ASK", "count") }
        // The moved key: ASK from the source, ASKING + GET on the target. The map is not changed by ASK.
        #expect(try await client.send(RedisCommand("GET", moving)).string == "m")
        #expect(try await client.send(RedisCommand("GET", staying)).string == "s")
        #expect(try await client.send(RedisCommand("SET", created, "c")) == .simpleString("OK"))
        #expect(await blocking { cluster.statistic(source, "errorstat_ASK", "count") } == askBefore + 2)
        #expect(await blocking { cluster.node(port: target)!.command("CLUSTER", "COUNTKEYSINSLOT", "\(slot)") } == "2")
        #expect(client.core.address(forSlot: slot)?.port == source)

        // Keys split between the two nodes: TRYAGAIN, retried until the (short) window ends.
        let rejectedBefore = await blocking { cluster.statistic(source, "cmdstat_mget", "rejected_calls") }
        await #expect {
            try await client.send(RedisCommand("MGET", moving, staying))
        } throws: { error in
            guard case RedisError.server(let message) = error else { return false }
            return message.hasPrefix("TRYAGAIN")
        }
        #expect(await blocking { cluster.statistic(source, "cmdstat_mget", "rejected_calls") } >= rejectedBefore + 3)

        // With a longer window the same command succeeds once the migration completes meanwhile.
        let rejectedNow = await blocking { cluster.statistic(source, "cmdstat_mget", "rejected_calls") }
        async let values = patient.send(RedisCommand("MGET", moving, staying))
        #expect(await waitUntilBlocking { cluster.statistic(source, "cmdstat_mget", "rejected_calls") > rejectedNow })
        try await blocking {
            try cluster.migrateAllKeys(slot: slot, from: source, to: target)
            try cluster.finishMigration(slot: slot, from: source, to: target)
        }
        #expect(try await values == .array([.bulkString(Array("m".utf8)), .bulkString(Array("s".utf8))]))
        #expect(try await client.send(RedisCommand("GET", created)).string == "c")
        #expect(await waitUntil { client.core.address(forSlot: slot)?.port == target })
    }

    @Test func aCommandWaitingForARetryCountsAsPendingAndFailsOnShutdown() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs) { $0.maxPendingCommands = 1 }
        #expect(await waitUntil { client.isConnected })
        let primaries = await blocking { cluster.primaryPorts() }
        let (source, target) = (primaries[1], primaries[2])
        let tag = await blocking { cluster.names(ownedBy: source, count: 1) { "wait\($0)" }[0] }
        let slot = ClusterSlot.slot(forKey: tag)
        _ = try await client.send(RedisCommand("MSET", "{\(tag)}1", "a", "{\(tag)}2", "b"))
        try await blocking {
            try cluster.beginMigration(slot: slot, from: source, to: target)
            try cluster.migrateKeys(["{\(tag)}1"], from: source, to: target)
        }
        let rejected = await blocking { cluster.statistic(source, "cmdstat_mget", "rejected_calls") }
        let outcome = Recorder<Result<RedisValue, RedisError>>()
        client.send(RedisCommand("MGET", "{\(tag)}1", "{\(tag)}2")) { outcome.append($0) }
        #expect(await waitUntilBlocking { cluster.statistic(source, "cmdstat_mget", "rejected_calls") > rejected })
        // Waiting between retries still counts against the limit.
        #expect(client.pendingCommandCount == 1)
        await #expect(throws: RedisError.overloaded) { try await client.send(RedisCommand("PING")) }
        await client.shutdown()
        #expect(outcome.values == [.failure(.shutdown)])
        #expect(client.pendingCommandCount == 0)
        try await blocking {
            try cluster.migrateAllKeys(slot: slot, from: source, to: target)
            try cluster.finishMigration(slot: slot, from: source, to: target)
        }
    }
}
