import Testing

@testable import TandemCore

/// Redis lost acknowledged commits (a failover to a replica that had not received them, a restore from
/// an older snapshot): the doc's head in Redis is lower than what a node saw. The pipeline notices it
/// wherever Redis tells it its head, counts it, reloads the doc and restarts every member from what Redis
/// holds (issue 8).
@Suite struct ClockRegressionTests {
    typealias Pipeline = PushPipeline<Int>
    typealias T = PushPipelineTests

    /// A pipeline at head 5 (commits 1…5 delivered), members 1 and 2 live.
    static func atFive() -> Pipeline {
        var pipeline = T.pipeline()
        _ = pipeline.receive((1...5).map { T.remote($0, #"{"r\#($0)":["put",{}]}"#) }, now: 1)
        #expect(pipeline.head == 5)
        return pipeline
    }

    static func older() -> DocReplica {
        var replica = DocReplica()
        replica.apply(clock: 1, ops: T.ops(#"{"r1":["put",{}]}"#))
        replica.apply(clock: 2, ops: T.ops(#"{"r2":["put",{}]}"#))
        return replica
    }

    /// The reload after a regression: every member restarts from a snapshot of what Redis holds.
    static func expectRestart(_ actions: [PushAction<Int>], head: UInt64, records: Set<String>) {
        var restarted: Set<Int> = []
        for action in actions {
            guard case .catchUp(let member, .snapshot(let snapshotHead, let snapshot)) = action else { continue }
            #expect(snapshotHead == head)
            #expect(Set(snapshot.keys) == records)
            restarted.insert(member)
        }
        #expect(restarted == [1, 2], "\(actions)")
    }

    /// Between finding the loss and the reload, nothing reaches members: a commit from pub/sub past the
    /// old head (Redis's new history, numbered after the lost one) or a log read would land on top of
    /// commits Redis no longer has. (Found by the model test's loss event, seed 2730.)
    @Test func nothingIsDeliveredOnTopOfLostCommitsBeforeTheReload() {
        var pipeline = Self.atFive()
        #expect(pipeline.headObserved(2, knownAtIssue: 5, now: 2) == [.reload])
        #expect(pipeline.receive([T.remote(6, #"{"x":["put",{}]}"#)], now: 3) == [])
        #expect(pipeline.logRead(from: 6, entries: [T.remote(6, #"{"x":["put",{}]}"#)], now: 4) == [])
        #expect(pipeline.head == 5)
        Self.expectRestart(pipeline.load(Self.older(), retainedFrom: 1, now: 5), head: 2, records: ["r1", "r2"])
    }

    @Test func aLowerHeadThanKnownWhenTheCheckWasIssuedReloadsAndRestartsEveryone() {
        var pipeline = Self.atFive()
        let actions = pipeline.headObserved(2, knownAtIssue: 5, now: 2)
        #expect(actions == [.reload])
        #expect(pipeline.counters.clockRegressions == 1)
        // Pushes arriving meanwhile wait; nothing is decided against the old replica.
        let held = T.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, now: 3)
        #expect(T.batch(held) == nil)
        let reloaded = pipeline.load(Self.older(), retainedFrom: 1, now: 4)
        #expect(pipeline.head == 2)
        Self.expectRestart(reloaded, head: 2, records: ["r1", "r2"])
        // The held push is refused after the snapshot (its client pushes it again on the new state).
        guard case .error(.unavailable, let message, _)? = T.answers(reloaded).first?.2 else {
            Issue.record("\(reloaded)"); return
        }
        #expect(message.contains("went back"))
        let lastRestart = reloaded.lastIndex { if case .catchUp = $0 { true } else { false } }!
        let refusal = reloaded.firstIndex { if case .answer = $0 { true } else { false } }!
        #expect(lastRestart < refusal)
        // Editing goes on from Redis's head.
        guard let batch = T.batch(T.push(&pipeline, 1, 2, #"{"b":["put",{}]}"#, now: 5)) else {
            Issue.record("no batch after the reload"); return
        }
        let committed = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 3, atMs: 1), now: 6)
        #expect(T.answers(committed).map(\.2) == [.result(action: .commit, clock: 3, applied: nil, reason: nil)])
        #expect(pipeline.counters.clockRegressions == 1)
    }

    @Test func aLowerHeadLearntAfterTheCheckWasIssuedIsNotARegression() {
        // The read was issued at head 3; commits 4 and 5 came over pub/sub before its reply said 3.
        var pipeline = Self.atFive()
        #expect(pipeline.headObserved(3, knownAtIssue: 3, now: 2).isEmpty)
        #expect(pipeline.headObserved(5, knownAtIssue: 5, now: 2).isEmpty)
        #expect(pipeline.counters.clockRegressions == 0)
    }

    @Test func aCommitReplyAtClocksAlreadyDeliveredIsARegression() {
        var pipeline = Self.atFive()
        guard let batch = T.batch(T.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, now: 2)) else { return }
        // Redis was at 2 when it ran the batch: it gave the push clock 3, which this node delivered already.
        let replied = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 3, atMs: 1), now: 3)
        #expect(replied == [.reload], "nothing delivered onto the old replica")
        #expect(pipeline.counters.clockRegressions == 1)
        var replica = Self.older()
        replica.apply(clock: 3, ops: T.ops(#"{"a":["put",{}]}"#))
        let reloaded = pipeline.load(replica, retainedFrom: 1, now: 4)
        Self.expectRestart(reloaded, head: 3, records: ["r1", "r2", "a"])
        // The pusher learns its push is in Redis from the snapshot; it is answered `unavailable`, and a
        // re-push is recognised as a duplicate by the commit script.
        #expect(T.answers(reloaded).map(\.0) == [1])
        #expect(pipeline.inFlightCount == 0)
    }

    @Test func aConflictNamingALowerHeadIsARegression() {
        var pipeline = Self.atFive()
        guard let batch = T.batch(T.push(&pipeline, 1, 1, #"{"r5":["put",{"x":1}]}"#, now: 2)) else { return }
        let replied = pipeline.commitReplied(batchID: batch.id, .conflict(head: 2), now: 3)
        #expect(replied.contains(.reload))
        #expect(pipeline.counters.clockRegressions == 1)
        let reloaded = pipeline.load(Self.older(), retainedFrom: 1, now: 4)
        Self.expectRestart(reloaded, head: 2, records: ["r1", "r2"])
        #expect(T.answers(reloaded).count == 1, "the requeued push is refused after the restart")
    }

    @Test func anotherCommitAtADeliveredClockIsARegression() {
        var pipeline = Self.atFive()
        // Commit 4 again, by someone else: Redis lost 3…5 and others committed on top of 2.
        let other = CommitNotice(clock: 4, ops: T.json(#"{"z":["put",{}]}"#), by: "s9", node: "n3", pushID: .number(9), committedAtMs: 1)
        #expect(pipeline.receive([other], now: 2) == [.reload])
        #expect(pipeline.counters.clockRegressions == 1)
        // The same commit again (log read and pub/sub overlap) is not.
        var same = Self.atFive()
        #expect(same.receive([T.remote(4, #"{"r4":["put",{}]}"#)], now: 2).isEmpty)
        #expect(same.counters.clockRegressions == 0)
    }

    @Test func aFailedReloadIsRetriedAtTheNextHeadCheck() {
        var pipeline = Self.atFive()
        _ = pipeline.headObserved(2, knownAtIssue: 5, now: 2)
        #expect(pipeline.loadFailed(now: 3).isEmpty)
        #expect(pipeline.headObserved(2, knownAtIssue: 2, now: 4) == [.reload])
        #expect(pipeline.counters.clockRegressions == 1, "one episode")
        Self.expectRestart(pipeline.load(Self.older(), retainedFrom: 1, now: 5), head: 2, records: ["r1", "r2"])
    }
}
