import Foundation
import TandemCore
@testable import TandemServer
import TandemTestSupport
import Testing

/// Issue 8, stop 26: a node alone on a doc does not publish its group commits (it heard each batch back
/// through Redis only to skip it: a wake-up of its subscriber thread and a message in Redis per batch).
/// The commit script publishes only while another subscriber of the doc's channel exists, counted
/// atomically with the commit (as presence's writes, `PresencePublishListenerTests`). Two real nodes on
/// one real Redis.
@Suite(.serialized) struct SyncPublishListenerTests {
    /// No periodic head check within a test's time: a commit that reaches the other node came by pub/sub,
    /// so a skipped publish that was needed shows as a missing commit instead of being read from the log.
    static func noHeadChecks(_ config: inout ServerConfiguration) {
        config.reconcileMs = 600_000
    }

    /// Alone: alice's commits are written but not published. Once bob's node serves the doc (and Redis
    /// counts its subscription), every commit reaches bob by pub/sub and none is skipped.
    @Test func aNodeAloneSkipsThePublishAndASecondNodeGetsEveryCommit() async throws {
        let redis = try RedisServerProcess()
        let a = try await InProcessNode.start(redis: redis.url, nodeID: "sync-alone-a", configure: Self.noHeadChecks)
        let b = try await InProcessNode.start(redis: redis.url, nodeID: "sync-alone-b", configure: Self.noHeadChecks)
        defer { Task { await a.stop(); await b.stop() } }
        let doc = "sync-solo"
        let alice = try await SyncClient.connect(a.url(user: "alice"), name: "alice")
        try await alice.join(doc)
        // The node's own subscription confirmed first: until then it counts none of the subscribers as its own.
        try await waitUntil("alice's node subscribed to \(doc)", timeout: .seconds(30)) {
            redis.command("PUBSUB", "NUMSUB", RedisKeys.channel(doc)).split(separator: "\n").last == "1"
        }
        var clock: UInt64 = 0
        for id in 1...3 {
            alice.push(doc, id: id, ops: #"{"n":["put",{"v":\#(id)}]}"#)
            clock = try #require(try await alice.answer(doc, id: id).clock())
        }
        // Alone: each batch after the subscription was confirmed skipped its message.
        try await waitUntil("alice's node skips publishing while alone", timeout: .seconds(30)) {
            try await a.metric("tandem_sync_publish_skipped_total") >= 1
        }

        let bob = try await SyncClient.connect(b.url(user: "bob"), name: "bob")
        try await bob.join(doc)
        try await bob.waitHead(doc, clock)
        try await waitUntil("both nodes subscribed to \(doc)", timeout: .seconds(30)) {
            redis.command("PUBSUB", "NUMSUB", RedisKeys.channel(doc)).split(separator: "\n").last == "2"
        }
        let skippedWithBob = try await a.metric("tandem_sync_publish_skipped_total")
        for id in 4...8 {
            alice.push(doc, id: id, ops: #"{"n":["put",{"v":\#(id)}]}"#)
            let committed = try #require(try await alice.answer(doc, id: id).clock())
            // Bob hears it by pub/sub: with no head check, nothing else would bring it.
            try await bob.waitHead(doc, committed, timeout: .seconds(30))
        }
        #expect(try await a.metric("tandem_sync_publish_skipped_total") == skippedWithBob)
        #expect(bob.view(doc).records["n"] == alice.view(doc).records["n"])
        #expect(bob.orderingViolations().isEmpty)
        await alice.socket.close()
        await bob.socket.close()
    }
}
