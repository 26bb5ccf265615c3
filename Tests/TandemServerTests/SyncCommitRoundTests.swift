import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
@testable import TandemServer
import TandemTestSupport
import Testing

/// Commit rounds end to end (issue 8, stop 30; `CommitRound`): the group commits a shard decides in one
/// pass of its loop go to Redis as one call, and each doc is still answered at its own clocks, applied
/// once, in order, as if it had been committed alone.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct SyncCommitRoundTests {
    /// Redis paused while every doc has a push in Redis and one more queued: when Redis comes back, the
    /// replies arrive together, and the docs' next batches, decided in the same pass of the loop, share
    /// a round. Every push is answered `commit` at consecutive clocks of its doc, and the docs converge
    /// with Redis with nothing committed twice.
    @Test func docsDecidedInOneLoopPassShareARoundAndEachIsAnsweredAsAlone() async throws {
        try await roundsOfDocsDecidedInOnePass(maxDocs: nil)
    }

    /// `--commit-round-max-docs` bounds a round: with 2, the eight docs decided in one pass go in rounds
    /// of at most two (a flood of pushes over many docs never makes one long script call).
    @Test func aRoundHoldsAtMostCommitRoundMaxDocs() async throws {
        try await roundsOfDocsDecidedInOnePass(maxDocs: 2)
    }

    /// The same with every round formed in a commit's reply sent at the loop's next tick (`LoopDoorbell`; in
    /// production only while the loop lags ≥ 1 ms): the docs' next batches, decided in the replies' pass, go
    /// together when the doorbell answers, each answered as alone.
    @Test func roundsFormedInRepliesGoAtTheDoorbell() async throws {
        try await roundsOfDocsDecidedInOnePass(maxDocs: nil, doorbellAlways: true)
    }

    /// Full rounds formed in a reply wait for the doorbell too (`CommitRound.ready`), in order, capped.
    @Test func fullRoundsFormedInRepliesGoAtTheDoorbell() async throws {
        try await roundsOfDocsDecidedInOnePass(maxDocs: 2, doorbellAlways: true)
    }

    /// A doc's commit that goes alone (as a Redis Cluster's do, here with rounds off on a single Redis) and
    /// is decided in a commit's reply waits for the doorbell too (`CommitRound.waitingAlone`): each doc's
    /// second batch is one call held for the loop's next tick, and every push is answered at consecutive
    /// clocks of its doc.
    @Test func commitsAloneFormedInRepliesGoAtTheDoorbell() async throws {
        let docs = try await EightDocs.start("alone") {
            $0.commitRoundMaxDocs = 1
            $0.commitRoundDoorbellMinLagNanos = 0
        }
        let atDoorbellBefore = try await docs.node.metric("tandem_sync_commit_calls_at_doorbell_total")
        try await docs.secondPushDecidedInTheFirstOnesReply(attempt: 1)
        let atDoorbell = try await docs.node.metric("tandem_sync_commit_calls_at_doorbell_total") - atDoorbellBefore
        #expect(atDoorbell == Double(docs.docs.count), "each doc's second batch, decided in its first one's reply, went at the doorbell")
        #expect(try await docs.node.metric("tandem_sync_commit_round_docs_count") == 0, "no commit round with rounds off")
        try await docs.finish(head: 2)
    }

    /// A shard that shuts down while a round decided in a commit's reply waits for the doorbell sends it
    /// first: closed, the doorbell would never answer, and the batch's pushes would never reach Redis. The
    /// shard's loop is kept in its task phase (a task that queues itself again, as a busy loop's replies
    /// did in stop 31) so the doorbell cannot answer; the shard shuts down from there as soon as bob's
    /// batch, decided in alice's reply, is held.
    @Test func aShutdownSendsWhatWaitsForTheDoorbell() async throws {
        let eight = try await EightDocs.start("shutdown") { $0.commitRoundDoorbellMinLagNanos = 0 }
        let (doc, node, redis) = (eight.docs[0], eight.node, eight.cluster.redis)
        let batchesBefore = try await node.metric("tandem_sync_batches_total")
        redis.pause()
        eight.alice.push(doc, id: 1, ops: #"{"a":["put",{"k":1}]}"#)
        try await waitUntil("alice's push in Redis") { try await node.metric("tandem_sync_batches_total") == batchesBefore + 1 }
        eight.bob.push(doc, id: 1, ops: #"{"b":["put",{"k":2}]}"#)
        try await waitUntil("bob's push queued") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 1 }

        let shard = node.node.shard(for: doc)
        let shutDown = NIOLockedValueBox(false)
        holdInTaskPhase(shard.eventLoop) {
            let round = shard.commitRound.value
            guard round.pendingAtDoorbell || !round.ready.isEmpty else { return false }
            _ = shard.shutdown()
            shutDown.withLockedValue { $0 = true }
            return true
        }
        redis.resume()
        try await waitUntil("bob's batch held for the doorbell, and the shard shut down") { shutDown.withLockedValue { $0 } }
        try await waitUntil("bob's batch committed") { SyncRedis.head(redis, doc) == 2 }
        await eight.cluster.finish()
    }

    /// With `--max-batches-in-flight` above 1, a doc's batch decided outside a reply while its earlier batch
    /// waits for the doorbell waits too, behind it. Sent at once, it reached Redis first, found the doc's
    /// tail short of the one it was decided on, wrote nothing and was decided again (one wasted call). The
    /// shard's loop is held in its task phase (as in the shutdown test) while dave, whose connection is on
    /// the node's other loop, pushes: his push hops to the shard as a task and is decided there, outside any
    /// reply. Commits alone (a Cluster's, or rounds off): carol's batch waits alone. With rounds of at most
    /// two docs: carol's batches of two docs on the shard make a full round that waits, and dave's would
    /// have gone in a round of its own (`execute`) before it.
    @Test(arguments: [false, true])
    func aBatchDecidedOutsideARepliesWaitsBehindTheDocsBatchAtTheDoorbell(commitRounds: Bool) async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxBatchesInFlight = 2
            $0.commitRoundMaxDocs = commitRounds ? 2 : 1
            $0.commitRoundDoorbellMinLagNanos = 0
        }
        let node = cluster.nodes[0]
        let shard = node.node.shard(for: "order:0")
        let docs = commitRounds ? ["order:0", try #require((1..<64).map { "order:\($0)" }.first { node.node.shard(for: $0) === shard })] : ["order:0"]
        let n = Double(docs.count)
        // Four editors whose connections are on another loop than the docs' shard: their answers reach them
        // while the shard's loop is held.
        var editors: [SyncClient] = []
        for index in 0..<16 where editors.count < 4 {
            let client = try await cluster.client("u\(index)")
            if let loop = node.node.eventLoop(ofSession: client.session), loop !== shard.eventLoop {
                for doc in docs { try await client.join(doc) }
                editors.append(client)
            }
        }
        try #require(editors.count == 4, "four connections on the other loop")
        let (alice, bob, carol, dave) = (editors[0], editors[1], editors[2], editors[3])
        let counters = ["tandem_sync_lost_races_total", "tandem_sync_pipeline_breaks_total"]
        var before: [Double] = []
        for counter in counters { before.append(try await node.metric(counter)) }
        let batches = try await node.metric("tandem_sync_batches_total")
        func decided(atLeast count: Double) async throws -> Bool { try await node.metric("tandem_sync_batches_total") >= batches + count }

        cluster.redis.pause()
        for doc in docs { alice.push(doc, id: 1, ops: #"{"a":["put",{"k":1}]}"#) }
        try await waitUntil("alice's batches in Redis") { try await decided(atLeast: n) }
        for doc in docs { bob.push(doc, id: 1, ops: #"{"b":["put",{"k":2}]}"#) }
        try await waitUntil("bob's batches in Redis behind them") { try await decided(atLeast: 2 * n) }
        for doc in docs { carol.push(doc, id: 1, ops: #"{"c":["put",{"k":3}]}"#) }
        try await waitUntil("carol's pushes queued") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == n }

        let release = NIOLockedValueBox(false)
        holdInTaskPhase(shard.eventLoop) { release.withLockedValue { $0 } }
        cluster.redis.resume()
        // alice's replies decide carol's batches (they wait for the doorbell); bob's leave one batch in flight.
        for doc in docs {
            let (first, second) = (try await alice.answer(doc, id: 1), try await bob.answer(doc, id: 1))
            #expect(first.string("action") == "commit" && second.string("action") == "commit", "\(doc): \(first) \(second)")
        }
        try await waitUntil("carol's batches decided") { try await decided(atLeast: 3 * n) }
        dave.push(docs[0], id: 1, ops: #"{"d":["put",{"k":4}]}"#)
        // (≥: sent at once, dave's batch came back unwritten and was decided again while the loop was held.)
        try await waitUntil("dave's batch decided, outside a reply") { try await decided(atLeast: 3 * n + 1) }
        release.withLockedValue { $0 = true }

        for doc in docs {
            let third = try await carol.answer(doc, id: 1)
            #expect(third.string("action") == "commit" && third.clock() == 3, "\(doc): \(third)")
        }
        let fourth = try await dave.answer(docs[0], id: 1)
        #expect(fourth.string("action") == "commit" && fourth.clock() == 4, "\(fourth)")
        for (counter, was) in zip(counters, before) {
            let now = try await node.metric(counter)
            #expect(now == was, "\(counter): \(now - was) (dave's batch reached Redis before carol's)")
        }
        for doc in docs {
            try await cluster.waitConverged(doc, clients: editors)
            #expect(SyncRedis.head(cluster.redis, doc) == (doc == docs[0] ? 4 : 3))
            for editor in editors { cluster.expectRecordsEqualRedis(editor, doc) }
            #expect(SyncRedis.pushesCommittedTwice(cluster.redis, doc) == [])
        }
        await cluster.finish()
    }

    /// `--max-batch-bytes` closes a round too: with 1,024 and batches of ~650 bytes, a round takes a second
    /// doc's batch and goes (it passed the cap), so the eight docs decided in one pass go in rounds of at
    /// most two, however many `--commit-round-max-docs` allows. One script call stays short.
    @Test func aRoundClosesAtMaxBatchBytes() async throws {
        try await roundsOfDocsDecidedInOnePass(maxDocs: nil, maxBatchBytes: 1024, padding: 300, docsPerRound: 2)
    }

    /// Pauses Redis while eight docs each have a push in Redis and one queued, resumes it, and checks the
    /// answers, that the docs' next batches shared a round, and that no round held more than `docsPerRound`
    /// (`maxDocs`, unless given: what a bytes cap allows). `padding` bytes of value in each push.
    private func roundsOfDocsDecidedInOnePass(
        maxDocs: Int?, maxBatchBytes: Int? = nil, padding: Int = 0, docsPerRound: Int? = nil, doorbellAlways: Bool = false
    ) async throws {
        let eight = try await EightDocs.start("round") {
            if doorbellAlways { $0.commitRoundDoorbellMinLagNanos = 0 }
            if let maxDocs { $0.commitRoundMaxDocs = maxDocs }
            if let maxBatchBytes { $0.maxBatchBytes = maxBatchBytes }
        }
        let (docs, node) = (eight.docs, eight.node)
        let pad = String(repeating: "x", count: padding)
        let docsPerRound = docsPerRound ?? maxDocs
        /// Rounds so far of at most `docs` docs (a bucket's bound: 1, 2, 4, 8, 16, …); 0 for nil.
        func roundsOfAtMost(_ docs: Int?) async throws -> Double {
            guard let docs else { return 0 }
            return try await node.metric(#"tandem_sync_commit_round_docs_bucket{le="\#(Double(docs))"}"#)
        }
        var rounds = 0
        var attempts = 0
        // Which docs meet in a pass is up to the loop: a few attempts until one round held several.
        while attempts < 5 {
            attempts += 1
            let (roundsBefore, docsBefore) = (
                try await node.metric("tandem_sync_commit_round_docs_count"), try await node.metric("tandem_sync_commit_round_docs_sum")
            )
            let smallBefore = try await roundsOfAtMost(docsPerRound)
            let atDoorbellBefore = try await node.metric("tandem_sync_commit_calls_at_doorbell_total")
            try await eight.secondPushDecidedInTheFirstOnesReply(attempt: attempts, pad: pad)
            let roundsNow = try await node.metric("tandem_sync_commit_round_docs_count") - roundsBefore
            if doorbellAlways {
                // The second batches' rounds were held; the first batches' (decided outside a reply) were not.
                let atDoorbell = try await node.metric("tandem_sync_commit_calls_at_doorbell_total") - atDoorbellBefore
                #expect(atDoorbell >= 1 && atDoorbell <= roundsNow - 1, "\(atDoorbell) calls held of \(roundsNow) rounds")
            }
            let smallNow = try await roundsOfAtMost(docsPerRound) - smallBefore
            let docsNow = try await node.metric("tandem_sync_commit_round_docs_sum") - docsBefore
            #expect(docsNow == Double(2 * docs.count), "every group commit went in a round")
            if let docsPerRound {
                #expect(smallNow == roundsNow, "\(docsNow) docs in \(roundsNow) rounds, \(smallNow) of them of at most \(docsPerRound)")
            }
            if roundsNow < docsNow {
                rounds += 1
                break
            }
        }
        #expect(rounds == 1, "a round held several docs within \(attempts) attempts")
        try await eight.finish(head: UInt64(2 * attempts))
    }
}

/// Keeps `loop` in its task phase (a task that queues itself again, as a busy loop's replies did in stop 31),
/// so its doorbell cannot answer, until `done` — run on the loop between its other tasks — returns true, or for
/// at most 30 s.
private func holdInTaskPhase(_ loop: any EventLoop, until done: @escaping @Sendable () -> Bool) {
    let deadline = NIODeadline.now() + .seconds(30)
    @Sendable func again() {
        loop.execute {
            if !done() && NIODeadline.now() < deadline { again() }
        }
    }
    again()
}

/// Eight docs on one node, alice and bob members of each, one group commit of a doc in Redis at a time.
private struct EightDocs {
    let cluster: SyncCluster
    let docs: [String]
    let alice: SyncClient
    let bob: SyncClient
    var node: InProcessNode { cluster.nodes[0] }

    static func start(_ prefix: String, configure: (inout ServerConfiguration) -> Void) async throws -> EightDocs {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxBatchesInFlight = 1
            configure(&$0)
        }
        let docs = (0..<8).map { "\(prefix):\($0)" }
        let alice = try await cluster.client("alice")
        let bob = try await cluster.client("bob")
        for doc in docs {
            try await alice.join(doc)
            try await bob.join(doc)
        }
        return EightDocs(cluster: cluster, docs: docs, alice: alice, bob: bob)
    }

    /// Pauses Redis while every doc has alice's push `attempt` in Redis and bob's queued, resumes it: each
    /// doc's second batch is decided while its first one's reply is handled. Both are answered `commit`, at
    /// consecutive clocks of their doc. `pad`: a value carried by each push.
    func secondPushDecidedInTheFirstOnesReply(attempt: Int, pad: String = "") async throws {
        let batchesBefore = try await node.metric("tandem_sync_batches_total")
        cluster.redis.pause()
        for doc in docs { alice.push(doc, id: attempt, ops: #"{"a\#(attempt)":["put",{"k":\#(attempt),"p":"\#(pad)"}]}"#) }
        try await waitUntil("every doc's first push in Redis") {
            try await node.metric("tandem_sync_batches_total") == batchesBefore + Double(docs.count)
        }
        for doc in docs { bob.push(doc, id: attempt, ops: #"{"b\#(attempt)":["put",{"k":\#(attempt),"p":"\#(pad)"}]}"#) }
        try await waitUntil("every doc's second push queued") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == Double(docs.count) }
        cluster.redis.resume()
        for doc in docs {
            let first = try await alice.answer(doc, id: attempt)
            let second = try await bob.answer(doc, id: attempt)
            #expect(first.string("action") == "commit" && second.string("action") == "commit", "\(doc): \(first) \(second)")
            #expect((second.clock() ?? 0) == (first.clock() ?? 0) + 1, "\(doc): its own consecutive clocks")
        }
    }

    /// Every doc converges with Redis at `head`, with nothing committed twice; then stops the node.
    func finish(head: UInt64) async throws {
        for doc in docs {
            try await cluster.waitConverged(doc)
            #expect(SyncRedis.head(cluster.redis, doc) == head)
            for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
            #expect(SyncRedis.pushesCommittedTwice(cluster.redis, doc) == [])
        }
        await cluster.finish()
    }
}
