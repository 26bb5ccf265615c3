import Testing
@testable import TandemCore

/// The commit linger (`PushPipeline.startLinger`): on a busy loop, a busy doc's first queued push waits
/// for others to join its group commit; on an idle node or doc, a lone push commits at once.
@Suite struct PushPipelineLingerTests {
    typealias Pipeline = PushPipeline<Int>
    static let ms: UInt64 = 1_000_000
    /// A loop lag well over the default `commitLingerMinLagNanos` (2 ms): a busy node.
    static let busy: UInt64 = 10 * ms

    /// Defaults (linger 20 ms, cut at 4 pushes, busy from 2 ms of lag), one batch in Redis at a time.
    static func pipeline(_ configure: (inout PushPipelineSettings) -> Void = { _ in }) -> Pipeline {
        PushPipelineTests.pipeline(configure)
    }

    static func push(_ pipeline: inout Pipeline, _ id: Int, now: UInt64, lag: UInt64, waited: UInt64 = 0) -> [PushAction<Int>] {
        let ops = #"{"r\#(id)":["put",{"v":\#(id)}]}"#
        return pipeline.push(
            from: 1 + id % 2, sessionID: "s\(1 + id % 2)", pushID: .number(id), base: pipeline.head, ops: PushPipelineTests.ops(ops),
            bytes: ops.utf8.count, readOnly: false, now: now, waitedNanos: waited, loopLagNanos: lag)
    }

