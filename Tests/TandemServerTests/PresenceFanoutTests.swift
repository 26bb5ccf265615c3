import Foundation
import Testing
import TandemTestSupport

/// Requirement 3: delta fan-out — coalesced per tick, the same bytes to every subscriber, one publish per
/// doc per tick per node, subscriptions only where needed, and reconcile against Redis.
@Suite(.serialized, .cleanup) struct PresenceFanoutTests {
    /// Four clients update at 50/s each (rate limit lifted so only tick coalescing applies). Two observers on
    /// the node receive byte-identical frames, far fewer messages than updates (at most one per tick), each
    /// listing a session at most once, with states in order and the latest state last.
    @Test func updatesWithinATickAreCoalescedAndEverySubscriberGetsTheSameBytes() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "fan", stopWhenDone: true) {
            $0.presenceRate = 1000
            $0.presenceBurst = 1000
        }
        let o1 = try await TestClient.connect(node.url(user: "o1"), name: "o1")
        let o2 = try await TestClient.connect(node.url(user: "o2"), name: "o2")
        var updaters: [TestClient] = []
        for i in 0..<4 { updaters.append(try await TestClient.connect(node.url(user: "u\(i)"), name: "u\(i)")) }
        for client in [o1, o2] + updaters { try await client.join("fan", state: ["seq": 0]) }
        let everyone = Set(([o1, o2] + updaters).map(\.session))
        try await waitUntil("both observers see everyone") { o1.members(of: "fan") == everyone && o2.members(of: "fan") == everyone }
        let marks = (o1.count, o2.count)

        let perClient = 50
        try await withThrowingTaskGroup(of: Void.self) { group in
            for updater in updaters {
                group.addTask { try await sendPresence(updater, doc: "fan", count: perClient, over: 1) }
            }
            try await group.waitForAll()
        }
        for observer in [o1, o2] {
            try await waitUntil("\(observer.name) has every updater's last state") {
                updaters.allSatisfy { observer.state(of: $0.session, in: "fan")?["seq"] as? Int == perClient }
            }
        }
        let frames1 = o1.rawDeltas(of: "fan", since: marks.0)
        let frames2 = o2.rawDeltas(of: "fan", since: marks.1)
        #expect(frames1 == frames2, "every local subscriber gets the same bytes")
        let updates = perClient * updaters.count
        // One delta per tick, exactly, is ConnectionLayerTests' (on the embedded loop's clock); over real
        // sockets, updates are merged rather than sent one by one.
        #expect(frames1.count < updates / 4)
        var lastSeq: [String: Int] = [:]
        var entries = 0
        for delta in o1.deltas(of: "fan", since: marks.0) {
            let listed = (JSON.array(delta, at: "joined") ?? []) + (JSON.array(delta, at: "updated") ?? [])
            let sids = listed.compactMap { JSON.string($0, at: "sid") }
            #expect(Set(sids).count == sids.count, "a session appears once per delta: \(sids)")
            for entry in listed {
                guard let sid = JSON.string(entry, at: "sid"), let seq = JSON.int(entry, at: "state.seq") else { continue }
                #expect(seq > lastSeq[sid, default: 0], "states arrive in order")
                lastSeq[sid] = seq
                entries += 1
            }
        }
        #expect(entries < updates, "intermediate states within a tick are merged: \(entries) entries for \(updates) updates")
        for client in [o1, o2] + updaters { await client.close() }
    }

    /// Three busy clients on each of two nodes: PUBLISH runs at most once per doc per tick per node, far
    /// below the number of updates; each node subscribes to the doc's channel once, with no patterns.
    @Test func eachNodePublishesAtMostOncePerDocPerTick() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "pub-1", stopWhenDone: true) {
            $0.presenceRate = 1000
            $0.presenceBurst = 1000
        }
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "pub-2", stopWhenDone: true) {
            $0.presenceRate = 1000
            $0.presenceBurst = 1000
        }
        var clients: [TestClient] = []
        for i in 0..<8 {
            let node = i % 2 == 0 ? n1 : n2
            clients.append(try await TestClient.connect(node.url(user: "c\(i)"), name: "c\(i)"))
        }
        for client in clients { try await client.join("pub", state: ["seq": 0]) }
        let everyone = Set(clients.map(\.session))
        let (watch1, watch2) = (clients[0], clients[1])  // one observer per node
        let updaters = Array(clients[2...])
        try await waitUntil("observers see everyone") { watch1.members(of: "pub") == everyone && watch2.members(of: "pub") == everyone }

        redis.command("CONFIG", "RESETSTAT")
        let start = ContinuousClock.now
        let perClient = 60
        try await withThrowingTaskGroup(of: Void.self) { group in
            for updater in updaters {
                group.addTask { try await sendPresence(updater, doc: "pub", count: perClient, over: 1.5) }
            }
            try await group.waitForAll()
        }
        for observer in [watch1, watch2] {
            try await waitUntil("\(observer.name) has every updater's last state, from both nodes") {
                updaters.allSatisfy { observer.state(of: $0.session, in: "pub")?["seq"] as? Int == perClient }
            }
        }
        let publishes = redis.calls(of: "publish")
        let elapsed = (ContinuousClock.now - start).seconds
        let bound = 2 * (Int(elapsed / 0.05) + 2)
        let updates = perClient * updaters.count
        #expect(publishes <= bound, "\(publishes) PUBLISH in \(elapsed) s for 2 nodes (bound \(bound)) for \(updates) updates")
        #expect(publishes >= 2)
        #expect(publishes < updates / 3)
        #expect(redis.command("PUBSUB", "NUMPAT") == "0")
        #expect(redis.command("PUBSUB", "CHANNELS") == "tandem:{pub}")
        #expect(redis.command("PUBSUB", "NUMSUB", "tandem:{pub}").split(whereSeparator: \.isNewline).last == "2",
                "one subscription per node")
        for client in clients { await client.close() }
    }

    /// With a short `--reconcile-ms`, tampering with Redis is corrected without any pub/sub message: a
    /// ghost entry for a fake live node appears in `joined`; deleting it yields `left`; deleting another
    /// node's live entry makes that node write it back.
    @Test func reconcileCorrectsPresenceAgainstRedis() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "rc-1", stopWhenDone: true) { $0.reconcileMs = 300 }
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "rc-2", stopWhenDone: true) { $0.reconcileMs = 300 }
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        try await alice.join("rc")
        try await bob.join("rc")
        try await waitUntil("they see each other") {
            alice.members(of: "rc").contains(bob.session) && bob.members(of: "rc").contains(alice.session)
        }

        let ghost = "ghost-session-00000001"
        let entry = #"{"name":"Ghost","node":"GHOST","role":"editor","sid":"\#(ghost)","state":{"boo":1},"user":"ghost","v":1}"#
        redis.command("HSET", "tandem:{rc}:presence:GHOST", ghost, entry)
        redis.command("ZADD", "tandem:{rc}:nodes", "\(redis.nowMs + 600_000)", "GHOST")
        for client in [alice, bob] {
            try await waitUntil("\(client.name) is told of the ghost by reconcile") { client.members(of: "rc").contains(ghost) }
        }
        #expect((alice.state(of: ghost, in: "rc")?["boo"] as? Int) == 1)

        // The node is still registered (deadline in the future), so the sweep does not touch it: only
        // reconcile can notice the entry is gone.
        redis.command("HDEL", "tandem:{rc}:presence:GHOST", ghost)
        for client in [alice, bob] {
            try await waitUntil("\(client.name) is told the ghost left") { client.sids("left", of: "rc").contains(ghost) }
        }
        redis.command("ZREM", "tandem:{rc}:nodes", "GHOST")

        // Another node's live entry deleted behind its back: that node's reconcile writes it back.
        redis.command("HDEL", "tandem:{rc}:presence:rc-2", bob.session)
        try await waitUntil("rc-2 restores bob's entry in Redis") {
            redis.command("HEXISTS", "tandem:{rc}:presence:rc-2", bob.session) == "1"
                && redis.command("ZSCORE", "tandem:{rc}:nodes", "rc-2") != ""
        }
        try await waitUntil("alice ends up seeing bob") { alice.members(of: "rc") == [alice.session, bob.session] }
        await alice.close()
        await bob.close()
    }

    /// Both nodes' pub/sub connections are killed and kept out (a password is set, so they cannot
    /// reconnect) while bob, on node 2, moves his cursor and carol, on node 2, leaves: node 1 misses both
    /// messages. Once the subscribers are let back in, node 1 reconciles at once (the periodic reconcile
    /// is set to a minute) and alice converges with no client action.
    @Test func afterAPubSubReconnectNodesReconcileAndConverge() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "ps-1", stopWhenDone: true) { $0.reconcileMs = 60_000 }
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "ps-2", stopWhenDone: true) { $0.reconcileMs = 60_000 }
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        let carol = try await TestClient.connect(n2.url(user: "carol"), name: "carol")
        try await alice.join("ps")
        try await bob.join("ps", state: ["cursor": 1])
        try await carol.join("ps")
        try await waitUntil("alice sees bob and carol") { alice.members(of: "ps") == [alice.session, bob.session, carol.session] }

        let password = "gap-\(UUID().uuidString.prefix(8))"
        redis.command("CONFIG", "SET", "requirepass", password)
        let auth = ["-a", password, "--no-auth-warning"]
        redis.command(arguments: auth + ["CLIENT", "KILL", "TYPE", "pubsub"])
        for node in [n1, n2] {
            try await waitUntil("\(node.nodeID) not ready while its subscriber is out") { try await node.get("/readyz").status == 503 }
        }
        bob.presence("ps", ["cursor": 2])
        let carolSid = carol.session
        await carol.close()
        try await waitUntil("node 2 wrote both changes to Redis") {
            let entry = redis.command(arguments: auth + ["HGET", "tandem:{ps}:presence:ps-2", bob.session])
            let carolThere = redis.command(arguments: auth + ["HEXISTS", "tandem:{ps}:presence:ps-2", carolSid])
            return entry.contains(#""cursor":2"#) && carolThere == "0"
        }
        #expect((alice.state(of: bob.session, in: "ps")?["cursor"] as? Int) == 1, "node 1 could not have heard of it")

        redis.command(arguments: auth + ["CONFIG", "SET", "requirepass", ""])
        for node in [n1, n2] {
            try await waitUntil("\(node.nodeID) ready again") { try await node.get("/readyz").status == 200 }
        }
        try await waitUntil("alice converges: bob's cursor and carol gone; \(alice.summary())") {
            (alice.state(of: bob.session, in: "ps")?["cursor"] as? Int) == 2
                && alice.members(of: "ps") == [alice.session, bob.session]
        }
        #expect(redis.command("PUBSUB", "NUMSUB", "tandem:{ps}").split(whereSeparator: \.isNewline).last == "2")
        await alice.close()
        await bob.close()
    }
}
