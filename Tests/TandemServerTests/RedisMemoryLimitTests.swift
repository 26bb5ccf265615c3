import Foundation
import Testing
import TandemServer
import TandemTestSupport

/// Issue 7, Redis memory: the embedded Redis runs with a `maxmemory` and `noeviction`; a Redis at its
/// maxmemory refuses writes, so pushes get `unavailable` (retryable, nothing applied, nothing acknowledged
/// lost) while presence among a node's own clients carries on; the node exports Redis's memory.
@Suite(.serialized, .cleanup) struct RedisMemoryLimitTests {
    @Test func aFullRedisRefusesPushesWithUnavailableAndPresenceCarriesOn() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "full", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await alice.join("full")
        try await bob.join("full")
        try await waitUntil("Redis memory is exported") { (try? await node.value("tandem_redis_memory_used_bytes")) ?? 0 > 0 }
        #expect(try await node.value("tandem_redis_memory_max_bytes") == 0, "the test Redis has no maxmemory")

        // Leave Redis a little room, then fill it with 60 KB records until a push is refused.
        let used = Int(redis.info("memory")["used_memory"] ?? "") ?? 0
        let limit = used + 512 * 1024
        redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.command("CONFIG", "SET", "maxmemory", "\(limit)")
        let filler = String(repeating: "x", count: 60_000)
        var acknowledged: [String] = []
        var refusal: [String: Any]?
        for i in 0..<200 where refusal == nil {
            let mark = alice.count
            alice.sendRaw(#"{"t":"push","doc":"full","id":\#(i),"base":\#(acknowledged.count),"ops":{"r\#(i)":["put",{"fill":"\#(filler)"}]}}"#)
            try await waitUntil("push \(i) answered") {
                alice.messages(since: mark).contains { ["result", "error"].contains(JSON.string($0, at: "t")) }
            }
            let answer = alice.messages(since: mark).first { ["result", "error"].contains(JSON.string($0, at: "t")) }!
            if JSON.string(answer, at: "t") == "result" {
                #expect(JSON.string(answer, at: "action") == "commit")
                acknowledged.append("r\(i)")
            } else {
                refusal = answer
            }
        }
        let refused = try #require(refusal, "Redis at maxmemory \(limit) refused no push")
        #expect(JSON.string(refused, at: "code") == "unavailable")
        #expect(JSON.string(refused, at: "message")?.contains("out of memory") == true, "\(refused)")
        let refusedID = try #require(JSON.int(refused, at: "id"))
        #expect(acknowledged.count >= 2, "some pushes fitted before the limit: \(acknowledged.count)")
        // Nothing acknowledged is lost, nothing refused is applied; bob saw exactly the acknowledged ones.
        for record in acknowledged { #expect(redis.command("HEXISTS", "tandem:{full}:records", record) == "1", "\(record)") }
        #expect(redis.command("HEXISTS", "tandem:{full}:records", "r\(refusedID)") == "0")
        #expect(redis.command("GET", "tandem:{full}:clock") == "\(acknowledged.count)")
        try await waitUntil("bob has every acknowledged commit") { bob.all("patch").count == acknowledged.count }
        try await waitUntil("the maxmemory is exported") { try await node.value("tandem_redis_memory_max_bytes") == Double(limit) }

        // Presence among this node's clients carries on, and a newcomer can still join.
        alice.presence("full", ["cursor": [9, 9]])
        try await waitUntil("bob sees alice's cursor; \(bob.summary())") {
            (bob.state(of: alice.session, in: "full")?["cursor"] as? [Int]) == [9, 9]
        }
        let carol = try await TestClient.connect(node.url(user: "carol"), name: "carol")
        let joined = try await carol.join("full")
        let present = Set((JSON.array(joined, at: "presence") ?? []).compactMap { JSON.string($0, at: "sid") })
        #expect(present.isSuperset(of: [alice.session, bob.session, carol.session]))
        #expect(try await node.get("/healthz").status == 200)

        // Room again: the refused push, pushed again, commits.
        redis.command("CONFIG", "SET", "maxmemory", "0")
        alice.sendRaw(#"{"t":"push","doc":"full","id":\#(refusedID),"base":\#(acknowledged.count),"ops":{"r\#(refusedID)":["put",{"fill":"again"}]}}"#)
        let retried = try await alice.next("result", doc: "full") { JSON.int($0, at: "id") == refusedID }
        #expect(JSON.string(retried, at: "action") == "commit")
        #expect(JSON.int(retried, at: "clock") == acknowledged.count + 1)
        for client in [alice, bob, carol] { await client.close() }
    }

    @Test func theEmbeddedRedisRunsWithMaxmemoryAndNoEviction() async throws {
        let directory = try makeTemporaryDirectory(prefix: "tandem-emb")
        let node = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: [
                "serve", "--port", "0", "--ops-port", "0", "--data-dir", directory.path, "--redis-maxmemory", "300MiB",
            ])
        let line = try await node.waitForOutput(matching: "embedded redis started", timeout: .seconds(30))
        #expect(line.contains("redis.maxmemory=300.0 MiB"), "\(line)")
        _ = try await node.waitForOutput(matching: "listening", timeout: .seconds(30))
        let socket = directory.appendingPathComponent("redis/redis.sock").path
        #expect(try await redisCLI(socket, "CONFIG", "GET", "maxmemory") == "maxmemory\n\(300 << 20)")
        #expect(try await redisCLI(socket, "CONFIG", "GET", "maxmemory-policy") == "maxmemory-policy\nnoeviction")
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(30)) == 0)

        // The default: a quarter of the memory available (physical, or the cgroup limit), at least 64 MiB.
        let physical = ProcessInfo.processInfo.physicalMemory
        let defaultBytes = EmbeddedRedis.defaultMaxMemoryBytes()
        #expect(defaultBytes >= 64 << 20 && defaultBytes <= max(64 << 20, physical / 4), "\(defaultBytes)")

        // Only for the embedded Redis; a bad size is refused.
        for (arguments, reason) in [
            (["--redis", "redis://127.0.0.1:1", "--redis-maxmemory", "1GiB"], "with --redis, set maxmemory on that Redis"),
            (["--redis-maxmemory", "lots"], "--redis-maxmemory takes bytes"),
            (["--doc-ttl", "forever"], "--doc-ttl takes 0 or a duration"),
            (["--doc-ttl", "10s"], "--doc-ttl must be 0 (never expire) or at least 1m"),
        ] {
            let refused = try ChildProcess(
                executable: try BuiltProducts.executable(named: "tandem"),
                arguments: ["serve", "--port", "0", "--ops-port", "0", "--data-dir", directory.path] + arguments)
            #expect(try await refused.waitForExit(timeout: .seconds(30)) != 0)
            #expect(refused.logText.contains(reason), "\(arguments): \(refused.logText)")
        }
    }

    /// `redis-cli -s SOCKET args…`, its output trimmed.
    func redisCLI(_ socket: String, _ arguments: String...) async throws -> String {
        let cli = try ChildProcess(executable: "/usr/bin/redis-cli", arguments: ["-s", socket] + arguments)
        _ = try await cli.waitForExit()
        return cli.logText.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