    /// Commits one lone push at `now` and its reply right after: the doc has seen a push (its arrival gap
    /// is measured from there) and nothing is in Redis.
    static func commitOne(_ pipeline: inout Pipeline, _ id: Int, now: UInt64) {
        guard let batch = PushPipelineTests.batch(push(&pipeline, id, now: now, lag: 0)) else {
            Issue.record("the lone push was not committed at once")
            return
        }
        _ = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: pipeline.head + 1, atMs: 1), now: now + ms / 2)
    }

    @Test func onABusyLoopABusyDocsPushesLingerIntoOneBatchUntilTheDeadline() {
        var pipeline = Self.pipeline()
        Self.commitOne(&pipeline, 1, now: 0)
        // 5 ms after the last push (the doc gets a push every 5 ms), on a loop 10 ms behind.
        let first = Self.push(&pipeline, 2, now: 5 * Self.ms, lag: Self.busy)
        #expect(PushPipelineTests.batch(first) == nil, "the first push of a busy doc on a busy loop was sent at once")
        #expect(pipeline.nextDeadline == 25 * Self.ms)
        #expect(PushPipelineTests.batch(Self.push(&pipeline, 3, now: 9 * Self.ms, lag: Self.busy)) == nil)
        #expect(PushPipelineTests.batch(pipeline.tick(now: 24 * Self.ms)) == nil)
        // At the deadline (the shard's timer, late or not), both go in one group commit.
        guard let batch = PushPipelineTests.batch(pipeline.tick(now: 26 * Self.ms)) else {
            Issue.record("no batch at the linger's deadline")
            return
        }
        #expect(batch.commits.map(\.pushID) == [.number(2), .number(3)])
        #expect(pipeline.counters.lingersExpired == 1)
        #expect(pipeline.counters.lingerNanos == 20 * Self.ms, "the time past the deadline (a late timer) is not the linger's")
        #expect(pipeline.nextDeadline == nil)
    }

    @Test func aLingerEndsAsSoonAsEnoughPushesWait() {
        var pipeline = Self.pipeline { $0.commitLingerPushes = 3 }
        Self.commitOne(&pipeline, 1, now: 0)
        #expect(PushPipelineTests.batch(Self.push(&pipeline, 2, now: 4 * Self.ms, lag: Self.busy)) == nil)
        #expect(PushPipelineTests.batch(Self.push(&pipeline, 3, now: 5 * Self.ms, lag: Self.busy)) == nil)
        guard let batch = PushPipelineTests.batch(Self.push(&pipeline, 4, now: 6 * Self.ms, lag: Self.busy)) else {
            Issue.record("three pushes waited and no batch went")
            return
        }
        #expect(batch.commits.count == 3)
        #expect(pipeline.counters.lingersFilled == 1)
    }

    @Test func anIdleNodeOrAnIdleDocCommitsALonePushAtOnce() {
        // A busy doc (a push every 5 ms) on an idle loop: no linger.
        var idleNode = Self.pipeline()
        Self.commitOne(&idleNode, 1, now: 0)
        #expect(PushPipelineTests.batch(Self.push(&idleNode, 2, now: 5 * Self.ms, lag: 0)) != nil, "a push lingered on an idle node")
        var littleLag = Self.pipeline()
        Self.commitOne(&littleLag, 1, now: 0)
        #expect(PushPipelineTests.batch(Self.push(&littleLag, 2, now: 5 * Self.ms, lag: 1 * Self.ms)) != nil, "a push lingered at 1 ms of lag")
        // A doc's very first push on a busy loop: nothing says another one is coming.
        var firstPush = Self.pipeline()
        #expect(PushPipelineTests.batch(Self.push(&firstPush, 1, now: 0, lag: Self.busy)) != nil, "a doc's first push lingered")
        // A quiet doc (a push a second) on a busy loop: the linger would end with the push alone.
        var quietDoc = Self.pipeline()
        Self.commitOne(&quietDoc, 1, now: 0)
        #expect(PushPipelineTests.batch(Self.push(&quietDoc, 2, now: 1_000 * Self.ms, lag: Self.busy)) != nil, "a quiet doc's push lingered")
        // Linger off.
        var off = Self.pipeline { $0.commitLingerNanos = 0 }
        Self.commitOne(&off, 1, now: 0)
        #expect(PushPipelineTests.batch(Self.push(&off, 2, now: 5 * Self.ms, lag: Self.busy)) != nil, "--commit-linger-ms 0 lingered")
    }

    @Test func theLingerCountsInTheAdmissionBound() {
        // Bound 20 ms, a round trip of 1 ms: the linger is at most half of what the bound leaves.
        var pipeline = Self.pipeline { $0.maxPushWaitNanos = 20 * Self.ms }
        Self.commitOne(&pipeline, 1, now: 0)
        _ = Self.push(&pipeline, 2, now: 5 * Self.ms, lag: Self.busy, waited: 4 * Self.ms)
        guard let until = pipeline.lingerUntil else {
            Issue.record("no linger")
            return
        }
        let roundTrip = pipeline.model.serviceNanos(size: 1)
        #expect(Double(until - 5 * Self.ms) <= (Double(20 * Self.ms - 4 * Self.ms) - roundTrip) / 2 + 1)
        #expect(until < 5 * Self.ms + pipeline.settings.commitLingerNanos)
        // A push arriving meanwhile is admitted against the linger's end.
        #expect(pipeline.estimatedWaitNanos(now: 6 * Self.ms) >= Double(until - 6 * Self.ms))
        // A push that already used most of its bound before its doc saw it does not linger.
        var late = Self.pipeline { $0.maxPushWaitNanos = 20 * Self.ms }
        Self.commitOne(&late, 1, now: 0)
        #expect(PushPipelineTests.batch(Self.push(&late, 2, now: 5 * Self.ms, lag: Self.busy, waited: 18 * Self.ms)) != nil)
    }

    @Test func aLingeringQueueThatEmptiesLeavesNoDeadlineAndARedisOutageEndsIt() {
        var pipeline = Self.pipeline()
        Self.commitOne(&pipeline, 1, now: 0)
        _ = Self.push(&pipeline, 3, now: 5 * Self.ms, lag: Self.busy)  // member 2's
        #expect(pipeline.nextDeadline != nil)
        _ = pipeline.detach(2, now: 6 * Self.ms)
        #expect(pipeline.nextDeadline == nil)
        #expect(pipeline.queuedCount == 0)
        _ = Self.push(&pipeline, 4, now: 7 * Self.ms, lag: Self.busy)
        #expect(pipeline.lingerUntil != nil)
        let down = pipeline.setRedisAvailable(false, now: 8 * Self.ms)
        #expect(PushPipelineTests.answers(down).count == 1)
        _ = pipeline.setRedisAvailable(true, now: 9 * Self.ms)
        #expect(pipeline.nextDeadline == nil)
        #expect(pipeline.isIdle)
    }
}
