import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Redis lost acknowledged commits (issue 8): after a failover to a replica that had not received them, or
/// a restore from an older snapshot, a doc's head in Redis is lower than what the nodes delivered. Here the
/// doc's keys are rewritten behind Tandem's back to an older state, on a real Redis with two nodes: both
/// nodes notice (at their periodic head check, or when a commit contradicts what they delivered), count
/// it, reload the doc and restart their members from what Redis holds; editing goes on from there and
/// everyone converges.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct SyncClockRegressionTests {
    @Test func aDocWhoseClockWentBackInRedisIsReloadedAndItsClientsConverge() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) { $0.reconcileMs = 300 }
        let doc = "regress:doc"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        for client in [alice, bob] {
            try await client.join(doc)
            client.acceptRestart(doc)
        }
        for id in 1...3 {
            alice.push(doc, id: id, ops: #"{"kept\#(id)":["put",{"n":\#(id)}]}"#)
            try await alice.answer(doc, id: .number(id))
        }
        try await cluster.waitConverged(doc)

        // The state Redis will go back to: a copy of every key of the doc at clock 3.
        let keys = cluster.redis.command("KEYS", "tandem:{\(doc)}:*").split(separator: "\n").map(String.init)
        #expect(keys.contains(SyncRedis.key(doc, "clock")))
        for key in keys { cluster.redis.command("COPY", key, "backup:" + key) }

        for id in 4...6 {
            alice.push(doc, id: id, ops: #"{"lost\#(id)":["put",{"n":\#(id)}]}"#)
            try await alice.answer(doc, id: .number(id))
        }
        try await cluster.waitConverged(doc)
        #expect(bob.view(doc).head == 6)

        // Behind Tandem's back: the doc as it was at clock 3 (what a replica promoted without 4…6 holds).
        // In one script, so no node reads a half-restored doc.
        let restore = """
            for _, key in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', key) end
            for i = 2, #ARGV do redis.call('COPY', 'backup:' .. ARGV[i], ARGV[i]) end
            return redis.call('GET', ARGV[2])
            """
        let restoredClockKey = SyncRedis.key(doc, "clock")
        let ordered = [restoredClockKey] + keys.filter { $0 != restoredClockKey }
        #expect(cluster.redis.command(arguments: ["EVAL", restore, "0", "tandem:{\(doc)}:*"] + ordered) == "3")
        #expect(SyncRedis.head(cluster.redis, doc) == 3)

        // Node 1 finds out at its head check: bob restarts from a snapshot at 3 (without lost4…6).
        try await waitUntil("bob restarted at Redis's head") { bob.view(doc).restarts >= 1 && bob.view(doc).head == 3 }
        #expect(try await cluster.nodes[1].metric("tandem_sync_clock_regressions_total") >= 1)
        cluster.expectRecordsEqualRedis(bob, doc)
        #expect(bob.view(doc).records["lost4"] == nil)

        // Editing goes on from what Redis holds, and everyone converges on it.
        bob.push(doc, id: 1, ops: #"{"after":["put",{"by":"bob"}]}"#)
        let answer = try await bob.answer(doc, id: .number(1))
        #expect(answer.string("action") == "commit", "\(answer)")
        #expect(answer.clock() == 4)
        try await waitUntil("alice restarted") { alice.view(doc).restarts >= 1 }
        #expect(try await cluster.nodes[0].metric("tandem_sync_clock_regressions_total") >= 1)
        let later = try await alice.pushUntilAnswered(doc, id: .number(7), ops: json(#"{"later":["put",{"by":"alice"}]}"#))
        #expect(later.string("t") == "result", "\(later)")
        try await cluster.waitConverged(doc)
        for client in [alice, bob] {
            cluster.expectRecordsEqualRedis(client, doc)
            #expect(client.view(doc).records["after"] != nil)
            #expect(client.view(doc).records["later"] != nil)
            #expect(client.view(doc).records["lost5"] == nil)
        }
        await cluster.finish()
    }
}
