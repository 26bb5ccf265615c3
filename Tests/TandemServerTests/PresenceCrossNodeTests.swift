import Foundation
import Testing
import TandemTestSupport

/// Issue 11 item 4: a cursor crossing nodes takes one hop. The receiving node forwards another node's delta
/// to its members when it arrives instead of holding it for its own tick.
@Suite(.serialized) struct PresenceCrossNodeTests {
    /// The receiver ticks once a second (the longest `--tick-ms`), so a delivery that waits for its tick
    /// is one with a tick of the receiver in between. Each round reads the receiver's tick count, moves
    /// the sender's cursor, polls until the receiver's client has it and reads the count again: one round
    /// without a receiver tick in between is impossible unless deltas are forwarded at once. (A round can
    /// straddle a tick by chance — two shards, each ticking once a second — so up to ten rounds are tried.)
    @Test func anotherNodesDeltaReachesMembersBeforeTheReceiversTick() async throws {
        let redis = try RedisServerProcess()
        let sender = try await InProcessNode.start(redis: redis.url, nodeID: "hop-a") {
            $0.presenceTTLMs = 10_000
        }
        let receiver = try await InProcessNode.start(redis: redis.url, nodeID: "hop-b") {
            $0.tickMs = 1_000
            // One pass per tick: the tick metric counts phases, and five of them a second would leave no
            // round without one.
            $0.tickPhases = 1
            $0.presenceTTLMs = 10_000
        }
        defer { Task { await sender.stop(); await receiver.stop() } }
        let alice = try await TestClient.connect(sender.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(receiver.url(user: "bob"), name: "bob")
        try await alice.join("hop", state: ["cursor": 0])
        try await bob.join("hop")
        try await waitUntil("bob lists alice") { bob.members(of: "hop").contains(alice.session) }

        var roundsWithoutTick = 0
        for round in 1...10 {
            let ticksBefore = try await receiver.metric("tandem_presence_tick_seconds_count")
            alice.presence("hop", ["cursor": round])
            try await waitUntil("bob sees alice's cursor at \(round)") {
                (bob.state(of: alice.session, in: "hop")?["cursor"] as? Int) == round
            }
            let ticksAfter = try await receiver.metric("tandem_presence_tick_seconds_count")
            if ticksAfter == ticksBefore {
                roundsWithoutTick += 1
                break
            }
        }
        #expect(roundsWithoutTick == 1, "every cross-node update waited for the receiving node's tick")
        #expect(try await receiver.metric(#"tandem_presence_remote_deltas_total{result="forwarded"}"#) >= 1)
        // The hop the forward added on the receiver (pub/sub arrival → written to bob) was measured.
        #expect(try await receiver.metric("tandem_presence_remote_forward_seconds_count") >= 1)
        // Its first part (pub/sub → the doc's shard), and the sender's side (tick → publishing write's reply).
        #expect(try await receiver.metric("tandem_presence_remote_shard_hop_seconds_count") >= 1)
        #expect(try await sender.metric("tandem_presence_publish_seconds_count") >= 1)
        // The sender's own members are served by its tick as before, and the receiver forwards nothing back
        // to itself: bob's update still reaches alice.
        bob.presence("hop", ["cursor": 99])
        try await waitUntil("alice sees bob's cursor") { (alice.state(of: bob.session, in: "hop")?["cursor"] as? Int) == 99 }
        await alice.close()
        await bob.close()
    }
}
