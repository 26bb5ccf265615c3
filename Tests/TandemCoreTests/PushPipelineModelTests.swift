import Foundation
import Testing
@testable import TandemCore

/// Model-based randomized test of `PushPipeline`: a simulated world (a Redis that runs group commits the
/// way `GroupCommitScript` does, other nodes committing, a pub/sub channel that loses messages, members
/// that push, leave, re-join and resume, Redis failing, Redis losing its last commits (a failover, found
/// by the head check after the reconnect), time passing) drives one pipeline through random
/// interleavings, and after every step checks what members received against a reference model.
///
/// Checked, per seed:
/// - every push gets exactly one answer (result or error), unless its member detached first (then none);
/// - each member receives `result`s, `patch`es and catch-ups in strictly increasing clock order, without
///   gaps or duplicates, and discards at its current position; its state equals Redis's at its position;
/// - the pipeline's replica equals the reference state at its head (except between finding that Redis
///   lost commits and the reload that replaces it); after a loss every member converges on what Redis
///   kept, and nothing reaches a member on top of lost commits;
/// - nothing of a refused, discarded or dropped push is committed; a push in Redis is answered with its
///   clock and what Redis applied (or `unavailable`, when the reply was lost, or not at all if its member
///   left), and no push id of a session is committed twice;
/// - at most `maxBatchesInFlight` batches of the pipeline in Redis at a time (Redis runs them in order and
///   replies in order; a batch behind another runs only on the state it was decided against — the world's
///   Redis checks the condition as the script does), one log read at a time;
/// - admission refuses a push as busy exactly when something is ahead of it and the model's estimate of
///   its wait is over `maxPushWaitNanos` less the loop's admission margin (the bound on actual waits is
///   `PushAdmissionTests`' subject: here replies take arbitrary times);
/// - a commit linger (`commitLingerNanos`, on in most seeds) never outlasts its setting, never starts while
///   the loop is not busy, and ends at its deadline however late the timer fires — with pushes, departures,
///   remote commits and Redis failures arriving while it lasts (the guarantees above hold throughout).
@Suite struct PushPipelineModelTests {
    @Test func randomInterleavingsKeepEveryGuarantee() {
        var stats = World.Stats()
        // PIPELINE_SEED=N replays one seed with its whole trace.
        let only = ProcessInfo.processInfo.environment["PIPELINE_SEED"].flatMap { UInt64($0) }
        for seed in only.map({ $0...$0 }) ?? UInt64(1)...10_000 {
            var world = World(seed: seed, tracing: only != nil)
            world.run()
            stats.add(world.stats)
            if !world.failures.isEmpty {
                // Runs are deterministic: run it again with a trace.
                var traced = World(seed: seed, tracing: true)
                traced.run()
                Issue.record("seed \(seed): \(world.failures.prefix(5).joined(separator: "\n"))\n--- trace:\n\(traced.trace.suffix(only == nil ? 40 : 100_000).joined(separator: "\n"))")
                return
            }
        }
        // The interleavings reached what they are meant to exercise.
        // (Time jumps by seconds while a batch is in Redis, and a late batch counts as late as long again
        // in the wait estimate, so many pushes are refused as busy: some 750 batches of several pushes.)
        #expect(stats.batchesOver1 > 400, "\(stats)")
        #expect(stats.conflicts > 200, "\(stats)")
        #expect(stats.duplicates > 30, "\(stats)")
        #expect(stats.failedReplies > 200, "\(stats)")
        #expect(stats.reloads > 50, "\(stats)")
        #expect(stats.gapReads > 200, "\(stats)")
        #expect(stats.invalidBase > 50, "\(stats)")
        #expect(stats.overload > 50, "\(stats)")
        #expect(stats.droppedInFlight > 50, "\(stats)")
        #expect(stats.heldDiscards > 50, "\(stats)")
        #expect(stats.tooLarge > 50, "\(stats)")
        #expect(stats.losses > 50, "\(stats)")
        // Two batches in flight: replies in order, one ahead failing or losing its race with the second
        // already sent, another node's commit between them, a reconnect with both in Redis.
        #expect(stats.pipelined > 500, "\(stats)")
        #expect(stats.brokenChains > 100, "\(stats)")
        #expect(stats.failedAhead > 50, "\(stats)")
        #expect(stats.remoteBetween > 30, "\(stats)")
        #expect(stats.downWithTwo > 20, "\(stats)")
        // Commit lingers, and what happens while one lasts.
        #expect(stats.lingers > 500, "\(stats)")
        #expect(stats.lingersFilled > 100, "\(stats)")
        #expect(stats.pushedDuringLinger > 500, "\(stats)")
        #expect(stats.leftDuringLinger > 30, "\(stats)")
        #expect(stats.remoteDuringLinger > 50, "\(stats)")
        #expect(stats.downDuringLinger > 10, "\(stats)")
        #expect(stats.lateTimers > 100, "\(stats)")
    }
}

/// Redis as the group commit script sees it.
struct FakeRedis {
    var state = DocReplica()
    /// States after each clock (index = clock), the reference every replica and member is checked against.
    var states: [DocReplica] = [DocReplica()]
    var log: [CommitNotice] = []
    var retainedFrom: UInt64 = 1
    let retention: UInt64
    let maxDocRecords: Int
    /// Per session, its committed push ids, newest last (the script keeps the last 64).
    var recent: [String: [(id: JSONValue, clock: UInt64)]] = [:]
    /// The doc's tail as the script records it: the token of the batch that wrote the head, and the head.
    var tail: String?
    var head: UInt64 { state.head }

    init(retention: UInt64, maxDocRecords: Int) {
        self.retention = retention
        self.maxDocRecords = maxDocRecords
    }

