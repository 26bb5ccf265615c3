import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Redis unavailable: pushes are refused with `unavailable` (never acknowledged, never silently lost or
/// applied), and once Redis is back re-pushed edits commit, or are recognised as already committed.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncUnavailableTests {
    @Test func pushesWhileRedisIsDownAreRefusedAndCommitWhenItIsBack() async throws {
        // AOF on, so the restarted server still has the doc.
        let cluster = try await SyncCluster.start(nodes: 1, redisArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let redis = cluster.redis
        let node = cluster.nodes[0]
        let doc = "unavailable:down"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.push(doc, id: 1, ops: #"{"r":["put",{"v":1}]}"#)
        #expect(try await alice.answer(doc, id: 1).clock() == 1)

        redis.stop()
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"v":["put",2]}],"s":["put",{"new":true}]}"#)
        let refused = try await alice.answer(doc, id: 2)
        #expect(refused.string("t") == "error")
        #expect(refused.string("code") == "unavailable")
        #expect(refused["id"] == .number(2))
        #expect(refused.string("doc") == doc)
        try await waitUntil("node not ready without Redis") { (try? await node.get("/readyz").status) == 503 }
        alice.push(doc, id: 3, ops: #"{"t":["put",{}]}"#)
        #expect(try await alice.answer(doc, id: 3).string("code") == "unavailable")

        // A client joining a doc the node has not loaded: joined without a clock; its push is refused too.
        let bob = try await cluster.client("bob")
        try await bob.join("unavailable:other", waitForSync: false)
        let joined = try await bob.socket.next("joined", doc: "unavailable:other")
        #expect(JSON.value(joined, at: "clock") == nil, "no clock while the doc cannot be read: \(joined)")
        bob.push("unavailable:other", id: 1, ops: #"{"x":["put",{}]}"#)
        let bobRefused = try await bob.answer("unavailable:other", id: 1, timeout: .seconds(10))
        #expect(bobRefused.string("code") == "unavailable", "a push to a doc that cannot be loaded: \(bobRefused)")

        try redis.start()
        try await waitUntil("node ready again") { (try? await node.get("/readyz").status) == 200 }
        #expect(SyncRedis.head(redis, doc) == 1, "nothing of the refused pushes was applied")
        #expect(SyncRedis.records(redis, doc) == ["r": #"{"v":1}"#])

        // Pushed again, they commit (in order, right after clock 1).
        let again = try await alice.pushUntilAnswered(doc, id: .number(2), ops: json(#"{"r":["patch",{"v":["put",2]}],"s":["put",{"new":true}]}"#))
        #expect(again.string("action") == "commit" && again.clock() == 2, "\(again)")
        #expect(try await alice.pushUntilAnswered(doc, id: .number(3), ops: json(#"{"t":["put",{}]}"#)).clock() == 3)
        // Bob's doc loads and catches up as soon as Redis is back.
        try await bob.waitSynced("unavailable:other")
        let bobAgain = try await bob.pushUntilAnswered("unavailable:other", id: .number(1), ops: json(#"{"x":["put",{}]}"#))
        #expect(bobAgain.string("action") == "commit")

        cluster.expectRecordsEqualRedis(alice, doc)
        cluster.expectRecordsEqualRedis(bob, "unavailable:other")
        await cluster.finish()
    }

    /// Redis stops answering with the push in flight: the node gives up after its command timeout and
    /// answers `unavailable`; the write then executes when Redis wakes up. The re-push is recognised
    /// (`duplicate`) and the commit reaches the client as a patch with its own `by` and `id`.
    @Test func aCommitThatExecutedAfterTheNodeGaveUpIsRecognisedOnRePush() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let redis = cluster.redis
        let doc = "unavailable:hung"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.push(doc, id: 1, ops: #"{"r":["put",{"text":"a"}]}"#)
        #expect(try await alice.answer(doc, id: 1).clock() == 1)

        redis.pause()
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"text":["append","b",1]}]}"#)
        let refused = try await alice.answer(doc, id: 2, timeout: .seconds(20))
        #expect(refused.string("code") == "unavailable", "\(refused)")
        redis.resume()

        try await alice.waitHead(doc, 2, timeout: .seconds(20))
        let patch = try #require(alice.view(doc).ownPatches.first)
        #expect(patch.clock() == 2)
        #expect(patch.string("by") == alice.session)
        #expect(patch["id"] == .number(2), "the commit names the push, so the client can tell it was applied: \(patch)")

        // (The node's command connection may still be reconnecting: `unavailable` again means retry.)
        let duplicate = try await alice.pushUntilAnswered(doc, id: .number(2), ops: json(#"{"r":["patch",{"text":["append","b",1]}]}"#))
        #expect(duplicate.string("action") == "discard", "\(duplicate)")
        #expect(duplicate.string("reason") == "duplicate")
        #expect(SyncRedis.head(redis, doc) == 2)
        #expect(SyncRedis.records(redis, doc) == ["r": #"{"text":"ab"}"#], "applied once")
        cluster.expectRecordsEqualRedis(alice, doc)
        await cluster.finish()
    }

    /// A session resumed on another node while Redis is down keeps its doc when Redis returns (the old
    /// node's rewrite of its stale, detached copy must not count as a takeover of the live one).
    @Test func aSessionResumedElsewhereDuringAnOutageKeepsItsDoc() async throws {
        let cluster = try await SyncCluster.start(nodes: 2, redisArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let doc = "unavailable:resume"
        // alice's session starts on node-1 and moves to node-0. Without Redis a node grants a resume only
        // of a session it knows to be the user's (issue 7): node-1 knows this one, so alice can come back
        // to it during the outage.
        let alice = try await cluster.client("alice", node: 1)
        let session = alice.session
        alice.socket.abort()
        try await alice.reconnect(cluster.nodes[0].url(user: "alice", query: "resume=\(session)"))
        #expect(alice.session == session)
        let bob = try await cluster.client("bob", node: 0)
        let carol = try await cluster.client("carol", node: 1)
        for client in [alice, bob, carol] { try await client.join(doc) }

        cluster.redis.stop()
        alice.socket.abort()
        try await alice.reconnect(cluster.nodes[1].url(user: "alice", query: "resume=\(session)"))
        #expect(alice.session == session)
        try await alice.join(doc, since: alice.view(doc).head)
        try cluster.redis.start()
        for node in cluster.nodes {
            try await waitUntil("\(node.nodeID) ready again") { (try? await node.get("/readyz").status) == 200 }
        }
        // Both nodes rewrite their presence (node-0 with bob, and its stale copy of alice) and publish it.
        try await waitUntil("both nodes' presence back in Redis") {
            cluster.redis.command("HEXISTS", "tandem:{\(doc)}:presence:node-0", bob.session) == "1"
                && cluster.redis.command("HEXISTS", "tandem:{\(doc)}:presence:node-1", session) == "1"
        }
        // A commit published after those rewrites reaches node-1 after them, so once carol has it node-1
        // has handled node-0's stale copy of alice.
        let marker = try await carol.pushUntilAnswered(doc, id: .number(1), ops: json(#"{"m":["put",{}]}"#))
        #expect(marker.string("action") == "commit")
        let answer = try await alice.pushUntilAnswered(doc, id: .number(1), ops: json(#"{"a":["put",{}]}"#))
        #expect(answer.string("action") == "commit", "\(answer)")
        let errors = alice.socket.rawMessages.filter { $0.contains(#""t":"error""#) && !$0.contains("unavailable") }
        #expect(errors.isEmpty, "\(errors)")
        try await carol.waitHead(doc, 2)
        try await waitUntil("node-0 dropped its stale copy of alice") {
            cluster.redis.command("HEXISTS", "tandem:{\(doc)}:presence:node-0", session) == "0"
        }
        await cluster.finish()
    }

    /// A catch-up that must be read from the Redis log while Redis is down falls back to a snapshot from
    /// the node's replica (it used to retry the read recursively until the node crashed).
    @Test func aLogCatchUpWhileRedisIsDownFallsBackToASnapshot() async throws {
        let cluster = try await SyncCluster.start(nodes: 2, redisArguments: ["--appendonly", "yes"])
        let doc = "unavailable:catchup"
        let alice = try await cluster.client("alice", node: 0)
        try await alice.join(doc)
        for k in 1...10 { alice.push(doc, id: k, ops: #"{"r\#(k % 3)":["put",{"k":\#(k)}]}"#) }
        #expect(try await alice.answer(doc, id: 10).clock() == 10)
        // node-1 loads the doc after those commits: it holds the records, not the log.
        let bob = try await cluster.client("bob", node: 1)
        try await bob.join(doc)
        cluster.redis.stop()

        let carol = try await cluster.client("carol", node: 1)
        try await carol.join(doc, since: 5)
        #expect(carol.view(doc).chunks.map(\.type) == ["snapshot"])
        #expect(carol.view(doc).head == 10)
        #expect(carol.view(doc).serializedRecords == alice.view(doc).serializedRecords)
        #expect(try await cluster.nodes[1].get("/healthz").status == 200)

        try cluster.redis.start()
        let answer = try await carol.pushUntilAnswered(doc, id: .number(1), ops: json(#"{"c":["put",{}]}"#))
        #expect(answer.clock() == 11)
        try await cluster.waitConverged(doc)
        for client in [alice, bob, carol] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }
}
