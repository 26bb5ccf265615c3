import Testing
@testable import TandemCore

/// One rule of `PushPipeline` per test, without I/O.
@Suite struct PushPipelineTests {
    typealias Pipeline = PushPipeline<Int>

    static func ops(_ text: String) -> Ops { try! Ops(json: try! JSONParser.parse(text)) }
    static func json(_ text: String) -> JSONValue { try! JSONParser.parse(text) }

    /// A pipeline with a loaded replica and live members 1 and 2 (sessions "s1", "s2").
    /// One batch in Redis at a time unless `depth` says otherwise: these tests are about forming and
    /// answering one batch (`PushPipelineChainTests` is about batches behind others).
    static func pipeline(
        _ configure: (inout PushPipelineSettings) -> Void = { _ in }, replica: DocReplica = DocReplica(), depth: Int = 1
    ) -> Pipeline {
        var settings = PushPipelineSettings(nodeID: "me")
        settings.maxBatchesInFlight = depth
        configure(&settings)
        var pipeline = Pipeline(settings: settings, randomSeed: 7)
        _ = pipeline.load(replica, retainedFrom: 1, now: 0)
        _ = pipeline.attach(1, since: replica.head, now: 0)
        _ = pipeline.attach(2, since: replica.head, now: 0)
        return pipeline
    }

    static func push(_ pipeline: inout Pipeline, _ member: Int, _ id: Int, _ ops: String, base: UInt64? = nil, now: UInt64 = 0, readOnly: Bool = false)
        -> [PushAction<Int>]
    {
        pipeline.push(
            from: member, sessionID: "s\(member)", pushID: .number(id), base: base ?? pipeline.head, ops: Self.ops(ops),
            bytes: ops.utf8.count, readOnly: readOnly, now: now)
    }

    static func batch(_ actions: [PushAction<Int>]) -> CommitBatch? {
        for action in actions { if case .commit(let batch) = action { return batch } }
        return nil
    }

    static func answers(_ actions: [PushAction<Int>]) -> [(Int, JSONValue, PushAnswer)] {
        actions.compactMap { action in
            switch action {
            case .answer(let reply): return (reply.member, reply.pushID, reply.answer)
            case .deliver(_, _, let reply?): return (reply.member, reply.pushID, reply.answer)
            default: return nil
            }
        }
    }

    /// The commits of `batch`, as pub/sub would bring them.
    static func notices(_ batch: CommitBatch, first: UInt64) -> [CommitNotice] {
        batch.commits.enumerated().map { i, commit in
            CommitNotice(clock: first + UInt64(i), ops: commit.ops, by: commit.sessionID, node: "me", pushID: commit.pushID, committedAtMs: 1)
        }
    }

    static func remote(_ clock: UInt64, _ ops: String) -> CommitNotice {
        CommitNotice(clock: clock, ops: json(ops), by: "other", node: "n2", pushID: .number(0), committedAtMs: 1)
    }

    // MARK: Answers