    /// Runs a batch like `GroupCommitScript.commit`; `check` records discrepancies in the batch itself.
    mutating func execute(_ batch: CommitBatch, node: String, atMs: UInt64, check: (String) -> Void) -> CommitBatchOutcome {
        // Pipelined behind another batch: only on the state that one left.
        if let after = batch.after, head != after.lastClock || tail != after.tail { return .conflict(head: head) }
        var dups: [Int: UInt64] = [:]
        for (i, commit) in batch.commits.enumerated() {
            if let hit = recent[commit.sessionID]?.last(where: { $0.id == commit.pushID }) { dups[i] = hit.clock }
        }
        if !dups.isEmpty { return .duplicate(head: head, clocks: dups) }
        for (id, expectation) in batch.expectations {
            let ok: Bool
            switch expectation {
            case .version(let v): ok = (state.versions[id] ?? 0) == v
            case .exists: ok = state.records[id] != nil
            case .absent: ok = state.records[id] == nil
            }
            if !ok { return .conflict(head: head) }
        }
        if batch.created > 0 && state.records.count + batch.created - batch.removed > maxDocRecords {
            return .tooLarge(head: head, records: state.records.count + batch.created - batch.removed)
        }
        let first = head + 1
        var touched: Set<String> = []
        for (i, commit) in batch.commits.enumerated() {
            let clock = first + UInt64(i)
            guard let ops = try? Ops(json: commit.ops) else {
                check("batch commit \(i) has unparseable ops")
                return .failed
            }
            touched.formUnion(ops.records.keys)
            state.apply(clock: clock, ops: ops)
            append(CommitNotice(clock: clock, ops: commit.ops, by: commit.sessionID, node: node, pushID: commit.pushID, committedAtMs: atMs))
        }
        // The batch's net writes (what the script writes) must be exactly what applying its commits in order did.
        for (id, write) in batch.writes {
            let clock = first + UInt64(write.commitIndex)
            if let value = write.value {
                if state.records[id]?.serialized != value { check("write of \(id) differs from the commits' result") }
                if state.versions[id] != clock { check("version of \(id): write says \(clock), commits say \(state.versions[id] ?? 0)") }
            } else {
                if state.records[id] != nil { check("write removes \(id), the commits keep it") }
                if state.tombstones[id] != clock { check("tombstone of \(id): write says \(clock)") }
            }
        }
        for id in touched where batch.writes[id] == nil { check("record \(id) changed by the batch but not written") }
        tail = "\(batch.token)@\(head)"
        return .committed(firstClock: first, atMs: atMs)
    }

    mutating func append(_ notice: CommitNotice) {
        log.append(notice)
        states.append(state)
        if let id = notice.pushID {
            recent[notice.by, default: []].append((id, notice.clock))
            if recent[notice.by]!.count > 64 { recent[notice.by]!.removeFirst() }
        }
        if head > retention { retainedFrom = max(retainedFrom, head - retention + 1) }
    }

    /// A commit by another node (decided against the current state, as a caught-up node would).
    mutating func remoteCommit(_ ops: Ops, by session: String, id: Int, atMs: UInt64) -> CommitNotice? {
        guard let decision = try? state.decide(ops: ops, base: head, limits: SyncLimits()), decision.action != .discard else {
            return nil
        }
        if state.records.count + decision.created - decision.removed > maxDocRecords && decision.created > 0 { return nil }
        let notice = CommitNotice(
            clock: head + 1, ops: decision.applied.json, by: session, node: "other", pushID: .number(id), committedAtMs: atMs)
        state.apply(clock: notice.clock, ops: decision.applied)
        append(notice)
        tail = "other:\(id)@\(head)"
        return notice
    }

    /// Redis loses its last `count` commits (a failover to a replica that had not received them, a restart
    /// from an AOF that missed them): the doc is as it was before them, and their clocks will be reused.
    mutating func lose(_ count: Int) {
        let count = min(count, Int(head))
        guard count > 0 else { return }
        states.removeLast(count)
        log.removeLast(count)
        state = states.last!
        tail = nil  // (an older value, in Redis: none of a lost batch's)
        let kept = head
        for session in recent.keys { recent[session]!.removeAll { $0.clock > kept } }
        retainedFrom = min(retainedFrom, kept + 1)
    }

    /// `XRANGE`-by-clock from `from`, as `SyncStore.log` returns it.
    func read(from: UInt64, count: Int) -> [CommitNotice] {
        let start = max(from, retainedFrom)
        guard start <= head, count > 0 else { return [] }
        let upper = min(head, start + UInt64(count) - 1)
        return Array(log[Int(start - 1)...Int(upper - 1)])
    }
}

/// One push as the world tracks it.
struct Instance {
    var member: Int
    var session: String
    var id: JSONValue
    var ops: Ops
    var answers: [PushAnswer] = []
    /// Its member detached (or re-joined) before it was answered.
    var dropped = false
    /// In a batch that is in Redis right now (id of that batch).
    var inBatch: UInt64?
    /// In the batch when its member detached.
    var droppedInFlight = false
    /// Committed in Redis at this clock.
    var committedAt: UInt64?
}

/// A member as a client sees its stream.
struct MemberView {
    var session: String
    var viewer: Bool
    /// Position in the doc's clock stream, once the first catch-up arrived.
    var position: UInt64?
    var records: [String: JSONValue] = [:]
    var fetching: (from: UInt64, head: UInt64)?
    /// Received a catch-up while the node held commits Redis had lost (between the head check that found
    /// the loss and the reload): it may hold them too until the reload's snapshot replaces its state.
    var stale = false
}

struct World {
    struct Stats: CustomStringConvertible {
        var batchesOver1 = 0, conflicts = 0, duplicates = 0, failedReplies = 0, reloads = 0, gapReads = 0
        var invalidBase = 0, overload = 0, droppedInFlight = 0, heldDiscards = 0, tooLarge = 0, commits = 0, losses = 0
        var pipelined = 0, brokenChains = 0, failedAhead = 0, remoteBetween = 0, downWithTwo = 0
        var lingers = 0, lingersFilled = 0, pushedDuringLinger = 0, leftDuringLinger = 0, remoteDuringLinger = 0
        var downDuringLinger = 0, lateTimers = 0

