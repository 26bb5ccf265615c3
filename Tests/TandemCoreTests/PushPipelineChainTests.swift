import Testing
@testable import TandemCore

/// Batches pipelined behind a batch still in Redis (`maxBatchesInFlight`, issue 8): decided against the
/// state the ones ahead will leave, sent conditional on it, taken back and decided again whenever one
/// ahead does not leave it. (`PushPipelineModelTests` drives the same through random interleavings.)
@Suite struct PushPipelineChainTests {
    typealias P = PushPipelineTests

    static func batches(_ actions: [PushAction<Int>]) -> [CommitBatch] {
        actions.compactMap { if case .commit(let batch) = $0 { return batch } else { return nil } }
    }

    static let base = DocReplica(head: 3, records: ["a": P.json(#"{"t":"x"}"#)], versions: ["a": 1])

    /// Two pushes on the same record, the second arriving while the first's batch is in Redis.
    static func twoInFlight(depth: Int = 2) -> (PushPipeline<Int>, CommitBatch, CommitBatch?) {
        var pipeline = P.pipeline(replica: base, depth: depth)
        let first = batches(P.push(&pipeline, 1, 1, #"{"a":["patch",{"t":["append","y",1]}]}"#, base: 3))[0]
        let second = batches(P.push(&pipeline, 2, 1, #"{"a":["patch",{"t":["append","z",1]}]}"#, base: 3)).first
        return (pipeline, first, second)
    }

    @Test func theNextBatchGoesBehindTheOneInRedisDecidedAgainstTheStateItLeaves() throws {
        var (pipeline, first, second) = Self.twoInFlight()
        #expect(first.after == nil)
        let behind = try #require(second)
        // Conditional on the first's tail: Redis at 4, written by the first batch.
        #expect(behind.after == CommitBatch.Predecessor(token: first.token, lastClock: 4))
        #expect(behind.token != first.token)
        // Decided against "xy" at version 4 (the first's clock): a rebase of the concurrent append.
        #expect(behind.expectations == ["a": .version(4)])
        #expect(behind.writes["a"]?.value == Array(#"{"t":"xzy"}"#.utf8) || behind.writes["a"]?.value == Array(#"{"t":"xyz"}"#.utf8))
        #expect(pipeline.batchesInFlight == 2)
        #expect(pipeline.counters.pipelinedBatches == 1)

        // Replies in order: each result at its clock, after the commits before it.
        let one = pipeline.commitReplied(batchID: first.id, .committed(firstClock: 4, atMs: 1), now: 1)
        let two = pipeline.commitReplied(batchID: behind.id, .committed(firstClock: 5, atMs: 1), now: 2)
        let answered = (P.answers(one) + P.answers(two)).map { "\($0.0):\($0.2)" }
        #expect(answered.count == 2)
        guard case .result(.commit, 4, _, _) = P.answers(one).first?.2, case .result(_, 5, _, _) = P.answers(two).first?.2 else {
            Issue.record("answers \(answered)")
            return
        }
        #expect(pipeline.head == 5)
        #expect(pipeline.batchesInFlight == 0)
        #expect(pipeline.isIdle)
    }

    @Test func depthOneWaitsForTheReplyAsBefore() {
        let (pipeline, _, second) = Self.twoInFlight(depth: 1)
        #expect(second == nil)
        #expect(pipeline.queuedCount == 1)
    }

    @Test func aBatchGoesBehindAnotherOnlyOnceAsManyPushesWaitAsItHolds() throws {
        var pipeline = P.pipeline({ $0.maxBatchPushes = 8 }, replica: Self.base, depth: 2)
        func push(_ member: Int, _ id: Int) -> [CommitBatch] {
            Self.batches(P.push(&pipeline, member, id, #"{"k\#(member)_\#(id)":["put",{}]}"#, base: 3))
        }
        let one = try #require(push(1, 1).first)
        let two = try #require(push(1, 2).first, "one waiting push goes behind a batch of one")
        for id in 3...5 { #expect(push(1, id).isEmpty, "the depth is reached") }
        let three = try #require(Self.batches(pipeline.commitReplied(batchID: one.id, .committed(firstClock: 4, atMs: 1), now: 1)).first)
        #expect(three.commits.count == 3)
        #expect(Self.batches(pipeline.commitReplied(batchID: two.id, .committed(firstClock: 5, atMs: 1), now: 2)).isEmpty)
        // A batch of three alone in Redis: one or two waiting pushes do not go behind it, the third does.
        #expect(push(2, 1).isEmpty)
        #expect(push(2, 2).isEmpty)
        let behind = try #require(push(2, 3).first)
        #expect(behind.commits.count == 3)
        #expect(behind.after == CommitBatch.Predecessor(token: three.token, lastClock: 8))
    }

    @Test func theBatchesInRedisHoldAtMostMaxBatchBytesTogether() {
        // (A batch's bytes: its pushes' and the values it writes — about 107 for one `big`.)
        var pipeline = P.pipeline({ $0.maxBatchBytes = 150 }, replica: Self.base, depth: 2)
        let big = #"{"b":["put",{"text":"\#(String(repeating: "x", count: 40))"}]}"#
        #expect(Self.batches(P.push(&pipeline, 1, 1, big, base: 3)).count == 1)
        // Another one would pass 150 together, so it waits for the reply.
        #expect(Self.batches(P.push(&pipeline, 2, 1, big, base: 3)).isEmpty)
        #expect(pipeline.batchesInFlight == 1)
        // A small one still fits behind it.
        var small = P.pipeline({ $0.maxBatchBytes = 150 }, replica: Self.base, depth: 2)
        _ = P.push(&small, 1, 1, big, base: 3)
        #expect(Self.batches(P.push(&small, 2, 1, #"{"c":["put",{}]}"#, base: 3)).count == 1)
    }

    @Test func atMostTheDepthIsInRedis() {
        var (pipeline, first, second) = Self.twoInFlight()
        #expect(second != nil)
        #expect(Self.batches(P.push(&pipeline, 1, 2, #"{"b":["put",{}]}"#, base: 3)).isEmpty)
        #expect(pipeline.queuedCount == 1)
        // The first's reply makes room: the third goes behind the second.
        let next = Self.batches(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 4, atMs: 1), now: 1))
        #expect(next.count == 1)
        #expect(next.first?.after == CommitBatch.Predecessor(token: second!.token, lastClock: 5))
    }

    @Test func aLostRaceAheadDecidesBothAgainAndTheSecondsReplyIsIgnored() throws {
        var (pipeline, first, second) = Self.twoInFlight()
        let behind = try #require(second)
        // Another node changed "a" first: the first batch conflicts, the second (behind it) cannot run.
        let conflict = pipeline.commitReplied(batchID: first.id, .conflict(head: 4), now: 1)
        #expect(P.answers(conflict).isEmpty)
        #expect(Self.batches(conflict).isEmpty, "waits for the replica to reach Redis's head")
        #expect(pipeline.queuedCount == 2)
        #expect(pipeline.counters.pipelineBreaks == 1)
        #expect(pipeline.commitReplied(batchID: behind.id, .conflict(head: 4), now: 2).isEmpty)
        // The other node's commit arrives: both are decided again, in order, in one batch.
        let again = pipeline.receive([P.remote(4, #"{"a":["put",{"t":"other"}]}"#)], now: 3)
        let batch = try #require(Self.batches(again).first)
        #expect(batch.after == nil)
        #expect(batch.commits.map(\.sessionID) == ["s1", "s2"])
        #expect(batch.expectations == ["a": .version(4)])
    }

    @Test func aBatchAheadLandingAfterAnotherNodesCommitSendsTheOneBehindBack() throws {
        var (pipeline, first, second) = Self.twoInFlight()
        let behind = try #require(second)
        // Redis ran another node's commit (on another record) before the first: it landed at 5, not 4.
        let landed = pipeline.commitReplied(batchID: first.id, .committed(firstClock: 5, atMs: 1), now: 1)
        #expect(P.answers(landed).isEmpty, "its result waits for clock 4")
        #expect(pipeline.queuedCount == 1)
        #expect(pipeline.counters.pipelineBreaks == 1)
        #expect(pipeline.commitReplied(batchID: behind.id, .conflict(head: 5), now: 2).isEmpty)
        let delivered = pipeline.receive([P.remote(4, #"{"b":["put",{}]}"#)], now: 3)
        let order = delivered.compactMap { action -> String? in
            switch action {
            case .deliver(let commit, _, let result): return "\(commit.clock)\(result == nil ? "" : ":result")"
            case .commit(let batch): return "commit after \(batch.after.map { "\($0.lastClock)" } ?? "-")"
            default: return nil
            }
        }
        #expect(order == ["4", "5:result", "commit after -"])
    }

    @Test func aFailureAheadRefusesBothAndAnOrphanThatCommittedIsReadFromTheLog() throws {
        var (pipeline, first, second) = Self.twoInFlight()
        let behind = try #require(second)
        let failed = pipeline.commitReplied(batchID: first.id, .failed, now: 1)
        let refused = P.answers(failed).map { "\($0.0)" }
        #expect(refused == ["1", "2"])
        #expect(pipeline.batchesInFlight == 0)
        #expect(!pipeline.isIdle, "the second's reply is still awaited")
        // The first did run (its reply was lost), so the second ran too: read what they wrote.
        let late = pipeline.commitReplied(batchID: behind.id, .committed(firstClock: 5, atMs: 1), now: 2)
        #expect(late == [.readLog(from: 4, count: pipeline.settings.logReadCount)])
        #expect(pipeline.knownRedisHead == 5)
    }

    @Test func aVoidPushBehindTheBatchInRedisIsAnsweredRightAfterItsLastCommit() {
        var pipeline = P.pipeline(replica: Self.base, depth: 2)
        let first = Self.batches(P.push(&pipeline, 1, 1, #"{"a":["remove"]}"#, base: 3))[0]
        // Removing what the batch in Redis removes: void against the state it leaves.
        let void = P.push(&pipeline, 2, 1, #"{"a":["remove"]}"#, base: 3)
        #expect(void.isEmpty)
        let replied = pipeline.commitReplied(batchID: first.id, .committed(firstClock: 4, atMs: 1), now: 1)
        let sequence = replied.map { action -> String in
            switch action {
            case .deliver(let commit, _, _): return "deliver \(commit.clock)"
            case .answer(let reply): return "answer \(reply.member) \(reply.answer)"
            default: return "\(action)"
            }
        }
        #expect(sequence == ["deliver 4", "answer 2 \(PushAnswer.result(action: .discard, clock: 4, applied: nil, reason: "void"))"])
    }

    @Test func aSessionHasAtMostItsBoundOfPushesInRedis() {
        var pipeline = P.pipeline({ $0.maxSessionPushesPerBatch = 2 }, replica: Self.base, depth: 3)
        var sent: [CommitBatch] = []
        for id in 1...4 { sent += Self.batches(P.push(&pipeline, 1, id, #"{"k\#(id)":["put",{}]}"#, base: 3)) }
        // Two pushes in flight (one batch each), the others wait for their replies.
        #expect(sent.map(\.commits.count) == [1, 1])
        #expect(pipeline.queuedCount == 2)
    }
}