    @Test func aViewersPushIsDiscardedReadOnlyAtItsPosition() {
        var pipeline = Self.pipeline(replica: DocReplica(head: 4))
        let actions = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, readOnly: true)
        #expect(Self.batch(actions) == nil)
        #expect(Self.answers(actions).map(\.2) == [.result(action: .discard, clock: 4, applied: nil, reason: "read_only")])
    }

    @Test func aLonePushIsCommittedAndAnsweredAtItsClockInsteadOfItsPatch() {
        var pipeline = Self.pipeline()
        let sent = Self.push(&pipeline, 1, 1, #"{"a":["put",{"x":1}]}"#)
        guard let batch = Self.batch(sent) else { Issue.record("no batch"); return }
        #expect(batch.commits.count == 1)
        #expect(batch.expectations == ["a": .absent])
        #expect(batch.writes["a"] == CommitBatch.Write(value: Array(#"{"x":1}"#.utf8), commitIndex: 0, wasMissing: true))
        #expect(batch.created == 1)
        let replied = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 1, atMs: 5), now: 1)
        guard case .deliver(let commit, let patchTo, let result?) = replied.first else { Issue.record("\(replied)"); return }
        #expect(commit.clock == 1)
        #expect(patchTo == [2])
        #expect(result.member == 1)
        #expect(result.answer == .result(action: .commit, clock: 1, applied: nil, reason: nil))
        #expect(result.sentAtNanos == 0, "when its batch went to Redis")
        #expect(pipeline.head == 1)
        #expect(pipeline.isIdle)
        // The same commit coming back over pub/sub is not delivered again.
        #expect(pipeline.receive(Self.notices(batch, first: 1), now: 2).isEmpty)
    }

    @Test func everythingWaitingGoesInOneBatchEachDecidedAgainstTheStateThePreviousOnesProduced() {
        var pipeline = Self.pipeline()
        guard let first = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{"t":""}]}"#)) else { Issue.record("no batch"); return }
        // While the first batch is in Redis, three pushes wait.
        #expect(Self.push(&pipeline, 2, 1, #"{"a":["patch",{"t":["append","x",0]}]}"#).isEmpty)
        #expect(Self.push(&pipeline, 1, 2, #"{"a":["patch",{"t":["append","y",1]}],"b":["put",{}]}"#).isEmpty)
        #expect(Self.push(&pipeline, 2, 2, #"{"b":["remove"]}"#).isEmpty)
        #expect(pipeline.queuedCount == 3)
        let actions = pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1)
        guard let batch = Self.batch(actions) else { Issue.record("no second batch: \(actions)"); return }
        #expect(batch.commits.map(\.pushID) == [.number(1), .number(2), .number(2)])
        // s1's append at offset 1 is exact because it saw s2's "x" from the same batch.
        #expect(batch.commits[1].ops == Self.json(#"{"a":["patch",{"t":["append","y",1]}],"b":["put",{}]}"#))
        // Only first touches are checked in Redis: `a` as committed at clock 1, `b` missing.
        #expect(batch.expectations == ["a": .version(1), "b": .absent])
        #expect(batch.writes["a"] == CommitBatch.Write(value: Array(#"{"t":"xy"}"#.utf8), commitIndex: 1, wasMissing: false))
        #expect(batch.writes["b"] == CommitBatch.Write(value: nil, commitIndex: 2, wasMissing: true))
        #expect(batch.created == 0 && batch.removed == 0)
        // Answers: each at its clock, in order, the pusher's own result instead of its patch.
        let delivered = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 2)
        let order = delivered.compactMap { action -> String? in
            guard case .deliver(let commit, let patchTo, let result) = action else { return nil }
            return "\(commit.clock):patch\(patchTo):result\(result.map { "\($0.member)" } ?? "-")"
        }
        #expect(order == ["2:patch[1]:result2", "3:patch[2]:result1", "4:patch[1]:result2"])
    }

    @Test func aResultWaitsForTheCommitsBeforeIt() {
        var pipeline = Self.pipeline()
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { Issue.record("no batch"); return }
        // Another node committed clock 1 first; its message is still on the way.
        #expect(pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 1).isEmpty)
        #expect(pipeline.nextDeadline == 1 + pipeline.settings.gapGraceNanos)
        let actions = pipeline.receive([Self.remote(1, #"{"z":["put",{}]}"#)], now: 2)
        guard actions.count == 2, case .deliver(let remote, let patchTo, nil) = actions[0], case .deliver(let mine, _, let result?) = actions[1]
        else { Issue.record("\(actions)"); return }
        #expect(remote.clock == 1 && patchTo.sorted() == [1, 2])
        #expect(mine.clock == 2 && result.answer == .result(action: .commit, clock: 2, applied: nil, reason: nil))
        #expect(pipeline.nextDeadline == nil)
    }

    @Test func aCommitFromPubSubBeforeTheReplyIsRecognisedAndAnsweredOnce() {
        var pipeline = Self.pipeline()
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { Issue.record("no batch"); return }
        let early = pipeline.receive(Self.notices(batch, first: 1), now: 1)
        #expect(Self.answers(early).map(\.2) == [.result(action: .commit, clock: 1, applied: nil, reason: nil)])
        // The next push waits for the reply: one batch in Redis at a time.
        #expect(Self.push(&pipeline, 2, 1, #"{"b":["put",{}]}"#, now: 2).isEmpty)
        let replied = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 1, atMs: 1), now: 3)
        #expect(Self.answers(replied).isEmpty)
        #expect(Self.batch(replied)?.commits.map(\.sessionID) == ["s2"])
    }

    @Test func aRebaseIsAnsweredWithWhatWasApplied() {
        var replica = DocReplica()
        replica.apply(clock: 1, ops: Self.ops(#"{"a":["put",{"t":"ab"}]}"#))
        var pipeline = Self.pipeline(replica: replica)
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["patch",{"t":["append","c",0]}]}"#)) else { return }
        let answers = Self.answers(pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 1))
        #expect(answers.map(\.2) == [.result(action: .rebase, clock: 2, applied: Self.json(#"{"a":["patch",{"t":["append","c",2]}]}"#), reason: nil)])
    }

    /// The batch hashes each record a commit writes for its checksum delta; the commit it delivers carries
    /// those hashes, and the replica takes them (one hash per record and commit, not two) and still holds
    /// the checksum of its records.
    @Test func ownCommitsCarryTheirRecordHashesToTheReplica() {
        var replica = DocReplica()
        replica.apply(clock: 1, ops: Self.ops(#"{"a":["put",{"t":"ab"}],"b":["put",{}]}"#))
        var pipeline = Self.pipeline(replica: replica)
        let pushed = Self.push(&pipeline, 1, 1, #"{"a":["patch",{"t":["append","c",2]}],"b":["remove"],"c":["put",{"n":1}]}"#)
        guard let batch = Self.batch(pushed) else { Issue.record("no batch"); return }
        let delivered = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 1).compactMap { action in
            if case .deliver(let commit, _, _) = action { return commit } else { return nil }
        }
        let records = pipeline.delivery.replica?.records ?? [:]
        #expect(delivered.map(\.clock) == [2])
        #expect(records["a"] == Self.json(#"{"t":"abc"}"#) && records["b"] == nil && records["c"] == Self.json(#"{"n":1}"#))
        #expect(
            delivered.first?.recordHashes
                == ["a": DocChecksum.record(id: "a", value: records["a"]!), "c": DocChecksum.record(id: "c", value: records["c"]!)])
        #expect(pipeline.delivery.replica?.sum == DocChecksum.of(records))
    }

    @Test func aVoidPushIsDiscardedAtOnceOrRightAfterTheCommitBeforeItInTheBatch() {
        var pipeline = Self.pipeline()
        // Nothing before it: answered at once, at the member's position.
        let alone = Self.push(&pipeline, 1, 1, #"{"gone":["patch",{"x":["put",1]}]}"#)
        #expect(Self.answers(alone).map(\.2) == [.result(action: .discard, clock: 0, applied: nil, reason: "void")])
        guard let first = Self.batch(Self.push(&pipeline, 1, 2, #"{"a":["put",{}]}"#)) else { return }
        _ = Self.push(&pipeline, 2, 1, #"{"b":["put",{}]}"#)
        _ = Self.push(&pipeline, 1, 3, #"{"b":["remove"]}"#)
        _ = Self.push(&pipeline, 2, 2, #"{"b":["patch",{"x":["put",1]}]}"#)  // void: s1 removed b just before
        guard let batch = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1)) else { return }
        #expect(batch.commits.count == 2)
        let actions = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 2)
        let sequence = actions.map { action -> String in
            switch action {
            case .deliver(let commit, _, _): return "deliver \(commit.clock)"
            case .answer(let reply): return "answer \(reply.member) \(reply.answer)"
            default: return "\(action)"
            }
        }
        #expect(sequence == ["deliver 2", "deliver 3", "answer 2 \(PushAnswer.result(action: .discard, clock: 3, applied: nil, reason: "void"))"])
    }

    @Test func pushesQueuedBeforeTheDocIsReadAreDecidedAfterTheirMembersCatchUp() {
        var pipeline = Pipeline(settings: PushPipelineSettings(nodeID: "me"), randomSeed: 1)
        #expect(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, base: 0).isEmpty)
        #expect(Self.push(&pipeline, 3, 1, #"{"b":["put",{}]}"#, base: 0).isEmpty)
        let actions = pipeline.load(DocReplica(), retainedFrom: 1, attaching: [(1, 0)], now: 1)
        guard actions.count == 3, case .catchUp(1, .log([], head: 0)) = actions[0] else { Issue.record("\(actions)"); return }
        // Member 3 never joined: refused rather than committed with nobody to answer.
        guard case .answer(let refused) = actions[1], refused.member == 3, case .error(.notJoined, _, _) = refused.answer else {
            Issue.record("\(actions)"); return
        }
        #expect(Self.batch(actions)?.commits.map(\.sessionID) == ["s1"])
    }

    @Test func aPushFromAMemberThatIsNotLiveIsRefusedNotJoined() {
        var pipeline = Self.pipeline()
        guard case .error(.notJoined, _, _)? = Self.answers(Self.push(&pipeline, 9, 1, #"{"a":["put",{}]}"#)).first?.2 else {
            Issue.record("accepted"); return
        }
    }

    // MARK: Lost races

    @Test func aBatchThatLostTheRaceIsDecidedAgainOnceTheReplicaCaughtUpNeverHalfApplied() {
        var replica = DocReplica()
        replica.apply(clock: 1, ops: Self.ops(#"{"a":["put",{"t":""}]}"#))
        var pipeline = Self.pipeline({ $0.maxAttempts = 2 }, replica: replica)
        guard let first = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["patch",{"t":["append","x",0]}]}"#)) else { return }
        _ = Self.push(&pipeline, 2, 1, #"{"b":["put",{}]}"#)
        guard let second = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 2, atMs: 1), now: 1)) else { return }
        // Another node created `b` first (clock 3): nothing is written; the pipeline waits for clock 3.
        #expect(pipeline.commitReplied(batchID: second.id, .conflict(head: 3), now: 2).isEmpty)
        #expect(pipeline.tick(now: 3).isEmpty)
        let caughtUp = pipeline.receive([Self.remote(3, #"{"b":["put",{"by":"other"}]}"#)], now: 4)
        guard let retry = Self.batch(caughtUp) else { Issue.record("not decided again: \(caughtUp)"); return }
        #expect(retry.expectations == ["b": .exists])
        // Lost again, up to maxAttempts: then refused, not committed.
        _ = pipeline.receive([Self.remote(4, #"{"b":["remove"]}"#)], now: 5)
        let refused = pipeline.commitReplied(batchID: retry.id, .conflict(head: 4), now: 6)
        guard case .error(.unavailable, let message, nil)? = Self.answers(refused).first?.2 else { Issue.record("\(refused)"); return }
        #expect(message.contains("contention"))
        #expect(pipeline.isIdle)
    }

    @Test func waitingForTheReportedHeadReadsTheLogAfterTheGraceAndGivesUpAtTheDeadline() {
        var pipeline = Self.pipeline()
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { return }
        _ = pipeline.commitReplied(batchID: batch.id, .conflict(head: 5), now: 0)
        let grace = pipeline.settings.gapGraceNanos
        #expect(pipeline.tick(now: grace - 1).isEmpty)
        #expect(pipeline.tick(now: grace) == [.readLog(from: 1, count: pipeline.settings.logReadCount)])
        _ = pipeline.logReadFailed(now: grace + 1)
        // Still behind at the deadline: decided against what we have (Redis re-checks).
        let late = pipeline.tick(now: pipeline.settings.headWaitNanos + 1)
        #expect(Self.batch(late) != nil, "\(late)")
    }

    @Test func aRePushOfACommittedIdIsDiscardedAsDuplicateAndTheRestDecidedAgain() {
        var pipeline = Self.pipeline()
        guard let first = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { return }
        _ = Self.push(&pipeline, 2, 7, #"{"b":["put",{}]}"#)
        _ = Self.push(&pipeline, 1, 8, #"{"b":["patch",{"x":["put",1]}]}"#)
        guard let batch = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1)) else { return }
        #expect(batch.commits.count == 2)
        // s2's 7 was committed before (at clock 1 of an earlier life of its session).
        let actions = pipeline.commitReplied(batchID: batch.id, .duplicate(head: 1, clocks: [0: 1]), now: 2)
        #expect(Self.answers(actions).first?.2 == .result(action: .discard, clock: 1, applied: nil, reason: "duplicate"))
        // s1's patch of `b` no longer has its `b`: decided again, it is void now.
        #expect(Self.batch(actions) == nil)
        #expect(Self.answers(actions).count == 2)
        #expect(Self.answers(actions)[1].2 == .result(action: .discard, clock: 1, applied: nil, reason: "void"))
    }

    @Test func overTheDocLimitInRedisIsDecidedAgainAgainstTheCaughtUpReplica() {
        var pipeline = Self.pipeline({ $0.limits.maxDocRecords = 2 })
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { return }
        // Another node created two records meanwhile.
        #expect(pipeline.commitReplied(batchID: batch.id, .tooLarge(head: 2, records: 3), now: 1).isEmpty)
        let actions = pipeline.receive([Self.remote(1, #"{"x":["put",{}]}"#), Self.remote(2, #"{"y":["put",{}]}"#)], now: 2)
        guard case .error(.tooLarge, _, _)? = Self.answers(actions).first?.2 else { Issue.record("\(actions)"); return }
        #expect(Self.batch(actions) == nil)
    }

    @Test func aFailedBatchIsAnsweredUnavailableAndRedisDownRefusesAtOnce() {
        var pipeline = Self.pipeline()
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { return }
        _ = Self.push(&pipeline, 2, 1, #"{"b":["put",{}]}"#)
        let down = pipeline.setRedisAvailable(false, now: 1)
        #expect(Self.answers(down).map(\.0) == [2], "the queued push is refused; the batch in Redis waits for its reply")
        let failed = pipeline.commitReplied(batchID: batch.id, .failed, now: 2)
        guard case .error(.unavailable, _, _)? = Self.answers(failed).first?.2 else { Issue.record("\(failed)"); return }
        guard case .error(.unavailable, _, nil)? = Self.answers(Self.push(&pipeline, 1, 2, #"{"c":["put",{}]}"#, now: 3)).first?.2 else {
            Issue.record("not refused while Redis is down"); return
        }
        #expect(Self.batch(pipeline.setRedisAvailable(true, now: 4)) == nil)
        #expect(Self.batch(Self.push(&pipeline, 1, 3, #"{"c":["put",{}]}"#, now: 5)) != nil)
    }

    // MARK: Waiting for the head

    @Test func aBaseAheadOfTheReplicaWaitsForTheHeadWithTheQueueBehindIt() {
        var pipeline = Self.pipeline()
        let waiting = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, base: 2)
        #expect(waiting == [.readLog(from: 1, count: pipeline.settings.logReadCount)])
        #expect(Self.push(&pipeline, 2, 1, #"{"b":["put",{}]}"#).isEmpty)
        let caughtUp = pipeline.logRead(from: 1, entries: [Self.remote(1, #"{"x":["put",{}]}"#), Self.remote(2, #"{"y":["put",{}]}"#)], now: 1)
        #expect(Self.batch(caughtUp)?.commits.map(\.sessionID) == ["s1", "s2"])
    }

    @Test func aBaseThatACompleteReadDisprovesIsDiscardedInvalidBaseAtOnce() {
        var pipeline = Self.pipeline()
        _ = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, base: 99, now: 5)
        let actions = pipeline.logRead(from: 1, entries: [Self.remote(1, #"{"x":["put",{}]}"#)], now: 6)
        #expect(Self.answers(actions).map(\.2) == [.result(action: .discard, clock: 1, applied: nil, reason: "invalid_base")])
    }

    /// A log read stops at about 1 MiB (`SyncReadScripts.readLog`), so fewer commits than asked for do not
    /// mean the log ended: the pipeline reads on, and a base beyond such a read is not disproved by it.
    @Test func aReadCutShortByItsByteBudgetIsNotTheEndOfTheLog() {
        var pipeline = Self.pipeline()
        _ = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, base: 3, now: 5)
        let cut = pipeline.logRead(from: 1, entries: [Self.remote(1, #"{"x":["put",{}]}"#)], truncated: true, now: 6)
        #expect(Self.answers(cut).isEmpty, "the push still waits: the read did not reach Redis's head")
        #expect(cut.last == .readLog(from: 2, count: pipeline.settings.logReadCount), "reads on at once")
        let rest = pipeline.logRead(from: 2, entries: (2...3).map { Self.remote($0, #"{"x":["put",{}]}"#) }, now: 7)
        #expect(Self.batch(rest)?.commits.map(\.sessionID) == ["s1"], "decided once the replica reached its base")
        #expect(pipeline.head == 3)
    }

    @Test func aBaseTheReplicaCannotReachIsRefusedAtTheDeadline() {
        var pipeline = Self.pipeline { $0.logReadCount = 2 }
        _ = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, base: 3)
        // Redis's head is 3 (so the base is real), but the log is read slower than the deadline.
        _ = pipeline.headObserved(3, now: 1)
        let more = pipeline.logRead(from: 1, entries: (1...2).map { Self.remote($0, #"{"x":["put",{}]}"#) }, now: 2)
        #expect(more.contains(.readLog(from: 3, count: 2)))
        let deadline = pipeline.settings.headWaitNanos
        guard case .error(.unavailable, let message, _)? = Self.answers(pipeline.tick(now: deadline)).first?.2 else {
            Issue.record("not refused at the deadline"); return
        }
        #expect(message.contains("catch up"))
    }

    // MARK: Departures

    @Test func pushesOfADetachedMemberAreDroppedAndNeverCommitted() {
        var pipeline = Self.pipeline()
        guard let first = Self.batch(Self.push(&pipeline, 2, 1, #"{"x":["put",{}]}"#)) else { return }
        _ = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)
        _ = Self.push(&pipeline, 2, 2, #"{"b":["put",{}]}"#)
        guard let batch = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1)) else { return }
        #expect(batch.commits.map(\.sessionID) == ["s1", "s2"])
        _ = Self.push(&pipeline, 1, 2, #"{"c":["put",{}]}"#)
        // Member 1 leaves while its push is in Redis and another one waits.
        #expect(pipeline.detach(1, now: 2).isEmpty)
        #expect(pipeline.queuedCount == 0)
        // The batch lost the race: decided again without member 1's push, which is never answered.
        let again = pipeline.commitReplied(batchID: batch.id, .conflict(head: 1), now: 3)
        #expect(Self.batch(again)?.commits.map(\.sessionID) == ["s2"])
        #expect(Self.answers(again).isEmpty)
    }

    @Test func reJoiningDropsTheMembersPushesToo() {
        var pipeline = Self.pipeline()
        guard Self.batch(Self.push(&pipeline, 2, 1, #"{"x":["put",{}]}"#)) != nil else { return }
        _ = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)
        let (catchUp, actions) = pipeline.attach(1, since: 0, now: 1)
        #expect(catchUp == .log([], head: 0))
        #expect(actions.isEmpty)
        #expect(pipeline.queuedCount == 0)
    }

    // MARK: Batches

    @Test func theSameSessionAndPushIdNeverShareABatch() {
        var pipeline = Self.pipeline()
        guard let first = Self.batch(Self.push(&pipeline, 2, 1, #"{"x":["put",{}]}"#)) else { return }
        _ = Self.push(&pipeline, 1, 5, #"{"a":["put",{}]}"#)
        _ = Self.push(&pipeline, 1, 5, #"{"a":["put",{}]}"#)
        let batch = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1))
        #expect(batch?.commits.count == 1)
        #expect(pipeline.queuedCount == 1)
    }

    /// At most `maxSessionPushesPerBatch` pushes of one session per batch (so a dropped connection leaves
    /// few enough of its pushes committed unanswered for the re-push record to recognise their copies);
    /// the batch stops there, so the queue's order is kept.
    @Test func aSessionHasAtMostHalfTheRePushRecordInOneBatch() {
        var pipeline = Self.pipeline { $0.maxSessionPushesPerBatch = 2 }
        guard let first = Self.batch(Self.push(&pipeline, 2, 0, #"{"x":["put",{}]}"#)) else { return }
        for i in 1...3 { _ = Self.push(&pipeline, 1, i, #"{"r\#(i)":["put",{}]}"#) }
        _ = Self.push(&pipeline, 2, 4, #"{"y":["put",{}]}"#)
        guard let second = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1)) else { return }
        #expect(second.commits.map(\.sessionID) == ["s1", "s1"])
        guard let third = Self.batch(pipeline.commitReplied(batchID: second.id, .committed(firstClock: 2, atMs: 1), now: 2)) else { return }
        #expect(third.commits.map(\.sessionID) == ["s1", "s2"], "the rest, in their order")
        #expect(PushPipelineSettings(nodeID: "n").maxSessionPushesPerBatch == 32, "half of the 64 ids Redis remembers per session")
    }

    @Test func batchesAreBoundedByPushesAndBytes() {
        var pipeline = Self.pipeline { $0.maxBatchPushes = 3; $0.maxBatchBytes = 200 }
        guard let first = Self.batch(Self.push(&pipeline, 2, 0, #"{"x":["put",{}]}"#)) else { return }
        for i in 1...5 { _ = Self.push(&pipeline, 1, i, #"{"r\#(i)":["put",{}]}"#) }
        guard let second = Self.batch(pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 1)) else { return }
        #expect(second.commits.count == 3)
        let big = String(repeating: "y", count: 150)
        _ = Self.push(&pipeline, 2, 9, #"{"big":["put",{"v":"\#(big)"}]}"#)
        guard let third = Self.batch(pipeline.commitReplied(batchID: second.id, .committed(firstClock: 2, atMs: 1), now: 2)) else { return }
        #expect(third.commits.count == 2, "two small pushes; the large one does not fit beside them")
        guard let fourth = Self.batch(pipeline.commitReplied(batchID: third.id, .committed(firstClock: 5, atMs: 1), now: 3)) else { return }
        #expect(fourth.commits.map(\.sessionID) == ["s2"], "a push larger than the byte bound still goes, alone")
    }

    // MARK: Admission

    @Test func aPushThatWouldWaitTooLongIsRefusedAtOnceWithARetryHintThatGrowsWithTheBurst() {
        var pipeline = Self.pipeline {
            $0.maxBatchPushes = 10
            $0.initialRoundTripNanos = 10_000_000
            $0.initialPerPushNanos = 1_000_000
            $0.maxPushWaitNanos = 100_000_000
        }
        // Estimated wait of the n-th queued push (batch in flight, just sent): 19 ms for the in-flight
        // batch of one... each further batch of 10 takes 10 + 9 ms.
        var refusals: [UInt64] = []
        var accepted = 0
        for i in 0..<200 {
            for (_, _, answer) in Self.answers(Self.push(&pipeline, 1, i, #"{"r\#(i % 5)":["put",{}]}"#, now: 1)) {
                guard case .error(.unavailable, _, let retryAfterMs?) = answer else { Issue.record("\(answer)"); continue }
                refusals.append(retryAfterMs)
            }
            accepted = i + 1 - refusals.count
        }
        #expect(pipeline.estimatedWaitNanos(now: 1) <= 100e6 + 19e6)
        #expect(accepted == pipeline.queuedCount + 1)
        #expect(accepted > 40 && accepted < 60, "\(accepted)")
        #expect(refusals.count == 200 - accepted)
        // Each refused push is told to come back later than the ones refused before it (on average).
        let quarter = refusals.count / 4
        let early = refusals.prefix(quarter).reduce(0, +) / UInt64(quarter)
        let late = refusals.suffix(quarter).reduce(0, +) / UInt64(quarter)
        #expect(late > 3 * early, "\(early) → \(late)")
        #expect(refusals.allSatisfy { $0 <= pipeline.settings.maxRetryAfterMs })
    }

    @Test func aPushWithNothingAheadIsTakenEvenWhenRoundTripsAreSlow() {
        var pipeline = Self.pipeline { $0.maxPushWaitNanos = 1_000_000; $0.initialRoundTripNanos = 50_000_000 }
        #expect(Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) != nil)
        guard case .error(.unavailable, _, _)? = Self.answers(Self.push(&pipeline, 1, 2, #"{"a":["put",{}]}"#)).first?.2 else {
            Issue.record("a push behind a slow batch is refused")
            return
        }
    }

    /// A batch in Redis past its due time counts as late as long again: while Redis stalls, the estimate
    /// (and the retry hint) grow with the stall instead of falling to nothing.
    @Test func aStalledBatchMakesTheWaitGrowWithTheStall() {
        var pipeline = Self.pipeline { $0.maxPushWaitNanos = 50_000_000; $0.initialRoundTripNanos = 1_000_000; $0.initialPerPushNanos = 0 }
        #expect(Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, now: 0)) != nil)
        #expect(pipeline.estimatedWaitNanos(now: 0) == 2_000_000, "the batch's round trip, then its own")
        #expect(pipeline.estimatedWaitNanos(now: 1_000_000) == 1_000_000, "due now")
        #expect(pipeline.estimatedWaitNanos(now: 31_000_000) == 31_000_000, "30 ms late: 30 ms more, then its own")
        guard case .error(.unavailable, _, let retry?)? = Self.answers(Self.push(&pipeline, 1, 2, #"{"b":["put",{}]}"#, now: 501_000_000)).first?.2
        else {
            Issue.record("a push behind a batch 500 ms late is refused"); return
        }
        #expect(retry >= 450, "come back after about the stall beyond the bound: \(retry) ms")
    }

    /// `refuseIfBusy` (the shard's check before it parses a push's ops) refuses exactly what `push` would
    /// refuse as busy, counted the same, and lets everything else through to `push`.
    @Test func refuseIfBusyRefusesWhatPushWouldAndNothingElse() {
        var pipeline = Self.pipeline { $0.maxPushWaitNanos = 50_000_000; $0.initialRoundTripNanos = 1_000_000; $0.initialPerPushNanos = 0 }
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(1), now: 0) == nil, "nothing ahead: taken")
        #expect(Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, now: 0)) != nil)
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: 10_000_000) == nil, "a short wait: taken")
        #expect(pipeline.refuseIfBusy(from: 99, pushID: .number(2), now: 501_000_000) == nil, "not a live member: push decides")
        guard case .answer(let reply)? = pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: 501_000_000)?.first,
            case .error(.unavailable, let message, let retry?) = reply.answer
        else {
            Issue.record("a push behind a stalled batch is refused"); return
        }
        #expect(reply.pushID == .number(2) && reply.member == 1)
        #expect(message.contains("busy") && retry >= 450)
        #expect(pipeline.counters.overloadRefusals == 1)
        guard case .error(.unavailable, _, _)? = Self.answers(Self.push(&pipeline, 1, 3, #"{"b":["put",{}]}"#, now: 501_000_000)).first?.2 else {
            Issue.record("push refuses the same push"); return
        }
        #expect(pipeline.counters.overloadRefusals == 2)
    }

    /// The time a push waited in the node before its doc saw it (since its message was read) counts
    /// against the wait bound: with the doc's estimate alone within it, the sum passing it refuses (counted
    /// as `delayedRefusals`, apart from the doc's own); a short wait changes nothing; a push with nothing
    /// ahead is taken however long it waited (the loop's own bound refuses for the loop alone).
    @Test func timeWaitedBeforeTheDocCountsAgainstTheBound() {
        var pipeline = Self.pipeline { $0.maxPushWaitNanos = 50_000_000; $0.initialRoundTripNanos = 1_000_000; $0.initialPerPushNanos = 0 }
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(1), now: 0, waitedNanos: 500_000_000) == nil, "nothing ahead: taken")
        #expect(Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#, now: 0)) != nil)
        // The batch in Redis is due at 1 ms; the next push's own round trip follows: about 2 ms ahead.
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: 0) == nil, "the doc's estimate alone: taken")
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: 0, waitedNanos: 47_000_000) == nil, "47 + 2 ms: taken")
        guard case .answer(let late)? = pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: 0, waitedNanos: 49_000_000)?.first,
            case .error(.unavailable, let lateMessage, let lateRetry?) = late.answer
        else {
            Issue.record("49 + 2 ms: taken"); return
        }
        #expect(lateMessage.contains("waited 49 ms") && lateRetry >= 1, "\(lateMessage)")
        #expect(pipeline.counters.delayedRefusals == 1 && pipeline.counters.overloadRefusals == 0)
        guard case .error(.unavailable, _, _)? = Self.answers(
            pipeline.push(
                from: 1, sessionID: "s1", pushID: .number(3), base: pipeline.head, ops: Self.ops(#"{"b":["put",{}]}"#), bytes: 10,
                readOnly: false, now: 0, waitedNanos: 49_000_000)
        ).first?.2 else {
            Issue.record("push refuses the same push"); return
        }
        #expect(pipeline.counters.delayedRefusals == 2)
        // A stalled doc's own estimate over the bound stays a doc refusal, whatever the push waited.
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(4), now: 501_000_000, waitedNanos: 10_000_000) != nil)
        #expect(pipeline.counters.overloadRefusals == 1 && pipeline.counters.delayedRefusals == 2)
    }

    @Test func theQueueBoundStillApplies() {
        var pipeline = Self.pipeline { $0.maxQueuedPushes = 2; $0.maxPushWaitNanos = UInt64.max / 2 }
        _ = Self.push(&pipeline, 1, 0, #"{"a":["put",{}]}"#)
        _ = Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)
        _ = Self.push(&pipeline, 1, 2, #"{"a":["put",{}]}"#)
        guard case .error(.unavailable, let message, let retry?)? = Self.answers(Self.push(&pipeline, 1, 3, #"{"a":["put",{}]}"#)).first?.2 else {
            Issue.record("not refused"); return
        }
        #expect(message.contains("queued"))
        #expect(retry >= 1)
        #expect(pipeline.counters.queueFullRefusals == 1 && pipeline.counters.overloadRefusals == 0, "counted apart")
    }

    // MARK: Gaps and reloads

    @Test func aGapIsReadAfterItsGraceAndAGapTheLogNoLongerHasReloadsTheDoc() {
        var pipeline = Self.pipeline()
        #expect(pipeline.receive([Self.remote(3, #"{"x":["put",{}]}"#)], now: 10).isEmpty)
        #expect(pipeline.tick(now: 10 + pipeline.settings.gapGraceNanos - 1).isEmpty)
        #expect(pipeline.tick(now: 10 + pipeline.settings.gapGraceNanos) == [.readLog(from: 1, count: pipeline.settings.logReadCount)])
        // The log starts at 2 now: clock 1 is gone.
        #expect(pipeline.logRead(from: 1, entries: [Self.remote(2, #"{"y":["put",{}]}"#)], now: 11) == [.reload])
        var replica = DocReplica()
        replica.apply(clock: 1, ops: Self.ops(#"{"w":["put",{}]}"#))
        replica.apply(clock: 2, ops: Self.ops(#"{"y":["put",{}]}"#))
        replica.apply(clock: 3, ops: Self.ops(#"{"x":["put",{}]}"#))
        let reloaded = pipeline.load(replica, retainedFrom: 2, now: 12)
        // Every member restarts from a snapshot of the new state.
        let restarted = reloaded.compactMap { action -> Int? in
            if case .catchUp(let member, .snapshot(3, _)) = action { return member }
            return nil
        }
        #expect(restarted.sorted() == [1, 2])
        #expect(pipeline.head == 3)
    }

    @Test func aReloadThatSkipsOurOwnCommitAnswersItUnavailable() {
        var pipeline = Self.pipeline()
        guard let batch = Self.batch(Self.push(&pipeline, 1, 1, #"{"a":["put",{}]}"#)) else { return }
        _ = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 1)
        var replica = DocReplica()
        replica.apply(clock: 1, ops: Self.ops(#"{"x":["put",{}]}"#))
        replica.apply(clock: 2, ops: Self.ops(#"{"a":["put",{}]}"#))
        let actions = pipeline.load(replica, retainedFrom: 1, now: 2)
        guard case .answer(let reply) = actions.first, case .error(.unavailable, _, _) = reply.answer else {
            Issue.record("\(actions)"); return
        }
        #expect(pipeline.isIdle)
    }
}

@Suite struct PushPipelinePartsTests {
    @Test func theServiceTimeModelLearnsRoundTripsAndPerPushCosts() {
        var model = ServiceTimeModel(roundTripNanos: 1_000_000, perPushNanos: 10_000, weight: 0.5, maxBatch: 11)
        model.observe(size: 1, nanos: 3_000_000)
        #expect(model.roundTripNanos == 2_000_000)
        model.observe(size: 11, nanos: 4_000_000)  // (4 − 2) / 10 = 0.2 ms per push, full weight
        #expect(model.perPushNanos == 105_000)
        #expect(model.serviceNanos(size: 11) == 2_000_000 + 10 * 105_000)
        // W for 25 queued ahead, batches of 11: 26 pushes in 3 batches.
        #expect(model.waitNanos(ahead: 25, maxBatch: 11, remainingNanos: 500_000) == 500_000 + 3 * 2_000_000 + 23 * 105_000)
        // The per-push cost used never exceeds a round trip.
        var slow = ServiceTimeModel(roundTripNanos: 1_000_000, perPushNanos: 5_000_000, weight: 0.5, maxBatch: 11)
        #expect(slow.serviceNanos(size: 3) == 3_000_000)
        slow.observe(size: 2, nanos: 1_000_000)
        #expect(slow.perPushNanos < 5_000_000)
    }

    @Test func aBatchMessageRoundTripsAndOldNodesIgnoreIt() throws {
        let notices = (5...7).map {
            CommitNotice(clock: UInt64($0), ops: .object(["r\($0)": .array([.string("remove")])]), by: "s\($0)", node: "n1", pushID: .number($0), committedAtMs: 42)
        }
        let bytes = NodeMessage.commits(notices).encode()
        #expect(NodeMessage.decode(bytes) == .commits(notices))
        // What the script publishes decodes the same (any key order).
        let scripted = #"{"k":"b","first":5,"node":"n1","at":42,"b":[{"by":"s5","id":5,"ops":{"r5":["remove"]}},{"by":"s6","id":6,"ops":{"r6":["remove"]}},{"by":"s7","id":7,"ops":{"r7":["remove"]}}]}"#
        #expect(NodeMessage.decode(Array(scripted.utf8)) == .commits(notices))
        // Malformed batches are rejected whole.
        #expect(NodeMessage.decode(Array(#"{"k":"b","first":5,"node":"n1","at":42,"b":[]}"#.utf8)) == nil)
        #expect(NodeMessage.decode(Array(#"{"k":"b","first":0,"node":"n1","at":42,"b":[{"by":"s","ops":{}}]}"#.utf8)) == nil)
        #expect(NodeMessage.decode(Array(#"{"k":"b","first":5,"node":"n1","at":42,"b":[{"by":"s","ops":[]}]}"#.utf8)) == nil)
    }

    @Test func unavailableCarriesRetryAfterMs() throws {
        let frame = ServerMessage.error(ProtocolError(.unavailable, "busy", doc: "d", pushID: .number(3), retryAfterMs: 120))
        let object = try JSONParser.parse(frame).objectValue!
        #expect(object["retryAfterMs"] == .number(120))
        #expect(object["id"] == .number(3))
        #expect(try JSONParser.parse(ServerMessage.error(ProtocolError(.unavailable, "down"))).objectValue!["retryAfterMs"] == nil)
    }

    @Test func decidingAgainstABatchOverlayEqualsDecidingAgainstTheReplicaWithTheBatchApplied() throws {
        // Random pushes: each decided against the overlay of the ones before must match deciding against a
        // replica that has them applied (apart from the versions, which are pending in the overlay).
        var random = SplitMix64(seed: 3)
        func roll(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        for _ in 0..<500 {
            var replica = DocReplica()
            for i in 0..<roll(4) { replica.apply(clock: UInt64(i + 1), ops: Ops(["r\(roll(3))": .put(.object(["t": .string("ab")]))])) }
            var overlay = BatchOverlay(base: replica)
            var applied = replica
            for k in 0..<5 {
                let id = "r\(roll(3))"
                let op: RecordOp = [
                    .put(.object(["t": .string("x")])), .remove, .patch(Diff(["t": .append(.string("y"), offset: roll(4))])),
                    .patch(Diff(["u": .put(.number(k))])),
                ][roll(4)]
                let ops = Ops([id: op])
                let viaOverlay = try overlay.decide(ops: ops, base: replica.head, limits: SyncLimits())
                let viaReplica = try applied.decide(ops: ops, base: replica.head, limits: SyncLimits())
                #expect(viaOverlay.action == viaReplica.action)
                #expect(viaOverlay.applied == viaReplica.applied)
                #expect(viaOverlay.writes == viaReplica.writes)
                #expect(viaOverlay.created == viaReplica.created && viaOverlay.removed == viaReplica.removed)
                if viaOverlay.action != .discard {
                    overlay.apply(viaOverlay, pendingClock: applied.head + 1)
                    applied.apply(clock: applied.head + 1, ops: viaReplica.applied)
                }
                #expect(overlay.recordCount == applied.records.count)
            }
        }
    }
}
