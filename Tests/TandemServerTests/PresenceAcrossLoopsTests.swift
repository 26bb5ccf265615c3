import Foundation
import TandemTestSupport
@testable import TandemServer
import Testing

/// Issue 14: presence read on one event loop for a doc whose shard runs on another loop hops to it, and must
/// stay in order with the connection's other messages and under the doc's rate limits. (A batched hand-off
/// per round of the loop was tried and taken out: no gain in a quiet A/B, see docs/benchmarks.md; these
/// tests hold for any way of crossing loops.)
/// A real node (two loops, real Redis, real sockets); each client is in two docs owned by different
/// shards, so whichever loop its connection is on, one of its docs is on the other loop.
@Suite(.serialized, .cleanup) struct PresenceAcrossLoopsTests {
    /// Two doc ids that a two-loop node places on different shards (`DocShards.shard(for:)`'s FNV-1a).
    static func docsOnBothShards(_ prefix: String) -> (String, String) {
        func shardIndex(_ doc: String) -> UInt64 {
            var hash = DocShards.fnvOffsetBasis
            for byte in doc.utf8 {
                hash ^= UInt64(byte)
                hash &*= DocShards.fnvPrime
            }
            return hash % 2
        }
        let first = "\(prefix)-0"
        let second = (1...).lazy.map { "\(prefix)-\($0)" }.first { shardIndex($0) != shardIndex(first) }!
        return (first, second)
    }

