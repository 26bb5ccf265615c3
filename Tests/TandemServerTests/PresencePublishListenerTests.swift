import Foundation
import Testing
@testable import TandemServer
import TandemTestSupport

/// Issue 14, stop 25: a node alone on a doc does not publish its presence writes (it heard every delta of
/// its own back through Redis); the write script publishes only while another subscriber of the doc's
/// channel exists, counted atomically with the write. Two real nodes on one real Redis.
@Suite(.serialized) struct PresencePublishListenerTests {
    /// No periodic reconcile within a test's time: a state that reaches the other node came by pub/sub,
    /// so a skipped publish that was needed shows as a missed update instead of being repaired.
    /// Waits until Redis counts both nodes among the doc channel's subscribers, then until one more of
    /// alice's moves reached bob: from there on no write of alice's node can find itself alone.
    static func bothSubscribed(_ redis: RedisServerProcess, doc: String) async throws {
        try await waitUntil("both nodes subscribed to \(doc)", timeout: .seconds(30)) {
            redis.command("PUBSUB", "NUMSUB", RedisKeys.channel(doc)).split(separator: "\n").last == "2"
        }
    }

    static func noReconcile(_ config: inout ServerConfiguration) {
        config.presenceTTLMs = 10_000
        config.reconcileMs = 600_000
    }

    /// Alone: alice's updates are written but not published. Once bob's node serves the doc, every update
    /// reaches bob (the first one after his `joined` included) and none is skipped. Once bob's node drops
    /// the doc, alice's node is alone again and skips again.
    @Test func aNodeAloneSkipsThePublishAndAJoiningNodeGetsEveryDelta() async throws {
        let redis = try RedisServerProcess()
        let a = try await InProcessNode.start(redis: redis.url, nodeID: "alone-a", configure: Self.noReconcile)
        let b = try await InProcessNode.start(redis: redis.url, nodeID: "alone-b", configure: Self.noReconcile)
        defer { Task { await a.stop(); await b.stop() } }
        let alice = try await TestClient.connect(a.url(user: "alice"), name: "alice")
        try await alice.join("solo", state: ["cursor": 0])

        // Alone: updates go on being skipped (each tick that carries one would have published it).
        var cursor = 0
        try await waitUntil("alice's node skips publishing while alone", timeout: .seconds(30)) {
            cursor += 1
            alice.presence("solo", ["cursor": cursor])
            return try await a.metric("tandem_presence_publish_skipped_total") >= 3
        }

        let bob = try await TestClient.connect(b.url(user: "bob"), name: "bob")
        try await bob.join("solo")
        try await waitUntil("bob lists alice", timeout: .seconds(30)) { bob.members(of: "solo").contains(alice.session) }
        try await Self.bothSubscribed(redis, doc: "solo")
        cursor += 1
        let settled = cursor
        alice.presence("solo", ["cursor": settled])
        try await waitUntil("bob sees alice's cursor at \(settled)", timeout: .seconds(30)) {
            (bob.state(of: alice.session, in: "solo")?["cursor"] as? Int) == settled
        }
        // Every update from here on reaches bob, and none is skipped.
        let skippedWithBob = try await a.metric("tandem_presence_publish_skipped_total")
        for round in 1...5 {
            cursor += 1
            let expected = cursor
            alice.presence("solo", ["cursor": expected])
            try await waitUntil("bob sees alice's cursor at \(expected) (round \(round))", timeout: .seconds(30)) {
                (bob.state(of: alice.session, in: "solo")?["cursor"] as? Int) == expected
            }
        }
        #expect(try await a.metric("tandem_presence_publish_skipped_total") == skippedWithBob)
        // And the other way.
        bob.presence("solo", ["cursor": 99])
        try await waitUntil("alice sees bob's cursor", timeout: .seconds(30)) { (alice.state(of: bob.session, in: "solo")?["cursor"] as? Int) == 99 }

        // Bob leaves; his node drops the doc (and its subscription) once idle: alice's node is alone again.
        await bob.close()
        try await waitUntil("alice's node skips again once bob's node dropped the doc", timeout: .seconds(60)) {
            cursor += 1
            alice.presence("solo", ["cursor": cursor])
            return try await a.metric("tandem_presence_publish_skipped_total") > skippedWithBob
        }
        await alice.close()
    }

    /// A node that has just subscribed to a doc's channel hears the deltas of the node that was alone on
    /// it from its first one on: bob joins while alice moves all the time, and bob's view of alice then
    /// follows every later move. (Without the listener count, alice's node would skip the publishes bob
    /// needs and bob would be left with alice's cursor from his `joined`.)
    @Test func aJoinerFollowsANodeThatWasAloneWhileItKeepsMoving() async throws {
        let redis = try RedisServerProcess()
        let a = try await InProcessNode.start(redis: redis.url, nodeID: "mover-a", configure: Self.noReconcile)
        let b = try await InProcessNode.start(redis: redis.url, nodeID: "mover-b", configure: Self.noReconcile)
        defer { Task { await a.stop(); await b.stop() } }
        let alice = try await TestClient.connect(a.url(user: "alice"), name: "alice")
        try await alice.join("moving", state: ["cursor": 0])
        let bob = try await TestClient.connect(b.url(user: "bob"), name: "bob")
        for round in 1...3 {
            // A fresh doc on bob's node each round: bob joins it while alice keeps moving.
            let doc = "moving-\(round)"
            try await alice.join(doc, state: ["cursor": 0])
            var cursor = 0
            let skippedBefore = try await a.metric("tandem_presence_publish_skipped_total")
            try await waitUntil("alice's node alone on \(doc)", timeout: .seconds(30)) {
                cursor += 1
                alice.presence(doc, ["cursor": cursor])
                return try await a.metric("tandem_presence_publish_skipped_total") > skippedBefore
            }
            try await bob.join(doc)
            try await Self.bothSubscribed(redis, doc: doc)
            let skippedWithBob = try await a.metric("tandem_presence_publish_skipped_total")
            for _ in 1...3 {
                cursor += 1
                let expected = cursor
                alice.presence(doc, ["cursor": expected])
                try await waitUntil("bob follows alice on \(doc) to \(expected)", timeout: .seconds(30)) {
                    (bob.state(of: alice.session, in: doc)?["cursor"] as? Int) == expected
                }
            }
            #expect(try await a.metric("tandem_presence_publish_skipped_total") == skippedWithBob)
        }
        await alice.close()
        await bob.close()
    }

    /// `--presence-always-publish`: the old behaviour, every write with a message publishes it.
    @Test func alwaysPublishPublishesWhileAlone() async throws {
        let redis = try RedisServerProcess()
        let a = try await InProcessNode.start(redis: redis.url, nodeID: "always-a") {
            $0.presenceTTLMs = 10_000
            $0.presenceAlwaysPublish = true
        }
        defer { Task { await a.stop() } }
        let alice = try await TestClient.connect(a.url(user: "alice"), name: "alice")
        try await alice.join("solo", state: ["cursor": 0])
        var cursor = 0
        try await waitUntil("alice's node publishes her updates", timeout: .seconds(30)) {
            cursor += 1
            alice.presence("solo", ["cursor": cursor])
            return try await a.metric("tandem_presence_publish_seconds_count") >= 3
        }
        #expect(try await a.metric("tandem_presence_publish_skipped_total") == 0)
        await alice.close()
    }
}