        mutating func add(_ other: Stats) {
            batchesOver1 += other.batchesOver1; conflicts += other.conflicts; duplicates += other.duplicates
            failedReplies += other.failedReplies; reloads += other.reloads; gapReads += other.gapReads
            invalidBase += other.invalidBase; overload += other.overload; droppedInFlight += other.droppedInFlight
            heldDiscards += other.heldDiscards; tooLarge += other.tooLarge; commits += other.commits
            losses += other.losses
            pipelined += other.pipelined; brokenChains += other.brokenChains; failedAhead += other.failedAhead
            remoteBetween += other.remoteBetween; downWithTwo += other.downWithTwo
            lingers += other.lingers; lingersFilled += other.lingersFilled; pushedDuringLinger += other.pushedDuringLinger
            leftDuringLinger += other.leftDuringLinger; remoteDuringLinger += other.remoteDuringLinger
            downDuringLinger += other.downDuringLinger; lateTimers += other.lateTimers
        }

        var description: String {
            "batches>1 \(batchesOver1), conflicts \(conflicts), duplicates \(duplicates), failed replies \(failedReplies), "
                + "reloads \(reloads), gap reads \(gapReads), invalid_base \(invalidBase), overload \(overload), "
                + "dropped in flight \(droppedInFlight), held discards \(heldDiscards), too_large \(tooLarge), commits \(commits), "
                + "losses \(losses), pipelined \(pipelined), broken chains \(brokenChains), failed ahead \(failedAhead), "
                + "remote between \(remoteBetween), down with two \(downWithTwo), lingers \(lingers) (filled \(lingersFilled)), "
                + "pushed during a linger \(pushedDuringLinger), left during one \(leftDuringLinger), remote commits during one "
                + "\(remoteDuringLinger), Redis down during one \(downDuringLinger), late timers \(lateTimers)"
        }
    }

    var random: SplitMix64
    var pipeline: PushPipeline<Int>
    var redis: FakeRedis
    var now: UInt64 = 1_000_000_000
    /// A reference, so that `check` and `note` need not be mutating (their messages read the world).
    final class Failures {
        var list: [String] = []
        var trace: [String] = []
    }
    let failureLog = Failures()
    var failures: [String] { failureLog.list }
    var trace: [String] { failureLog.trace }
    var stats = Stats()

    var members: [Int: MemberView] = [:]
    var nextMember = 1
    var instances: [Instance] = []
    /// Sessions whose connection is gone, with what their client would re-send on resuming.
    var departed: [(session: String, position: UInt64?, records: [String: JSONValue], resend: [Int])] = []
    var nextPushID = 1
    var nextSession = 1

    var channel: [[CommitNotice]] = []
    /// Batches sent to Redis, in order (Redis runs and answers them in this order): the pipeline's, and
    /// those it took back while they were in Redis.
    var pendingCommits: [(batch: CommitBatch, executed: CommitBatchOutcome?)] = []
    var pendingRead: (from: UInt64, count: Int)?
    var pendingLoad = false
    var redisUp = true
    var steps: Int

    /// Whether `note` records anything (building the trace costs more than the rest of a run).
    let tracing: Bool

