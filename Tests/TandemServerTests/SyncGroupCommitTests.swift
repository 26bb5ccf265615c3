import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Group commit end to end (issue 8): the pushes waiting in a doc are committed together, answered one
/// per commit in clock order, applied in order by the other nodes; a batch that lost the race for its
/// records is decided again, never half-applied; a push that would wait too long is refused at once
/// with `retryAfterMs`.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct SyncGroupCommitTests {
    /// While one batch is in Redis, everything else queues; it goes as one batch: consecutive clocks,
    /// one log entry, each pusher answered at its clock, the other node's clients get every commit as a
    /// patch in clock order.
    /// (One batch in Redis at a time, `--max-batches-in-flight 1`: `PushPipelineChainTests` and
    /// `GroupCommitScriptTests` cover the batches pipelined behind another.)
    @Test func aBatchIsCommittedAndAnsweredInClockOrderAcrossTwoNodes() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) { $0.maxBatchesInFlight = 1 }
        let doc = "group:order"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 0)
        let carol = try await cluster.client("carol", node: 1)
        let dave = try await cluster.client("dave", node: 1)
        for client in [alice, bob, carol, dave] { try await client.join(doc) }
        dave.push(doc, id: 0, ops: #"{"shared":["put",{}]}"#)
        #expect(try await dave.answer(doc, id: 0).string("action") == "commit")
        for client in [alice, bob, carol] { try await client.waitHead(doc, 1) }
        let node = cluster.nodes[0]
        let batchesBefore = try await node.metric("tandem_sync_batches_total")
        let sizesBefore = try await node.metric("tandem_sync_batch_size_sum")

        // Redis frozen: alice's first push is in Redis alone, the rest of node-0's pushes queue behind it.
        cluster.redis.pause()
        alice.push(doc, id: 0, ops: #"{"a0":["put",{"k":0}]}"#)
        try await waitUntil("alice's first push in Redis") { try await node.metric("tandem_sync_batches_total") == batchesBefore + 1 }
        for k in 1...6 {
            alice.push(doc, id: k, ops: #"{"a\#(k)":["put",{"k":\#(k)}],"shared":["patch",{"alice":["put",\#(k)]}]}"#)
            bob.push(doc, id: k, ops: #"{"b\#(k)":["put",{"k":\#(k)}],"shared":["patch",{"bob":["put",\#(k)]}]}"#)
        }
        // Node-1 has its own batch in Redis meanwhile.
        carol.push(doc, id: 1, ops: #"{"c1":["put",{}]}"#)
        try await waitUntil("twelve pushes queued on node-0") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 12 }
        cluster.redis.resume()

        var aliceClocks: [UInt64] = []
        var bobClocks: [UInt64] = []
        for k in 0...6 {
            let answer = try await alice.answer(doc, id: k)
            #expect(answer.string("action") == "commit", "alice \(k): \(answer)")
            aliceClocks.append(answer.clock() ?? 0)
        }
        for k in 1...6 {
            let answer = try await bob.answer(doc, id: k)
            #expect(answer.string("action") == "commit", "bob \(k): \(answer)")
            bobClocks.append(answer.clock() ?? 0)
        }
        #expect(try await carol.answer(doc, id: 1).string("action") == "commit")
        #expect(aliceClocks == aliceClocks.sorted() && Set(aliceClocks).count == 7, "in the order pushed: \(aliceClocks)")
        #expect(bobClocks == bobClocks.sorted() && Set(bobClocks).count == 6, "\(bobClocks)")
        // The twelve queued pushes went as one group commit: twelve consecutive clocks, one log entry.
        let queued = (aliceClocks.dropFirst() + bobClocks).sorted()
        #expect(queued == Array(queued[0]...(queued[0] + 11)), "consecutive clocks: \(queued)")
        #expect(try await node.metric("tandem_sync_batches_total") == batchesBefore + 2)
        #expect(try await node.metric("tandem_sync_batch_size_sum") == sizesBefore + 13)
        let entry = cluster.redis.command("XRANGE", SyncRedis.key(doc, "log"), "\(queued[11])-0", "\(queued[11])-0")
        #expect(entry.split(separator: "\n").dropFirst().first == "n", "one batch entry, id = its last clock: \(entry.prefix(200))")

        // Everyone, on both nodes, has every clock once and in order (checked by `finish`), and the state.
        try await cluster.waitConverged(doc)
        #expect(SyncRedis.head(cluster.redis, doc) == 15)
        for client in [alice, bob, carol, dave] { cluster.expectRecordsEqualRedis(client, doc) }
        #expect(dave.view(doc).liveClocks == Array(1...15), "node-1 applied node-0's batch in order: \(dave.view(doc).liveClocks)")
        #expect(SyncRedis.pushesCommittedTwice(cluster.redis, doc) == [])
        await cluster.finish()
    }

    /// Two nodes push to the same records in bursts: batches lose the race for them in Redis (the script
    /// writes nothing) and are decided again against the state that won. Every edit ends up applied
    /// exactly once — none lost, none applied twice, no batch half-applied — and every push is answered.
    @Test func aBatchThatLostTheRaceIsDecidedAgainNeverHalfApplied() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "group:race"
        let writers = [
            try await cluster.client("w0", node: 0), try await cluster.client("w1", node: 0),
            try await cluster.client("w2", node: 1), try await cluster.client("w3", node: 1),
        ]
        for writer in writers { try await writer.join(doc) }
        writers[0].push(doc, id: 0, ops: #"{"text":["put",{"body":""}]}"#)
        #expect(try await writers[0].answer(doc, id: 0).string("action") == "commit")
        for writer in writers { try await writer.waitHead(doc, 1) }

        func lostRaces() async throws -> Double {
            var total = 0.0
            for node in cluster.nodes { total += try await node.metric("tandem_sync_lost_races_total") }
            return total
        }
        let lostBefore = try await lostRaces()
        var markers: [String] = []
        var round = 0
        // Rounds of bursts until batches have lost races (almost always the first round).
        while try await lostRaces() == lostBefore, round < 8 {
            round += 1
            for (w, writer) in writers.enumerated() {
                for k in 1...20 {
                    let id = round * 100 + k
                    let marker = "<\(w).\(id)>"
                    markers.append(marker)
                    // Each append at the offset the writer knows (stale as soon as another append lands: a
                    // rebase), plus a put of the writer's own record in the same push.
                    let offset = writer.view(doc).records["text"]?.objectValue?["body"]?.stringValue?.utf16.count ?? 0
                    writer.push(doc, id: id, ops: #"{"text":["patch",{"body":["append","\#(marker)",\#(offset)]}],"own\#(w)":["put",{"last":\#(id)}]}"#)
                }
            }
            for (w, writer) in writers.enumerated() {
                for k in 1...20 {
                    let id = round * 100 + k
                    var answer = try await writer.answer(doc, id: id)
                    if answer.string("code") == "unavailable" {
                        // Refused (lost too many races, or busy): not applied; pushed again as a client would.
                        let marker = "<\(w).\(id)>"
                        let offset = writer.view(doc).records["text"]?.objectValue?["body"]?.stringValue?.utf16.count ?? 0
                        answer = try await writer.pushUntilAnswered(doc, id: .number(id), ops: json(
                            #"{"text":["patch",{"body":["append","\#(marker)",\#(offset)]}],"own\#(w)":["put",{"last":\#(id)}]}"#))
                    }
                    #expect(["commit", "rebase"].contains(answer.string("action")), "w\(w) push \(id): \(answer)")
                }
            }
        }
        #expect(try await lostRaces() > lostBefore, "batches lost races in \(round) rounds")
        try await cluster.waitConverged(doc)

        let body = try #require(writers[0].view(doc).records["text"]?.objectValue?["body"]?.stringValue)
        let wrong = markers.filter { body.components(separatedBy: $0).count - 1 != 1 }
        #expect(wrong.isEmpty, "markers not applied exactly once: \(wrong.prefix(10)) of \(wrong.count)")
        #expect(SyncRedis.pushesCommittedTwice(cluster.redis, doc) == [])
        for writer in writers { cluster.expectRecordsEqualRedis(writer, doc) }
        await cluster.finish()
    }

    /// Admission by waiting time over a real socket: once the node has measured slow commits, a push that
    /// would wait longer than `--max-push-wait-ms` is refused at once — `unavailable` with `retryAfterMs`,
    /// nothing applied — while the push ahead of it commits. After the hint, the push goes through.
    @Test func aPushThatWouldWaitTooLongIsRefusedWithRetryAfterMs() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) { $0.maxPushWaitMs = 50 }
        let doc = "group:busy"
        let node = cluster.nodes[0]
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        let refusalsBefore = try await node.metric(#"tandem_sync_overload_refusals_total{reason="wait"}"#)
        let hintsBefore = try await node.metric("tandem_sync_retry_after_seconds_count")

        // A slow commit (Redis frozen for most of a second) teaches the node that a round trip is slow.
        cluster.redis.pause()
        alice.push(doc, id: 1, ops: #"{"a":["put",{}]}"#)
        try await Task.sleep(for: .milliseconds(800))
        cluster.redis.resume()
        #expect(try await alice.answer(doc, id: 1).string("action") == "commit")

        // One push in Redis (a push with nothing ahead is always taken); the next would wait for it and
        // its own round trip, well over 50 ms: refused at once, while Redis is still frozen.
        cluster.redis.pause()
        alice.push(doc, id: 2, ops: #"{"b":["put",{}]}"#)
        alice.push(doc, id: 3, ops: #"{"c":["put",{}]}"#)
        let refused = try await alice.answer(doc, id: 3)
        cluster.redis.resume()
        #expect(refused.string("t") == "error")
        #expect(refused.string("code") == "unavailable", "\(refused)")
        #expect(refused.string("doc") == doc)
        #expect(refused["id"] == .number(3))
        let retryAfterMs = try #require(refused["retryAfterMs"]?.uint64Value, "a retry hint: \(refused)")
        #expect(retryAfterMs >= 1 && retryAfterMs <= 30_000)
        #expect(refused.string("message")?.contains("busy") == true, "\(refused)")
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")
        #expect(try await node.metric(#"tandem_sync_overload_refusals_total{reason="wait"}"#) == refusalsBefore + 1)
        #expect(try await node.metric(#"tandem_sync_overload_refusals_total{reason="queue_full"}"#) == 0)
        #expect(try await node.metric("tandem_sync_retry_after_seconds_count") == hintsBefore + 1)
        #expect(try await node.metric("tandem_sync_retry_after_seconds_sum") >= Double(retryAfterMs) / 1000 - 0.0005)
        #expect(try await node.metric(#"tandem_sync_pushes_total{action="error"}"#) >= 1)
        #expect(try await node.metric("tandem_sync_push_wait_estimate_seconds_count") >= 3)
        #expect(SyncRedis.records(cluster.redis, doc)["c"] == nil, "the refused push was not applied")

        // As told: after retryAfterMs the push is taken (nothing ahead of it now).
        try await Task.sleep(for: .milliseconds(Int64(retryAfterMs)))
        let again = try await alice.pushUntilAnswered(doc, id: .number(3), ops: json(#"{"c":["put",{}]}"#))
        #expect(again.string("action") == "commit", "\(again)")
        try await cluster.waitConverged(doc)
        cluster.expectRecordsEqualRedis(alice, doc)
        await cluster.finish()
    }

    /// `--max-queued-pushes` stays as a hard memory bound: beyond it pushes are refused at once with a
    /// retry hint, whatever the wait estimate says.
    @Test func theQueueBoundRefusesWithRetryAfterMsToo() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxQueuedPushes = 2
            $0.maxBatchesInFlight = 1  // (the first push alone in Redis, the next two queued)
        }
        let doc = "group:full"
        let node = cluster.nodes[0]
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        cluster.redis.pause()
        for k in 1...4 { alice.push(doc, id: k, ops: #"{"q\#(k)":["put",{}]}"#) }
        let refused = try await alice.answer(doc, id: 4)
        cluster.redis.resume()
        #expect(refused.string("code") == "unavailable")
        #expect(refused["retryAfterMs"]?.uint64Value != nil, "\(refused)")
        #expect(refused.string("message")?.contains("queued") == true, "\(refused)")
        #expect(try await node.metric(#"tandem_sync_overload_refusals_total{reason="queue_full"}"#) == 1)
        #expect(try await node.metric("tandem_sync_retry_after_seconds_count") == 1)
        for k in 1...3 { #expect(try await alice.answer(doc, id: k).string("action") == "commit") }
        await cluster.finish()
    }
}
