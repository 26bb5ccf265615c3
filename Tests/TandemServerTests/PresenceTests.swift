import Foundation
import Testing
import TandemTestSupport

@Suite(.serialized) struct PresenceTests {
    @Test func presenceIsStoredInRedisWithATTLRefreshedWhileLiveAndDeletedOnLeave() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ttl-node")
        defer { Task { await node.stop() } }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("d1", state: ["cursor": 1])
        let key = "tandem:{d1}:presence:ttl-node"
        try await waitUntil("presence hash written") { redis.command("HEXISTS", key, alice.session) == "1" }
        let entry = redis.command("HGET", key, alice.session)
        #expect(entry.contains(#""cursor":1"#))
        let ttl = Int(redis.command("PTTL", key)) ?? -1
        #expect(ttl > 0 && ttl <= 2000, "the per-node hash expires after the presence TTL, got PTTL \(ttl)")
        #expect(redis.command("ZSCORE", "tandem:{d1}:nodes", "ttl-node") != "")

        // Live sessions are refreshed by their node: after three TTLs without any message it is still there.
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(6500))
        while ContinuousClock.now < deadline {
            #expect(redis.command("HEXISTS", key, alice.session) == "1")
            try await Task.sleep(for: .milliseconds(250))
        }
        let refreshedTTL = Int(redis.command("PTTL", key)) ?? -1
        #expect(refreshedTTL > 0)

        alice.send(["t": "leave", "doc": "d1"])
        try await alice.next("left", doc: "d1")
        try await waitUntil("deleted at once after leave") { redis.command("HEXISTS", key, alice.session) == "0" }
        await alice.close()
    }

    @Test func cleanCloseDeletesPresenceAtOnceAndOthersSeeLeft() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "close-node")
        defer { Task { await node.stop() } }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await alice.join("d", state: ["x": 1])
        try await bob.join("d")
        try await waitUntil("bob sees alice") { bob.members(of: "d").contains(alice.session) }
        let aliceSession = alice.session
        await alice.close()
        try await bob.next("presence", doc: "d") { (JSON.array($0, at: "left") as? [String])?.contains(aliceSession) == true }
        #expect(redis.command("HEXISTS", "tandem:{d}:presence:close-node", aliceSession) == "0")
        await bob.close()
    }

    @Test func clientsOnTwoNodesSeeEachOtherAndTheirUpdates() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "a1")
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "a2")
        defer { Task { await n1.stop(); await n2.stop() } }
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        try await alice.join("shared", state: ["cursor": 0])
        let joined = try await bob.join("shared")
        // joined lists every live session on every node.
        let listed = (JSON.array(joined, at: "presence") ?? []).compactMap { JSON.string($0, at: "sid") }
        #expect(listed.contains(alice.session))
        #expect(listed.contains(bob.session))
        try await waitUntil("alice sees bob") { alice.members(of: "shared").contains(bob.session) }
        alice.presence("shared", ["cursor": 42])
        try await waitUntil("bob sees alice's cursor") {
            (bob.state(of: alice.session, in: "shared")?["cursor"] as? Int) == 42
        }
        // Entries carry the documented fields.
        let entry = try #require(
            (JSON.array(joined, at: "presence") ?? []).first { JSON.string($0, at: "sid") == alice.session } as? [String: Any])
        #expect(JSON.string(entry, at: "user") == "alice")
        #expect(JSON.string(entry, at: "name") == "alice")
        #expect(JSON.string(entry, at: "role") == "editor")
        #expect(JSON.int(entry, at: "state.cursor") == 0)
        // Subscriptions only to docs with members, and no pattern subscriptions.
        #expect(redis.command("PUBSUB", "NUMPAT") == "0")
        #expect(redis.command("PUBSUB", "CHANNELS").split(separator: "\n").map(String.init) == ["tandem:{shared}"])
        await alice.close()
        await bob.close()
        try await waitUntil("channels unsubscribed once the doc is empty") { redis.command("PUBSUB", "CHANNELS") == "" }
    }
}