    init(seed: UInt64, tracing: Bool = false) {
        self.tracing = tracing
        random = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15)
        var settings = PushPipelineSettings(nodeID: "me")
        settings.retention = 8
        settings.maxBatchPushes = 1 + Int(random.next() % 6)
        settings.maxBatchBytes = 400
        settings.maxQueuedPushes = 10
        settings.maxAttempts = 3
        settings.logReadCount = 2 + Int(random.next() % 4)
        settings.limits.maxPushOps = 3
        settings.limits.maxRecordBytes = 80
        settings.limits.maxDocRecords = 5
        settings.maxPushWaitNanos = 40_000_000
        settings.initialRoundTripNanos = 2_000_000
        settings.initialPerPushNanos = 1_000_000
        // Mostly pipelined (two or three batches in Redis), a quarter one at a time.
        settings.maxBatchesInFlight = [1, 2, 2, 3][Int(random.next() % 4)]
        // Commit linger: off in a quarter of the seeds, else up to 8 ms (steps are up to 4 ms apart), cut
        // short at 2–4 pushes, and the loop busy at 0 or 1 ms of lag (pushes bring 0, 0.5 or 3 ms).
        settings.commitLingerNanos = random.next() % 4 == 0 ? 0 : 1_000_000 * (1 + random.next() % 8)
        settings.commitLingerPushes = 2 + Int(random.next() % 3)
        settings.commitLingerMinLagNanos = random.next() % 2 == 0 ? 0 : 1_000_000
        pipeline = PushPipeline(settings: settings, randomSeed: seed)
        redis = FakeRedis(retention: settings.retention, maxDocRecords: 6)
        steps = 20 + Int(random.next() % 60)
    }

    mutating func roll(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { roll(100) < percent }
    func note(_ message: @autoclosure () -> String) {
        if tracing { failureLog.trace.append("[\(now / 1_000_000) ms] \(message())") }
    }

    func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { failureLog.list.append(message()) }
    }

    // MARK: Running

    mutating func run() {
        // Some history before the node loads the doc.
        for _ in 0..<roll(4) { remoteCommits() }
        pendingLoad = true
        for _ in 0..<steps {
            step()
            checkReplica()
            checkLinger()
            if !failures.isEmpty { return }
        }
        drain()
        stats.lingers = Int(pipeline.counters.lingersExpired + pipeline.counters.lingersFilled)
        stats.lingersFilled = Int(pipeline.counters.lingersFilled)
        finalChecks()
    }

    var lingering: Bool { pipeline.lingerUntil != nil && pipeline.queuedCount > 0 }

    /// The shard's timer for `nextDeadline` fires: on time, or late (a busy loop), never early.
    mutating func fireTimer() {
        guard let deadline = pipeline.nextDeadline else { return tick() }
        let late = chance(50) ? UInt64(roll(30_000_000)) : 0
        if late > 0 { stats.lateTimers += 1 }
        now = max(now, deadline) + late
        note("timer for \(deadline / 1_000_000) ms fires")
        apply(pipeline.tick(now: now))
        let next = pipeline.nextDeadline
        check(next.map { $0 > now } ?? true, "nextDeadline \(next.map(String.init) ?? "-") not after the timer at \(now)")
    }

    /// A linger lasts at most its setting; an expired one does not outlive a step.
    mutating func checkLinger() {
        guard let until = pipeline.lingerUntil, pipeline.queuedCount > 0 else { return }
        check(until - pipeline.lingerStartedAt <= pipeline.settings.commitLingerNanos, "a linger of \(until - pipeline.lingerStartedAt) ns")
    }

    mutating func step() {
        now += UInt64(roll(4_000_000))
        switch roll(100) {
        case 0..<24: push()
        case 24..<32: if !pendingCommits.isEmpty { executeCommit() } else { push() }
        case 32..<40: replyCommit()
        case 40..<51: deliverMessage()
        case 51..<55: dropMessage()
        case 55..<62: remoteCommits()
        case 62..<67: completeRead()
        case 67..<70: if !pipeline.isLoaded && redisUp { pendingLoad = true }; completeLoad()
        case 70..<74: completeFetch()
        case 74..<78: join()
        case 78..<81: leave()
        case 81..<83: rejoin()
        case 83..<85: toggleRedis()
        case 85..<87: apply(pipeline.headObserved(redis.head, now: now))
        case 87..<88: loseCommits()
        case 88..<93: fireTimer()
        default: tick()
        }
    }

    /// Everything outstanding completes, Redis is up, time passes: the world comes to rest.
    mutating func drain() {
        if !redisUp {
            redisUp = true
            apply(pipeline.setRedisAvailable(true, now: now))
        }
        for _ in 0..<400 {
            if !failures.isEmpty { return }
            let busy = !pendingCommits.isEmpty || !channel.isEmpty || pendingRead != nil || pendingLoad
                || members.values.contains { $0.fetching != nil } || !pipeline.isIdle
            if !busy && pipeline.head == redis.head { return }
            now += 50_000_000
            if !pendingCommits.isEmpty {
                if pendingCommits[0].executed == nil { executeCommit(plain: true) }
                replyCommit()
            } else if !channel.isEmpty {
                deliverMessage()
            } else if pendingRead != nil {
                completeRead(plain: true)
            } else if pendingLoad || !pipeline.isLoaded {
                // The shard retries a failed first load on its reconcile timer.
                pendingLoad = true
                completeLoad(plain: true)
            } else if let member = members.first(where: { $0.value.fetching != nil })?.key {
                completeFetch(member, plain: true)
            } else {
                apply(pipeline.headObserved(redis.head, now: now))
                now += 3_000_000_000
                apply(pipeline.tick(now: now))
            }
            checkReplica()
        }
        failureLog.list.append("the world did not come to rest: \(pipeline.queuedCount) queued, \(pipeline.inFlightCount) in flight")
    }

    // MARK: Members

    mutating func newSession() -> String {
        defer { nextSession += 1 }
        return "s\(nextSession)"
    }

    mutating func join() {
        guard pipeline.isLoaded else { return }
        let member = nextMember
        nextMember += 1
        var view = MemberView(session: newSession(), viewer: chance(15))
        var since: UInt64? = nil
        var resend: [Int] = []
        if !departed.isEmpty && chance(60) {
            // A reconnect that resumes its session: catch up from where it was, re-send what went unanswered.
            let old = departed.remove(at: roll(departed.count))
            view.session = old.session
            view.viewer = false
            if let position = old.position, chance(80) {
                since = position
                view.position = position
                view.records = old.records
            }
            resend = old.resend
        } else if chance(20) {
            since = 0
            view.position = 0
        }
        members[member] = view
        note("join m\(member) \(view.session) since \(since.map(String.init) ?? "-")")
        let (catchUp, actions) = pipeline.attach(member, since: since, now: now)
        receiveCatchUp(member, catchUp)
        apply(actions)
        if isLive(member) {
            for index in resend {
                pushInstance(member, ops: instances[index].ops, id: instances[index].id)
            }
        }
    }

    mutating func leave() {
        guard let member = members.keys.sorted().randomElement(using: &random) else { return }
        let view = members.removeValue(forKey: member)!
        var resend: [Int] = []
        for i in instances.indices where instances[i].member == member && instances[i].answers.isEmpty && !instances[i].dropped {
            instances[i].dropped = true
            if instances[i].inBatch != nil || instances[i].committedAt != nil {
                instances[i].droppedInFlight = true
                stats.droppedInFlight += 1
            }
            resend.append(i)
        }
        // Pushes answered `unavailable` are re-sent too, as a client would.
        for i in instances.indices where instances[i].member == member {
            if case .error(.unavailable, _, _)? = instances[i].answers.first { resend.append(i) }
        }
        // (Leaving before the reload after Redis lost commits, its position may be a clock Redis reuses: as
        // for those that left before the loss, see `loseCommits`.)
        let position = pipeline.regressed || view.stale ? nil : view.position
        if chance(70) { departed.append((view.session, position, view.records, resend.sorted())) }
        if lingering { stats.leftDuringLinger += 1 }
        note("leave m\(member)")
        apply(pipeline.detach(member, now: now))
    }

    mutating func rejoin() {
        guard let member = members.keys.sorted().randomElement(using: &random), let position = members[member]?.position else { return }
        for i in instances.indices where instances[i].member == member && instances[i].answers.isEmpty && !instances[i].dropped {
            instances[i].dropped = true
            if instances[i].inBatch != nil || instances[i].committedAt != nil { instances[i].droppedInFlight = true }
        }
        let since: UInt64? = chance(50) ? position : nil
        members[member]!.fetching = nil
        note("rejoin m\(member) since \(since.map(String.init) ?? "-")")
        let (catchUp, actions) = pipeline.attach(member, since: since, now: now)
        receiveCatchUp(member, catchUp)
        apply(actions)
    }

    func isLive(_ member: Int) -> Bool {
        pipeline.delivery.cursor(of: member) != nil && !pipeline.delivery.isCatchingUp(member) && members[member]?.fetching == nil
    }

    // MARK: Pushes

    mutating func randomOps(_ records: [String: JSONValue]) -> Ops {
        var ops: [String: RecordOp] = [:]
        let count = chance(8) ? 4 : 1 + roll(2)
        for _ in 0..<count {
            let id = "r\(roll(4))"
            switch roll(10) {
            case 0..<3:
                ops[id] = .put(.object(["v": .number(roll(100))]))
            case 3:
                ops[id] = chance(30) ? .put(.object(["big": .string(String(repeating: "x", count: 90))])) : .remove
            case 4..<7:
                ops[id] = .patch(Diff(["f": .put(.number(roll(100)))]))
            default:
                let length = records[id]?.objectValue?["t"]?.stringValue?.utf16.count ?? 0
                ops[id] = .patch(Diff(["t": .append(.string("ab"), offset: chance(70) ? length : roll(3))]))
            }
        }
        return Ops(ops)
    }

    mutating func push() {
        let live = members.keys.sorted().filter { isLive($0) }
        guard let member = live.randomElement(using: &random) else { return }
        let view = members[member]!
        if chance(6), let old = instances.indices.filter({ instances[$0].member == member && instances[$0].answers.isEmpty && !instances[$0].dropped }).randomElement(using: &random) {
            // The same push id again while the first copy is still pending (a buggy client).
            pushInstance(member, ops: instances[old].ops, id: instances[old].id)
            return
        }
        let id = JSONValue.number(nextPushID)
        nextPushID += 1
        pushInstance(member, ops: randomOps(view.records), id: id)
    }

    mutating func pushInstance(_ member: Int, ops: Ops, id: JSONValue) {
        let view = members[member]!
        let position = view.position ?? 0
        var base = position
        switch roll(10) {
        case 0: base = position - min(position, UInt64(roll(5)))
        case 1: base = redis.head  // seen on another node
        case 2: base = redis.head + 1 + UInt64(roll(3))  // a clock this doc never had
        default: break
        }
        instances.append(Instance(member: member, session: view.session, id: id, ops: ops))
        note("push m\(member) id \(id.serializedString) base \(base) ops \(ops.json.serializedString)")
        let bytes = ops.json.serialized.count
        // Admission follows the model: a push is refused as busy exactly when something is ahead of it
        // and its estimated wait is over the bound.
        let estimate = pipeline.estimatedWaitNanos(now: now)
        let ahead = pipeline.queuedCount + pipeline.inFlightCount > 0
        let full = pipeline.queuedCount >= pipeline.settings.maxQueuedPushes
        let wasEmpty = pipeline.queuedCount == 0
        if lingering { stats.pushedDuringLinger += 1 }
        // The loop's lag as the shard passes it: idle, a little behind, busy.
        let lag: UInt64 = [0, 500_000, 3_000_000][roll(3)]
        // The loop's admission margin (`LoopLoad.marginNanos`): none, some, more than the whole bound.
        // (Mostly none: a margin refuses more, and the pipelining and lingers need pushes that get in.)
        let margins = [UInt64](repeating: 0, count: 14) + [pipeline.settings.maxPushWaitNanos / 3, pipeline.settings.maxPushWaitNanos &* 2]
        // (From the push's number, not the seed's generator: the rest of the run stays what it was without.)
        let margin = margins[nextPushID % margins.count]
        let actions = pipeline.push(
            from: member, sessionID: view.session, pushID: id, base: base, ops: ops, bytes: bytes, readOnly: view.viewer, now: now,
            loopLagNanos: lag, marginNanos: margin)
        if wasEmpty && lag < pipeline.settings.commitLingerMinLagNanos {
            check(!lingering, "a linger started while the loop was not busy (lag \(lag) ns)")
        }
        let busy = actions.contains {
            if case .answer(let reply) = $0, case .error(.unavailable, let message, _) = reply.answer, message.contains("busy") { return true }
            return false
        }
        if !view.viewer && redisUp {
            let limit = Double(pipeline.settings.maxPushWaitNanos)
            let over = pipeline.isLoaded && ahead && !full && estimate > limit - min(Double(margin), limit)
            check(busy == over, "admission: busy \(busy), estimate \(estimate / 1e6) ms, margin \(margin / 1_000_000) ms, something ahead \(ahead)")
        }
        apply(actions)
    }

    // MARK: Redis and the network

    /// Redis runs the next batch it has (in the order sent).
    mutating func executeCommit(plain: Bool = false) {
        guard let index = pendingCommits.firstIndex(where: { $0.executed == nil }) else { return }
        let pending = pendingCommits[index]
        if !plain && chance(index > 0 ? 70 : 20) {
            // Another node gets to these records first (between two batches of ours, when one ran already).
            let ids = Array(pending.batch.writes.keys.sorted().prefix(1))
            if let id = ids.first, let notice = redis.remoteCommit(Ops([id: .put(.object(["other": .number(1)]))]), by: "o1", id: nextPushID, atMs: now / 1_000_000) {
                nextPushID += 1
                channel.append([notice])
                if index > 0 { stats.remoteBetween += 1 }
            }
        }
        if !plain && chance(8) {
            // Redis fails before running it (an error reply; those behind it still run).
            pendingCommits[index].executed = .failed
            note("batch \(pending.batch.id) fails before execution")
            return
        }
        var problems: [String] = []
        let outcome = redis.execute(pending.batch, node: "me", atMs: now / 1_000_000) { problems.append($0) }
        for problem in problems { check(false, "batch \(pending.batch.id): \(problem)") }
        note("batch \(pending.batch.id) executed: \(outcome)")
        if case .committed(let first, _) = outcome {
            for (k, commit) in pending.batch.commits.enumerated() {
                guard let i = instances.firstIndex(where: { $0.inBatch == pending.batch.id && $0.session == commit.sessionID && $0.id == commit.pushID }) else {
                    continue
                }
                instances[i].committedAt = first + UInt64(k)
            }
            channel.append(Array(redis.log.suffix(pending.batch.commits.count)))
            stats.commits += pending.batch.commits.count
        }
        pendingCommits[index].executed = (!plain && chance(8)) ? .failed : outcome
        if pendingCommits[index].executed == .failed { note("… and its reply is lost") }
    }

    /// The reply to the oldest batch in Redis (running it first if it has not run).
    mutating func replyCommit() {
        guard let pending = pendingCommits.first else { return }
        if pending.executed == nil { executeCommit() }
        guard let outcome = pendingCommits.first?.executed else { return }
        pendingCommits.removeFirst()
        let behind = pipeline.batchesInFlight > 1
        switch outcome {
        case .conflict, .tooLarge: stats.conflicts += 1
        case .duplicate: stats.duplicates += 1
        case .failed: stats.failedReplies += 1
        case .committed: break
        }
        if case .committed = outcome {} else {
            for i in instances.indices where instances[i].inBatch == pending.batch.id { instances[i].inBatch = nil }
            if behind { stats.brokenChains += 1 }
            if behind && outcome == .failed { stats.failedAhead += 1 }
        }
        note("reply batch \(pending.batch.id): \(outcome)")
        apply(pipeline.commitReplied(batchID: pending.batch.id, outcome, now: now))
        check(pipeline.batchesInFlight <= pipeline.settings.maxBatchesInFlight, "\(pipeline.batchesInFlight) batches in flight")
    }

    mutating func deliverMessage() {
        guard !channel.isEmpty else { return }
        let message = channel.removeFirst()
        note("message \(message.map(\.clock))")
        apply(pipeline.receive(message, now: now))
    }

    mutating func dropMessage() {
        guard !channel.isEmpty else { return }
        let message = channel.removeFirst()
        note("lost message \(message.map(\.clock))")
    }

    mutating func remoteCommits() {
        if lingering { stats.remoteDuringLinger += 1 }
        var message: [CommitNotice] = []
        for _ in 0..<(1 + roll(3)) {
            if let notice = redis.remoteCommit(randomOps(redis.state.records), by: "o\(1 + roll(2))", id: nextPushID, atMs: now / 1_000_000) {
                message.append(notice)
            }
            nextPushID += 1
        }
        guard !message.isEmpty else { return }
        note("remote commits \(message.map(\.clock))")
        if chance(50) { channel.append(message) } else { channel.append(contentsOf: message.map { [$0] }) }
    }

    mutating func completeRead(plain: Bool = false) {
        guard let read = pendingRead else { return }
        pendingRead = nil
        if !redisUp || (!plain && chance(10)) {
            note("read from \(read.from) fails")
            apply(pipeline.logReadFailed(now: now))
            return
        }
        var entries = redis.read(from: read.from, count: read.count)
        // A read stops at its byte budget (about 1 MiB, whole entries, at least one): fewer commits than
        // the log has, and it says so.
        let truncated = !plain && entries.count > 1 && chance(20)
        if truncated { entries = Array(entries.prefix(1 + roll(entries.count - 1))) }
        note("read from \(read.from): \(entries.map(\.clock))\(truncated ? " (cut at its byte budget)" : "")")
        apply(pipeline.logRead(from: read.from, entries: entries, truncated: truncated, now: now))
    }

    mutating func completeLoad(plain: Bool = false) {
        guard pendingLoad else { return }
        pendingLoad = false
        if !redisUp || (!plain && chance(10)) {
            note("load fails")
            apply(pipeline.loadFailed(now: now))
            return
        }
        note("load at \(redis.head) retained from \(redis.retainedFrom)")
        stats.reloads += pipeline.isLoaded ? 1 : 0
        apply(pipeline.load(redis.state, retainedFrom: redis.retainedFrom, now: now))
    }

    mutating func completeFetch(plain: Bool = false) {
        guard let member = members.keys.sorted().filter({ members[$0]!.fetching != nil }).randomElement(using: &random) else { return }
        completeFetch(member, plain: plain)
    }

    /// What the shard does with a `.fetch` catch-up: read the log, send it, continue (or fall back to a
    /// snapshot when the read failed or the history is gone).
    mutating func completeFetch(_ member: Int, plain: Bool) {
        guard let fetching = members[member]?.fetching else { return }
        members[member]!.fetching = nil
        guard pipeline.delivery.isCatchingUp(member) else { return }
        let failed = !redisUp || (!plain && chance(10))
        let head = pipeline.head
        let entries = failed ? [] : redis.read(from: fetching.from, count: 4).filter { $0.clock <= head }
        note("fetch m\(member) from \(fetching.from): \(entries.map(\.clock))")
        let next: SyncDoc<Int>.CatchUp?
        if let last = entries.last, entries.first?.clock == fetching.from {
            receiveLog(member, entries)
            next = pipeline.continueCatchUp(member, through: last.clock)
        } else {
            let (catchUp, actions) = pipeline.attach(member, since: nil, now: now)
            receiveCatchUp(member, catchUp)
            apply(actions)
            next = nil
        }
        if let next { receiveCatchUp(member, next) }
    }

    mutating func toggleRedis() {
        if lingering && redisUp { stats.downDuringLinger += 1 }
        redisUp.toggle()
        note(redisUp ? "Redis is back" : "Redis is down")
        if !redisUp {
            // Whatever was in flight fails: Redis ran a prefix of it (what reached it before the connection
            // dropped), and every reply is lost.
            if pipeline.batchesInFlight > 1 { stats.downWithTwo += 1 }
            while pendingCommits.contains(where: { $0.executed == nil }) && chance(50) { executeCommit(plain: true) }
            for i in pendingCommits.indices { pendingCommits[i].executed = .failed }
            apply(pipeline.setRedisAvailable(false, now: now))
            while !pendingCommits.isEmpty { replyCommit() }
            if pendingRead != nil { completeRead() }
            if pendingLoad { completeLoad() }
        } else {
            apply(pipeline.setRedisAvailable(true, now: now))
            if pipeline.isLoaded { apply(pipeline.headObserved(redis.head, now: now)) } else { pendingLoad = true }
        }
    }

    /// Redis loses its last commits while nothing of this node's is in it (a batch, a read, a load, a
    /// catch-up read): the connection drops with it (pub/sub messages in flight are gone), and the head
    /// check after the reconnect, issued knowing the head from before the loss, finds Redis behind.
    /// Commits answered before the loss stay answered (their loss is what `--redis-wait-replicas` narrows);
    /// everything else must hold: every member converges on what Redis keeps, every push one answer.
    mutating func loseCommits() {
        // (Only once the doc is loaded: commits pub/sub brought before the first load are applied after it
        // and may be lost ones; the periodic head check finds that later, outside this model's steps.)
        guard redisUp, pipeline.isLoaded, redis.head > 0, pendingCommits.isEmpty, pendingRead == nil, !pendingLoad,
            members.values.allSatisfy({ $0.fetching == nil })
        else { return }
        let known = pipeline.knownRedisHead
        let count = 1 + roll(min(3, Int(redis.head)))
        redis.lose(count)
        // A session that left before the loss and resumes later would resume at a clock whose commit Redis
        // has since reused for another: the node cannot tell (the checksum in its catch-up can, and the
        // client then starts from a snapshot — issue 13, not modelled here), so such sessions resume from
        // a snapshot.
        for i in departed.indices { departed[i].position = nil }
        channel.removeAll()
        stats.losses += 1
        note("Redis loses its last \(count) commits: head \(redis.head) (the node knew \(known))")
        apply(pipeline.setRedisAvailable(false, now: now))
        apply(pipeline.setRedisAvailable(true, now: now))
        apply(pipeline.headObserved(redis.head, knownAtIssue: known, now: now))
    }

    mutating func tick() {
        now += UInt64(roll(4)) * 700_000_000
        apply(pipeline.tick(now: now))
        // The shard sets one timer per doc at `nextDeadline`: one that stays due after the tick would spin.
        let next = pipeline.nextDeadline
        check(next.map { $0 > now } ?? true, "nextDeadline \(next.map(String.init) ?? "-") not after the tick at \(now)")
    }

    // MARK: Actions

    mutating func apply(_ actions: [PushAction<Int>]) {
        var delivered = false
        for action in actions {
            switch action {
            case .commit(let batch):
                check(pipeline.batchesInFlight <= pipeline.settings.maxBatchesInFlight, "more than the depth of batches in Redis")
                check(redisUp, "a batch while Redis is down")
                // A pipelined batch names the one it runs behind: the pipeline's last batch still in Redis.
                if let after = batch.after {
                    stats.pipelined += 1
                    check(pendingCommits.last?.batch.token == after.token, "batch \(batch.id) runs behind \(after.token), which is not the batch before it")
                }
                pendingCommits.append((batch, nil))
                if batch.commits.count > 1 { stats.batchesOver1 += 1 }
                note("batch \(batch.id)\(batch.after.map { " after \($0.tail)" } ?? ""): \(batch.commits.map { "\($0.sessionID)/\($0.pushID.serializedString)" })")
                // (A push of a batch the pipeline took back while it was in Redis may be in a new one before
                // the old one's reply.)
                let waiting = Set(pendingCommits.map(\.batch.id))
                for commit in batch.commits {
                    guard let i = instances.firstIndex(where: {
                        $0.session == commit.sessionID && $0.id == commit.pushID && $0.answers.isEmpty && !$0.dropped
                            && ($0.inBatch == nil || ($0.inBatch != batch.id && waiting.contains($0.inBatch!) && $0.committedAt == nil))
                    }) else {
                        check(false, "batch \(batch.id) holds \(commit.sessionID)/\(commit.pushID.serializedString), which is not pending (dropped or answered)")
                        continue
                    }
                    instances[i].inBatch = batch.id
                }
            case .deliver(let commit, let patchTo, let result):
                for member in patchTo {
                    receivePatch(member, commit)
                }
                if let result { answer(result, commit: commit) }
                delivered = true
            case .answer(let reply):
                if delivered, case .result(.discard, _, _, "void") = reply.answer { stats.heldDiscards += 1 }
                answer(reply, commit: nil)
            case .readLog(let from, let count):
                check(pendingRead == nil, "a second log read while one is in flight")
                check(from == pipeline.head + 1, "read from \(from) at head \(pipeline.head)")
                stats.gapReads += 1
                pendingRead = (from, count)
            case .reload:
                // (After Redis lost commits a new load supersedes one issued before, which may have read the
                // old state; the world's loads read Redis when they complete, so one pending load stands for both.)
                check(!pendingLoad || pipeline.regressed, "a second load while one is in flight")
                pendingLoad = true
            case .catchUp(let member, let catchUp):
                receiveCatchUp(member, catchUp)
            }
        }
    }

    // MARK: What members receive

    mutating func receiveCatchUp(_ member: Int, _ catchUp: SyncDoc<Int>.CatchUp) {
        guard members[member] != nil else {
            check(false, "catch-up for a member that is gone")
            return
        }
        if pipeline.regressed {
            members[member]!.stale = true
        } else if case .snapshot = catchUp {
            members[member]!.stale = false
        }
        switch catchUp {
        case .snapshot(let head, let records):
            members[member]!.fetching = nil
            members[member]!.position = head
            members[member]!.records = records
            checkMemberState(member)
        case .log(let entries, let head):
            members[member]!.fetching = nil
            receiveLog(member, entries)
            check(members[member]!.position == head, "m\(member): log catch-up ends at \(members[member]!.position ?? 0), head \(head)")
        case .fetch(let from, let head):
            check(members[member]!.position == from - 1, "m\(member): fetch from \(from) at position \(members[member]!.position.map(String.init) ?? "-")")
            members[member]!.fetching = (from, head)
        }
    }

    mutating func receiveLog(_ member: Int, _ entries: [CommitNotice]) {
        for entry in entries {
            guard let position = members[member]?.position, entry.clock == position + 1 else {
                check(false, "m\(member): log entry \(entry.clock) at position \(members[member]?.position.map(String.init) ?? "-")")
                return
            }
            applyToMember(member, clock: entry.clock, ops: entry.ops)
        }
    }

    mutating func receivePatch(_ member: Int, _ commit: CommitNotice) {
        guard let view = members[member] else {
            check(false, "patch \(commit.clock) to a member that is gone")
            return
        }
        check(view.fetching == nil, "m\(member): patch \(commit.clock) while catching up")
        guard let position = view.position, commit.clock == position + 1 else {
            check(false, "m\(member): patch \(commit.clock) at position \(view.position.map(String.init) ?? "-")")
            return
        }
        if commit.node == "me", let i = instances.firstIndex(where: {
            $0.member == member && $0.session == commit.by && $0.id == commit.pushID && $0.answers.isEmpty && !$0.dropped
                && $0.inBatch != nil
        }) {
            check(false, "m\(member) got its own push \(instances[i].id.serializedString), in Redis, as a patch at \(commit.clock)")
        }
        applyToMember(member, clock: commit.clock, ops: commit.ops)
    }

    mutating func applyToMember(_ member: Int, clock: UInt64, ops: JSONValue) {
        guard let parsed = try? Ops(json: ops) else {
            check(false, "unparseable ops at \(clock)")
            return
        }
        var replica = DocReplica(head: clock - 1, records: members[member]!.records)
        replica.apply(clock: clock, ops: parsed)
        members[member]!.records = replica.records
        members[member]!.position = clock
        checkMemberState(member)
    }

    mutating func checkMemberState(_ member: Int) {
        guard let view = members[member], let position = view.position, !view.stale else { return }
        guard position <= redis.head else {
            check(false, "m\(member) at \(position), beyond Redis's head \(redis.head)")
            return
        }
        check(view.records == redis.states[Int(position)].records, "m\(member): state at \(position) differs from Redis's")
    }

    mutating func answer(_ reply: PushReply<Int>, commit: CommitNotice?) {
        guard let view = members[reply.member] else {
            check(false, "answer to m\(reply.member), which is gone: \(reply.answer)")
            return
        }
        guard let i = instances.firstIndex(where: { $0.member == reply.member && $0.id == reply.pushID && $0.answers.isEmpty && !$0.dropped }) else {
            check(false, "answer to m\(reply.member) for push \(reply.pushID.serializedString), which is not pending: \(reply.answer)")
            return
        }
        instances[i].answers.append(reply.answer)
        note("answer m\(reply.member) \(reply.pushID.serializedString): \(reply.answer)")
        switch reply.answer {
        case .result(let action, let clock, let applied, let reason):
            switch action {
            case .commit, .rebase:
                check(view.fetching == nil, "result while catching up")
                guard let commit, commit.clock == clock, let position = view.position, clock == position + 1 else {
                    check(false, "m\(reply.member): result \(clock) at position \(view.position.map(String.init) ?? "-")")
                    return
                }
                let logged = redis.log[Int(clock - 1)]
                check(logged.by == instances[i].session && logged.pushID == instances[i].id, "result at \(clock), which holds another push")
                let ops = action == .commit ? instances[i].ops.json : applied
                check(ops == logged.ops, "result at \(clock) says \(ops?.serializedString ?? "-"), Redis applied \(logged.ops.serializedString)")
                if action == .rebase { check(applied != nil, "rebase without ops") }
                applyToMember(reply.member, clock: clock, ops: logged.ops)
            case .discard:
                check(clock == view.position, "m\(reply.member): discard at \(clock), position \(view.position.map(String.init) ?? "-")")
                check(instances[i].committedAt == nil, "push \(instances[i].id.serializedString) discarded (\(reason ?? "")) but committed at \(instances[i].committedAt!)")
                if reason == "invalid_base" { stats.invalidBase += 1 }
                if reason == "read_only" { check(view.viewer, "read_only for an editor") }
            }
        case .error(let code, let message, let retryAfterMs):
            if code == .unavailable && (message.contains("busy") || message.contains("queued")) {
                stats.overload += 1
                check(retryAfterMs != nil && retryAfterMs! <= pipeline.settings.maxRetryAfterMs, "overload refusal without a sane retryAfterMs")
            }
            if code == .tooLarge { stats.tooLarge += 1 }
            if instances[i].committedAt != nil {
                check(code == .unavailable, "push \(instances[i].id.serializedString) refused \(code) but committed at \(instances[i].committedAt!)")
            }
        }
    }

    // MARK: Checks

    mutating func checkReplica() {
        // (After Redis lost commits the replica holds them until the reload replaces it: nothing is decided
        // against it meanwhile.)
        guard let replica = pipeline.delivery.replica, !pipeline.regressed else { return }
        guard replica.head <= redis.head else {
            check(false, "replica at \(replica.head), beyond Redis's head \(redis.head)")
            return
        }
        let reference = redis.states[Int(replica.head)]
        check(replica.records == reference.records && replica.versions == reference.versions, "replica differs from Redis at \(replica.head)")
    }

    mutating func finalChecks() {
        guard failures.isEmpty else { return }
        check(pipeline.head == redis.head, "replica at \(pipeline.head) after the drain, Redis at \(redis.head)")
        for (member, view) in members {
            check(view.fetching == nil, "m\(member) still catching up")
            check(!view.stale, "m\(member) never got the snapshot after Redis lost commits")
            check(view.position == redis.head, "m\(member) at \(view.position.map(String.init) ?? "-") after the drain, Redis at \(redis.head)")
        }
        var committedKeys: [String: Int] = [:]
        for notice in redis.log where notice.node == "me" {
            committedKeys[notice.by + "/" + (notice.pushID?.serializedString ?? ""), default: 0] += 1
        }
        for (key, count) in committedKeys where count > 1 { check(false, "\(key) committed \(count) times") }
        for instance in instances {
            let label = "m\(instance.member) push \(instance.id.serializedString)"
            if instance.dropped {
                check(instance.answers.isEmpty, "\(label) dropped but answered")
                if instance.committedAt != nil { check(instance.droppedInFlight, "\(label) committed after its member left") }
            } else {
                check(instance.answers.count == 1, "\(label) answered \(instance.answers.count) times")
            }
            if let clock = instance.committedAt, let answer = instance.answers.first {
                switch answer {
                case .result(.commit, let at, _, _), .result(.rebase, let at, _, _): check(at == clock, "\(label) committed at \(clock), answered \(at)")
                case .error(.unavailable, _, _): break
                default: check(false, "\(label) committed at \(clock), answered \(answer)")
                }
            }
            if instance.committedAt == nil, case .result(let action, let at, _, _)? = instance.answers.first, action != .discard {
                // Only an earlier copy of the same push (a lost reply) may be what was committed.
                let logged = redis.log[Int(at - 1)]
                check(logged.by == instance.session && logged.pushID == instance.id, "\(label) answered \(action) at \(at) but never committed")
            }
        }
    }
}
