import Foundation
import TandemServer
import TandemTestSupport
import TandemYjs
import Testing

/// Yjs awareness on `/yjs/{room}` is presence: TTL'd entries in Redis, relayed across nodes, removed
/// (clock + 1, state null) when the client's socket closes or its node dies, rate-limited per user.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2))) struct YjsAwarenessTests {
    private func awareness(_ client: YjsTestClient) -> [YAwarenessUpdate.Entry] {
        client.messages.flatMap { message -> [YAwarenessUpdate.Entry] in
            if case .awareness(let update) = message { return update.entries } else { return [] }
        }
    }

    /// The latest entry `client` heard of for `clientID`.
    private func latest(_ client: YjsTestClient, _ clientID: UInt64) -> YAwarenessUpdate.Entry? {
        awareness(client).last { $0.clientID == clientID }
    }

    private func entry(_ clientID: UInt64, _ clock: UInt64, _ json: String) -> YProtocolMessage {
        .awareness(YAwarenessUpdate(entries: [.init(clientID: clientID, clock: clock, stateJSON: json)]))
    }

    @Test func awarenessReachesTheOtherNodeIsQueryableAndIsRemovedWhenItsSocketCloses() async throws {
        let redis = try RedisServerProcess()
        let a = try await InProcessNode.start(redis: redis.url, nodeID: "awa", stopWhenDone: true)
        let b = try await InProcessNode.start(redis: redis.url, nodeID: "awb", stopWhenDone: true)
        let room = "aw:1"
        let alice = try await YjsTestClient.connect(YjsTestClient.url(port: a.port, room: room, user: "alice"), name: "alice")
        let bob = try await YjsTestClient.connect(YjsTestClient.url(port: b.port, room: room, user: "bob"), name: "bob")
        _ = try await alice.serverStep1()
        _ = try await bob.serverStep1()
        alice.send(entry(11, 1, #"{"user":{"name":"alice"},"cursor":3}"#))
        try await waitUntil("bob sees alice's awareness") { self.latest(bob, 11)?.stateJSON == #"{"user":{"name":"alice"},"cursor":3}"# }
        // A TTL'd presence entry in Redis, in node awa's hash.
        let key = "tandem:yjs:{\(room)}:aw:awa"
        #expect(redis.command("HGET", key, "11").hasPrefix("11 1 awa "))
        #expect((Int(redis.command("PTTL", key)) ?? -1) > 0)
        #expect(try await a.value("tandem_presence_sessions") == 1)
        // In /api/status: the room, its awareness, the connection.
        let status = try await a.status()
        let rooms = status["yjsRooms"] as? [[String: Any]] ?? []
        #expect(rooms.count == 1 && rooms.first?["room"] as? String == room, "\(rooms)")
        #expect(rooms.first?["localAwareness"] as? Int == 1 && rooms.first?["localMembers"] as? Int == 1, "\(rooms)")
        #expect(status["presenceSessions"] as? Int == 1)
        #expect(status["connections"] as? Int == 1)
        // A newcomer gets the room's states after the server's step 1; a type-3 query gets them too.
        let carol = try await YjsTestClient.connect(YjsTestClient.url(port: b.port, room: room, user: "carol"), name: "carol")
        try await waitUntil("carol got the states on joining") { self.latest(carol, 11)?.clock == 1 }
        let before = awareness(carol).count
        carol.send(.queryAwareness)
        try await waitUntil("carol's query answered") { self.awareness(carol).count > before }
        // Nobody may rewrite another client's entry.
        carol.send(entry(11, 9, #"{"user":{"name":"mallory"}}"#))
        carol.send(entry(12, 1, #"{"user":{"name":"carol"}}"#))
        try await waitUntil("bob sees carol") { self.latest(bob, 12) != nil }
        #expect(latest(bob, 11)?.clock == 1)
        #expect(try await b.value("tandem_limit_rejections_total{reason=\"yjs_awareness_clients\"}") == 1)

        // Alice's socket goes away without a close frame: bob sees her removed (clock + 1, null).
        alice.socket.abort()
        try await waitUntil("bob sees alice removed") {
            self.latest(bob, 11).map { $0.clock == 2 && $0.isRemoval } ?? false
        }
        try await waitUntil("alice's entry left Redis") { redis.command("HEXISTS", key, "11") == "0" }
        try await waitUntil("node awa serves no awareness") { (try? await a.value("tandem_presence_sessions")) == 0 }
    }

    @Test func aDeadNodesAwarenessIsRemovedWithinThePresenceTTL() async throws {
        let redis = try RedisServerProcess()
        let doomed = try await ProcessNode(arguments: ["--redis", redis.url, "--presence-ttl-ms", "1500"], nodeID: "aw-doomed")
        let survivor = try await InProcessNode.start(redis: redis.url, nodeID: "aw-survivor", stopWhenDone: true) {
            $0.presenceTTLMs = 1500
        }
        let room = "aw:dead"
        let victim = try await YjsTestClient.connect(YjsTestClient.url(port: doomed.port, room: room, user: "v"), name: "victim")
        let watcher = try await YjsTestClient.connect(YjsTestClient.url(port: survivor.port, room: room, user: "w"), name: "watcher")
        _ = try await victim.serverStep1()
        _ = try await watcher.serverStep1()
        victim.send(entry(21, 4, #"{"user":"v"}"#))
        try await waitUntil("watcher sees the victim") { self.latest(watcher, 21)?.clock == 4 }
        doomed.process.kill()
        // No node removed it; its registration expired and the survivor's sweep said so.
        try await waitUntil("watcher sees the victim removed", timeout: .seconds(15)) {
            self.latest(watcher, 21).map { $0.clock == 5 && $0.isRemoval } ?? false
        }
    }

    @Test func awarenessIsRateLimitedPerUserKeepingTheLatest() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "awr", stopWhenDone: true) {
            $0.presenceRate = 1
            $0.presenceBurst = 1
        }
        let room = "aw:rate"
        let fast = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "fast"), name: "fast")
        let watcher = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "w"), name: "watcher")
        _ = try await fast.serverStep1()
        _ = try await watcher.serverStep1()
        for clock in 1...6 { fast.send(entry(31, UInt64(clock), #"{"n":\#(clock)}"#)) }
        try await waitUntil("the latest state arrives") { self.latest(watcher, 31)?.clock == 6 }
        // Intermediate states were dropped, not queued.
        #expect(awareness(watcher).filter { $0.clientID == 31 }.count < 6)
        #expect(try await node.value("tandem_presence_updates_total{result=\"rate_limited\"}") >= 1)
    }
}
