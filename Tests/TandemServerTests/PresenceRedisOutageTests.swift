import Foundation
import Testing
import TandemTestSupport

/// Requirement 7: a Redis outage degrades a node to serving its own clients, and it recovers by itself.
@Suite(.serialized, .cleanup) struct PresenceRedisOutageTests {
    @Test func nodesServeLocallyDuringAnOutageAndConvergeAfterRedisReturns() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "out-1", stopWhenDone: true)
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "out-2", stopWhenDone: true)
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let carol = try await TestClient.connect(n1.url(user: "carol"), name: "carol")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        for client in [alice, carol, bob] { try await client.join("out", state: ["cursor": 0]) }
        try await waitUntil("everyone sees everyone") {
            [alice, carol, bob].allSatisfy { $0.members(of: "out") == [alice.session, carol.session, bob.session] }
        }
        alice.sendRaw(#"{"t":"push","doc":"out","id":1,"base":0,"ops":{"r":["put",{"n":1}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "out"), at: "action") == "commit")

        redis.kill()
        for node in [n1, n2] {
            // The gauge is set by the connection's state callback, which may run just after /readyz reads
            // the connection's state: both are waited for.
            try await waitUntil("\(node.nodeID) reports not ready and tandem_redis_up 0") {
                guard try await node.get("/readyz").status == 503 else { return false }
                return try await node.value("tandem_redis_up") == 0
            }
            #expect(try await node.get("/healthz").status == 200, "alive while Redis is down")
        }
        // Clients of one node still see each other.
        carol.presence("out", ["cursor": 7])
        try await waitUntil("alice sees carol's cursor during the outage") {
            (alice.state(of: carol.session, in: "out")?["cursor"] as? Int) == 7
        }
        // Pushes are refused as unavailable (not acknowledged, not applied).
        alice.sendRaw(#"{"t":"push","doc":"out","id":2,"base":1,"ops":{"r":["put",{"n":2}]}}"#)
        let refused = try await alice.next("error", doc: "out")
        #expect(JSON.string(refused, at: "code") == "unavailable")
        #expect(JSON.int(refused, at: "id") == 2)
        // A client joins node 2 during the outage.
        let dave = try await TestClient.connect(n2.url(user: "dave"), name: "dave")
        try await dave.join("out", state: ["cursor": 4])

        try redis.start()
        for node in [n1, n2] {
            try await waitUntil("\(node.nodeID) ready again and tandem_redis_up 1", timeout: .seconds(15)) {
                guard try await node.get("/readyz").status == 200 else { return false }
                return try await node.value("tandem_redis_up") == 1
            }
        }
        try await waitUntil("live sessions are re-registered in Redis; keys: \(redis.allKeys)", timeout: .seconds(15)) {
            redis.hashKeys("tandem:{out}:presence:out-1") == [alice.session, carol.session]
                && redis.hashKeys("tandem:{out}:presence:out-2") == [bob.session, dave.session]
        }
        let all: Set = [alice.session, carol.session, bob.session, dave.session]
        try await waitUntil("the nodes converge with no client action; alice: \(alice.members(of: "out")), dave: \(dave.members(of: "out"))",
                            timeout: .seconds(15)) {
            alice.members(of: "out") == all && dave.members(of: "out") == all && bob.members(of: "out") == all
        }
        try await waitUntil("dave gets the cursor carol set during the outage") {
            (dave.state(of: carol.session, in: "out")?["cursor"] as? Int) == 7
        }
        // Redis restarted empty; still nobody was shown leaving (and joining again) while the nodes re-registered.
        for client in [alice, carol, bob, dave] {
            #expect(client.sids("left", of: "out").isEmpty, "\(client.name) saw \(client.sids("left", of: "out")) leave")
        }
        #expect(redis.command("PUBSUB", "NUMSUB", "tandem:{out}").split(whereSeparator: \.isNewline).last == "2",
                "both nodes subscribed again")
        dave.presence("out", ["cursor": 5])
        try await waitUntil("updates flow across nodes again") { (alice.state(of: dave.session, in: "out")?["cursor"] as? Int) == 5 }
        for client in [alice, carol, bob, dave] { await client.close() }
    }

    /// A node that goes away while Redis is down cannot delete its presence nor be swept (Redis comes back
    /// empty): the survivor's reconcile reports its sessions in `left` once the nodes had a TTL to
    /// re-register. No ghosts after an outage either.
    @Test func aNodeThatDiesDuringTheOutageIsReportedLeftAfterRedisReturns() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "gone-1", stopWhenDone: true) { $0.reconcileMs = 500 }
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "gone-2") { $0.reconcileMs = 500 }
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        try await alice.join("gone")
        try await bob.join("gone")
        try await waitUntil("alice sees bob") { alice.members(of: "gone").contains(bob.session) }

        redis.kill()
        try await waitUntil("gone-1 notices the outage") { try await n1.get("/readyz").status == 503 }
        await n2.stop()
        try redis.start()
        try await waitUntil("gone-1 ready again", timeout: .seconds(15)) { try await n1.get("/readyz").status == 200 }
        try await waitUntil("alice is told bob left; \(alice.summary())", timeout: .seconds(10)) {
            alice.sids("left", of: "gone").contains(bob.session)
        }
        #expect(alice.members(of: "gone") == [alice.session])
        #expect(redis.hashKeys("tandem:{gone}:presence:gone-1") == [alice.session])
        await alice.close()
    }
}