    /// Each writer sends, as fast as it can, rounds of: join A (with a state), an update of A, an update of
    /// B (the other shard), leave A. The shard of A must see each writer's update before its leave (and
    /// after its join), however the update crossed loops: every update is accepted, none is
    /// refused as not joined, and the watcher ends with each writer's last state of B and no writer in A.
    @Test func eachConnectionsPresenceStaysInOrderWithItsOtherMessagesAcrossLoops() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "handoff-order", stopWhenDone: true) {
            $0.presenceRate = 10_000
            $0.presenceBurst = 10_000
            $0.maxDocJoinsPerSecond = 10_000
        }
        let (a, b) = Self.docsOnBothShards("order")
        let watcher = try await TestClient.connect(node.url(user: "watcher"), name: "watcher")
        try await watcher.join(a)
        try await watcher.join(b)
        var writers: [TestClient] = []
        for index in 0..<4 {
            let writer = try await TestClient.connect(node.url(user: "w\(index)"), name: "w\(index)")
            try await writer.join(b, state: ["round": 0])
            writers.append(writer)
        }
        let sessions = writers.map(\.session)
        try await waitUntil("the watcher sees every writer in \(b)") { Set(sessions).isSubset(of: watcher.members(of: b)) }
        let accepted0 = try await node.value(#"tandem_presence_updates_total{result="accepted"}"#)
        let notJoined0 = try await node.value(#"tandem_presence_updates_total{result="not_joined"}"#)

        let rounds = 12
        for round in 1...rounds {
            for writer in writers {
                writer.sendRaw(#"{"t":"join","doc":"\#(a)","state":{"round":\#(round),"step":0}}"#)
                writer.sendRaw(#"{"t":"presence","doc":"\#(a)","state":{"round":\#(round),"step":1}}"#)
                writer.sendRaw(#"{"t":"presence","doc":"\#(b)","state":{"round":\#(round)}}"#)
                writer.sendRaw(#"{"t":"leave","doc":"\#(a)"}"#)
            }
        }
        let expected = Double(writers.count * rounds * 2)
        try await waitUntil("every update counted (\(expected))", timeout: .seconds(30)) {
            let accepted = try await node.value(#"tandem_presence_updates_total{result="accepted"}"#) - accepted0
            let notJoined = try await node.value(#"tandem_presence_updates_total{result="not_joined"}"#) - notJoined0
            return accepted + notJoined >= expected
        }
        #expect(try await node.value(#"tandem_presence_updates_total{result="not_joined"}"#) == notJoined0)
        #expect(try await node.value(#"tandem_presence_updates_total{result="accepted"}"#) - accepted0 == expected)
        try await waitUntil("the watcher has every writer's last state of \(b), and no writer in \(a)", timeout: .seconds(30)) {
            sessions.allSatisfy { watcher.state(of: $0, in: b)?["round"] as? Int == rounds }
                && watcher.members(of: a).isDisjoint(with: sessions)
        }
        for writer in writers {
            #expect(writer.errors("not_joined").isEmpty, "\(writer.summary())")
            #expect(writer.all("left").count == rounds)
        }
    }

    /// A writer floods two docs on different shards at once, over the presence rate: each doc limits it on
    /// its own shard (every update is accepted or rate-limited, the accepted ones stay near the rate, the
    /// last state of each doc arrives), and the writer hears `rate_limited` for each doc, at most about
    /// once a second per doc, whichever loop the notice came from.
    @Test func theRateLimitHoldsForPresenceFromAnotherLoop() async throws {
        let redis = try RedisServerProcess()
        let rate = 10
        let burst = 5
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "handoff-rate", stopWhenDone: true) {
            $0.presenceRate = rate
            $0.presenceBurst = burst
        }
        let (a, b) = Self.docsOnBothShards("rate")
        let watcher = try await TestClient.connect(node.url(user: "watcher"), name: "watcher")
        try await watcher.join(a)
        try await watcher.join(b)
        // Two writers, so that (connections going to the loops in turn) the flood of one doc comes from
        // another loop for one of them, the other's for the other.
        var writers: [TestClient] = []
        for index in 0..<2 {
            let writer = try await TestClient.connect(node.url(user: "w\(index)"), name: "w\(index)")
            try await writer.join(a, state: ["seq": 0])
            try await writer.join(b, state: ["seq": 0])
            writers.append(writer)
        }
        let sessions = writers.map(\.session)
        try await waitUntil("the watcher sees the writers") {
            Set(sessions).isSubset(of: watcher.members(of: a)) && Set(sessions).isSubset(of: watcher.members(of: b))
        }
        let accepted0 = try await node.value(#"tandem_presence_updates_total{result="accepted"}"#)
        let limited0 = try await node.value(#"tandem_presence_updates_total{result="rate_limited"}"#)
        let clock = ContinuousClock()
        let started = clock.now
        let perDoc = 200
        // 200 updates per doc per writer over about a second, alternating docs (the writer's messages switch
        // shards at every frame).
        for seq in 1...perDoc {
            for writer in writers {
                writer.sendRaw(#"{"t":"presence","doc":"\#(a)","state":{"seq":\#(seq)}}"#)
                writer.sendRaw(#"{"t":"presence","doc":"\#(b)","state":{"seq":\#(seq)}}"#)
            }
            if seq % 20 == 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        let sent = Double(writers.count * perDoc * 2)
        try await waitUntil("the watcher gets each writer's last state of both docs", timeout: .seconds(30)) {
            sessions.allSatisfy { sid in
                watcher.state(of: sid, in: a)?["seq"] as? Int == perDoc && watcher.state(of: sid, in: b)?["seq"] as? Int == perDoc
            }
        }
        let seconds = (clock.now - started).seconds
        try await waitUntil("every update has an outcome") {
            let accepted = try await node.value(#"tandem_presence_updates_total{result="accepted"}"#) - accepted0
            let limited = try await node.value(#"tandem_presence_updates_total{result="rate_limited"}"#) - limited0
            return accepted + limited >= sent
        }
        let accepted = try await node.value(#"tandem_presence_updates_total{result="accepted"}"#) - accepted0
        let limited = try await node.value(#"tandem_presence_updates_total{result="rate_limited"}"#) - limited0
        #expect(accepted + limited == sent)
        // Per (writer, doc): the burst, the rate over the time it took, and the deferred latest states.
        let bound = Double(writers.count * 2) * (Double(burst) + Double(rate) * (seconds + 0.5) + 3)
        #expect(accepted <= bound, "accepted \(accepted) of \(sent) in \(seconds) s; bound \(bound)")
        #expect(limited >= sent - bound)
        for writer in writers {
            let hints = writer.errors("rate_limited")
            for doc in [a, b] {
                let forDoc = hints.filter { JSON.string($0, at: "doc") == doc }.count
                #expect(forDoc >= 1 && Double(forDoc) <= seconds + 2, "\(forDoc) rate_limited hints for \(doc) in \(seconds) s")
            }
        }
    }
}
