import ArgumentParser
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TandemClient
import TandemCore

// `tandem-bench sync`: editors push record patches at --rate per second, open loop (on schedule, not
// waiting for results). A share (--conflict) of the pushes appends to one of a few records every editor
// of the doc writes, at the offset the editor believes is current — when another append got there first
// the server rebases it (the append moved to the current length), which is the conflict measured.
// The rest put a field of the editor's own record (always a commit).
//
// Latencies: push → result at the pusher (from the send of the attempt answered); commit → visible =
// pusher's send time → receipt of the `patch` with that clock at each other editor. The clock → send time
// map is filled by the pusher's `result`; a patch that arrives before that result waits in the map until
// it does.
//
// Overload: a push refused `unavailable` is sent again after the server's `retryAfterMs` (1 s without
// one), at most --max-retries times, as tandem.js does: while an editor has a refused push (waiting for
// its retry, or the retry in flight), its new edits are not sent but held, and go with the retry as one
// push (coalesced: the own record's latest value, the shared appends joined). So a refused client adds
// one push per hint, not one per edit. Offered load is editors × rate edits per second ("pushes" below
// counts edits; results, commits/s and CPU per commit count the pushes the server saw). A retry is sent
// only while at least half the drain remains, so that its answer can arrive in time. At the end of the
// drain, an edit in a push whose attempt has no answer yet (or still held behind one) is unanswered.

struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Document sync: push → result and commit → visible latency, conflicts, throughput.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Editors (each its own user).") var editors = 50
    @Option(help: "Docs; editor i works in doc i mod docs.") var docs = 1
    @Option(help: "Pushes per editor per second.") var rate = 10.0
    @Option(help: "Measured seconds (after the warm-up).") var duration = 60.0
    @Option(help: "Seconds of pushing before the measured window.") var warmup = 5.0
    @Option(help: "Seconds to keep receiving after the last measured push.") var drain = 2.0
    @Option(help: "Share of pushes that append to a record shared by the doc's editors.") var conflict = 0.1
    @Option(name: .customLong("shared-records"), help: "Shared records per doc.") var sharedRecords = 2
    @Option(help: "Send-time jitter, as a fraction of the period.") var jitter = 0.5
    @Option(name: .customLong("target-result-p99-ms")) var targetResultP99 = 50.0
    @Option(name: .customLong("target-visible-p99-ms")) var targetVisibleP99 = 200.0
    @Option(name: .customLong("target-commits-per-sec"), help: "Checked when given: commits (and rebases) per second at least.")
    var targetCommitsPerSecond: Double?
    @Option(name: .customLong("max-retries"), help: "Times a push refused unavailable is sent again (after retryAfterMs).")
    var maxRetries = 3

    func validate() throws {
        guard editors > 0, docs > 0, docs <= editors else { throw ValidationError("need 0 < docs <= editors") }
        guard (0...1).contains(conflict), sharedRecords > 0 else { throw ValidationError("bad --conflict/--shared-records") }
    }

    func run() async throws {
        let run = LoadRun(common: common)
        let runID = run.runID
        let plan = SyncPlan(
            editors: editors, docs: docs, runID: runID, rate: rate, conflict: conflict, sharedRecords: sharedRecords,
            jitter: jitter, maxRetries: maxRetries, drainNanos: UInt64(drain * 1e9))
        let boards = (0..<docs).map { d in CommitBoard(receivers: plan.editorsPerDoc[d] - 1) }
        let loops = LoopSet(threads: common.threads) { SyncLoopStats() }
        let synced = SharedCounter()
        let setupDone = SharedCounter()
        let closing = SharedFlag()
        log("sync: \(editors) editors, \(docs) docs, \(rate) pushes/s each, conflict share \(conflict), \(duration) s, run \(runID)")

        let started = monotonicNanos()
        let members = (0..<editors).map { i in
            SyncEditor(
                index: i, plan: plan, board: boards[i % docs], stats: loops.stats(for: i), loop: loops.loop(for: i),
                synced: synced, setupDone: setupDone, closing: closing)
        }
        await run.connect(members, identity: { ("\(runID)-e\($0)", "e\($0)") }, progress: { "synced \(synced.value)" })
        let (editorCount, docCount) = (editors, docs)
        let allSynced = await waitUntil(timeoutSeconds: 30) { synced.value >= editorCount }
        // Create the records: each editor its own, the first editor of each doc the shared ones.
        for m in members { m.loop.execute { m.createRecords() } }
        let setupOK = await waitUntil(timeoutSeconds: 30) { setupDone.value >= editorCount + docCount }
        await sleep(seconds: 1)  // let the creations reach every editor
        let rampSeconds = Double(monotonicNanos() - started) / 1e9
        let handshakes = run.connector.snapshot
        log("  ready in \(fmt(rampSeconds, 1)) s: synced \(synced.value)/\(editors), records created: \(setupOK)")

        let measured = await run.measure(loops: loops.loops, warmup: warmup, duration: duration, drain: drain) { sendStart, window in
            for m in members { m.loop.execute { m.startPushing(at: sendStart, window: window) } }
        }

        let perLoop = try await loops.collect { $0.snapshot() }
        var unanswered = 0
        var oldestUnansweredMs = 0.0
        for m in members {
            guard let (edits, oldestMs) = try? await m.loop.submit({ m.unansweredInWindow() }).get() else { continue }
            unanswered += edits
            oldestUnansweredMs = max(oldestUnansweredMs, oldestMs)
        }
        let unresolved = boards.reduce(0) { $0 + $1.unresolvedReceipts }
        closing.set()
        let pingRTT = await measured.probe.finish()
        await run.closeAll(members)
        await loops.shutdown()

        var total = SyncLoopSnapshot.empty
        for s in perLoop { total.merge(s) }
        let result = SyncResult(
            plan: plan, duration: duration, warmup: warmup, ready: rampSeconds, allSynced: allSynced && setupOK,
            handshakes: handshakes, totals: total, unresolvedReceipts: unresolved, unanswered: unanswered,
            oldestUnansweredMs: oldestUnansweredMs, pingRTT: pingRTT,
            resources: measured.resources, targetResultP99: targetResultP99, targetVisibleP99: targetVisibleP99,
            targetCommitsPerSecond: targetCommitsPerSecond)
        try emit(result, table: result.table, options: common)
    }
}

struct SyncPlan: Sendable {
    var editors: Int
    var docs: Int
    var runID: String
    var rate: Double
    var conflict: Double
    var sharedRecords: Int
    var jitter: Double
    var maxRetries: Int
    var drainNanos: UInt64
    var docNames: [String]
    var editorsPerDoc: [Int]

    init(
        editors: Int, docs: Int, runID: String, rate: Double, conflict: Double, sharedRecords: Int, jitter: Double,
        maxRetries: Int, drainNanos: UInt64
    ) {
        self.editors = editors
        self.docs = docs
        self.runID = runID
        self.rate = rate
        self.conflict = conflict
        self.sharedRecords = sharedRecords
        self.jitter = jitter
        self.maxRetries = maxRetries
        self.drainNanos = drainNanos
        docNames = (0..<docs).map { "bench-\(runID)-s\($0)" }
        editorsPerDoc = (0..<docs).map { d in editors / docs + (d < editors % docs ? 1 : 0) }
    }

    var periodNs: UInt64 { UInt64(1e9 / rate) }
}

/// Per doc: commit clock → pusher's send time, for the commit → visible latency. Shared by all loops.
final class CommitBoard: Sendable {
    private struct Entry {
        var sendNs: UInt64 = 0
        var inWindow = false
        var known = false
        var seen = 0
        var early: [UInt64] = []
    }

    let receivers: Int
    private let entries = NIOLockedValueBox([UInt64: Entry]())

    init(receivers: Int) { self.receivers = receivers }

    /// The pusher learned that its push became `clock`; returns the receipt times of patches that
    /// arrived before this result.
    func committed(clock: UInt64, sendNs: UInt64, inWindow: Bool) -> [UInt64] {
        entries.withLockedValue { map in
            var e = map[clock] ?? Entry()
            e.sendNs = sendNs
            e.inWindow = inWindow
            e.known = true
            let early = e.early
            e.early = []
            if e.seen >= receivers { map[clock] = nil } else { map[clock] = e }
            return early
        }
    }

    /// Another editor received the patch with `clock` at `at`: its send time if known.
    ///
    /// Called for every patch every editor receives (the hot doc: ~485,000 a second): the entry is changed
    /// where it is stored — one hash lookup, and no copy of its `early` list — rather than read out,
    /// changed and stored back (issue 8 stop 27).
    func received(clock: UInt64, at: UInt64) -> (sendNs: UInt64, inWindow: Bool)? {
        let receivers = self.receivers
        return entries.withLockedValue { map in
            let (out, done) = Self.receive(&map[clock, default: Entry()], at: at, receivers: receivers)
            if done { map[clock] = nil }
            return out
        }
    }

    private static func receive(_ e: inout Entry, at: UInt64, receivers: Int) -> (sent: (sendNs: UInt64, inWindow: Bool)?, done: Bool) {
        e.seen += 1
        guard e.known else {
            e.early.append(at)
            return (nil, false)
        }
        return ((sendNs: e.sendNs, inWindow: e.inWindow), e.seen >= receivers)
    }

    var unresolvedReceipts: Int { entries.withLockedValue { $0.values.reduce(0) { $0 + $1.early.count } } }
}

final class SyncLoopStats {
    var pushLatency = makeLatencyHistogram()
    var visibleLatency = makeLatencyHistogram()
    var pushTimeline = LatencyTimeline()
    var visibleTimeline = LatencyTimeline()
    var sendLag = makeLatencyHistogram()
    var pushes = 0
    var sharedPushes = 0
    var actions: [String: Int] = [:]
    var conflicted = 0
    var visible = 0
    var expectedVisible = 0
    var orderViolations = 0
    var errors: [String: Int] = [:]
    var disconnects: [String: Int] = [:]
    var skippedSlots = 0
    /// Re-sends of in-window pushes refused `unavailable`, and the retry hints they were given.
    var retries = 0
    var retryAfter = makeLatencyHistogram()
    /// In-window pushes whose last answer was an error (no retries left), by code.
    var refused: [String: Int] = [:]
    /// In-window edits held behind a refused push (coalesced into a later one), and edits committed.
    var held = 0
    var editsCommitted = 0

    func snapshot() -> SyncLoopSnapshot {
        SyncLoopSnapshot(
            pushLatency: pushLatency, visibleLatency: visibleLatency, pushTimeline: pushTimeline,
            visibleTimeline: visibleTimeline, sendLag: sendLag, pushes: pushes,
            sharedPushes: sharedPushes, actions: actions, visible: visible, expectedVisible: expectedVisible,
            orderViolations: orderViolations, errors: errors, disconnects: disconnects,
            skippedSlots: skippedSlots, retries: retries, retryAfter: retryAfter, refused: refused, held: held,
            editsCommitted: editsCommitted)
    }
}

struct SyncLoopSnapshot: Sendable {
    var pushLatency: LatencyHistogram
    var visibleLatency: LatencyHistogram
    var pushTimeline: LatencyTimeline
    var visibleTimeline: LatencyTimeline
    var sendLag: LatencyHistogram
    var pushes: Int
    var sharedPushes: Int
    var actions: [String: Int]
    var visible: Int
    var expectedVisible: Int
    var orderViolations: Int
    var errors: [String: Int]
    var disconnects: [String: Int]
    var skippedSlots: Int
    var retries: Int
    var retryAfter: LatencyHistogram
    var refused: [String: Int]
    var held: Int
    var editsCommitted: Int

    static var empty: SyncLoopSnapshot {
        .init(
            pushLatency: makeLatencyHistogram(), visibleLatency: makeLatencyHistogram(), pushTimeline: LatencyTimeline(),
            visibleTimeline: LatencyTimeline(), sendLag: makeLatencyHistogram(),
            pushes: 0, sharedPushes: 0, actions: [:], visible: 0, expectedVisible: 0, orderViolations: 0, errors: [:],
            disconnects: [:], skippedSlots: 0, retries: 0, retryAfter: makeLatencyHistogram(), refused: [:], held: 0,
            editsCommitted: 0)
    }

    mutating func merge(_ o: SyncLoopSnapshot) {
        pushLatency.add(o.pushLatency)
        visibleLatency.add(o.visibleLatency)
        pushTimeline.merge(o.pushTimeline)
        visibleTimeline.merge(o.visibleTimeline)
        sendLag.add(o.sendLag)
        pushes += o.pushes
        sharedPushes += o.sharedPushes
        mergeCounts(&actions, o.actions)
        visible += o.visible
        expectedVisible += o.expectedVisible
        orderViolations += o.orderViolations
        mergeCounts(&errors, o.errors)
        mergeCounts(&disconnects, o.disconnects)
        skippedSlots += o.skippedSlots
        retries += o.retries
        retryAfter.add(o.retryAfter)
        mergeCounts(&refused, o.refused)
        held += o.held
        editsCommitted += o.editsCommitted
    }
}

/// One simulated editor, confined to `loop`.
final class SyncEditor: LoadMember, @unchecked Sendable {  // @unchecked: confined to `loop` (state touched there only)
    /// One edit (a push slot of the schedule): the own record's field, or an append to a shared record.
    private struct Edit {
        var createdNs: UInt64
        var shared: Int  // -1: own record
    }

    /// An append of `units` × "ab" at `offset` to shared record `k`.
    private struct Append {
        var k: Int
        var offset: Int
        var units: Int
    }

    private struct Pending {
        /// When the attempt now in flight was sent.
        var sendNs: UInt64
        /// The edits this push carries (more than one after a refusal: coalesced).
        var edits: [Edit]
        var appends: [Append]
        /// The first attempt's send time (which window the push belongs to).
        var firstSendNs: UInt64
        var attempts = 1
        /// Refused and waiting for its retry (answered; nothing in flight).
        var waitingToRetry = false
    }

    let index: Int
    let doc: Int
    let plan: SyncPlan
    let board: CommitBoard
    let stats: SyncLoopStats
    let loop: any EventLoop
    private let syncedCounter: SharedCounter
    private let setupCounter: SharedCounter
    private let closing: SharedFlag
    private(set) var client: WebSocketClient?
    private var synced = false
    private var joinedSeen = false
    /// Last clock applied (from joined/snapshot/log, patches and own results).
    private var clock: UInt64 = 0
    private var sharedLength: [Int]
    private var sharedInFlight: [Int]
    private var pending: [UInt64: Pending] = [:]
    /// The push that carries refused edits (waiting for its retry, or the retry in flight): while there
    /// is one, new edits are held and go with its retry, or right after its result.
    private var backoffPush: UInt64?
    private var held: [Edit] = []
    /// Backing off, the schedule's timer is not armed: the slots that pass are taken as held edits when
    /// something is sent or the backoff ends (`catchUp`), not one timer each. (At 4× overload about half
    /// the slots fell in a backoff, 36,000 timers a second that only appended an edit: bench CPU the node
    /// did not get. What is offered is the same — one edit per slot, at the slot's time.)
    private var paused = false
    private var nextID: UInt64 = 10
    private var window = Window(start: 0, end: 0)
    private lazy var schedule = SendSchedule(periodNs: plan.periodNs, spreadNs: Int64(Double(plan.periodNs) * plan.jitter / 2))
    /// The edits' random choices. Not `SystemRandomNumberGenerator`: on Linux each of its draws is a
    /// `getrandom` system call (strace of sync-20k: three a push with the schedule's jitter and the frame's
    /// mask, 20,059 in 3 s), CPU the node beside the bench does not get; seeded from it once.
    private var rng = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
    private let docName: String

    init(
        index: Int, plan: SyncPlan, board: CommitBoard, stats: SyncLoopStats, loop: any EventLoop, synced: SharedCounter,
        setupDone: SharedCounter, closing: SharedFlag
    ) {
        self.index = index
        self.doc = index % plan.docs
        self.plan = plan
        self.board = board
        self.stats = stats
        self.loop = loop
        self.syncedCounter = synced
        self.setupCounter = setupDone
        self.closing = closing
        sharedLength = Array(repeating: 0, count: plan.sharedRecords)
        sharedInFlight = Array(repeating: 0, count: plan.sharedRecords)
        docName = plan.docNames[index % plan.docs]
    }

    var callbacks: WebSocketClient.Callbacks {
        .init(
            onText: { [self] buffer in self.received(buffer) },
            onClose: { [self] code, _ in self.closed(code: code) })
    }

    func attached(_ client: WebSocketClient) {
        self.client = client
        client.send(text: #"{"t":"join","doc":""# + docName + #""}"#)
    }

    func createRecords() {
        guard let client else { return }
        client.send(text: #"{"t":"push","doc":""# + docName + #"","id":1,"base":\#(clock),"ops":{"ed\#(index)":["put",{"f":0}]}}"#)
        if index < plan.docs {
            let ops = (0..<plan.sharedRecords).map { #""sh\#($0)":["put",{"txt":""}]"# }.joined(separator: ",")
            client.send(text: #"{"t":"push","doc":""# + docName + #"","id":2,"base":\#(clock),"ops":{\#(ops)}}"#)
        }
    }

    // MARK: Pushing

    func startPushing(at start: UInt64, window: Window) {
        self.window = window
        schedule.begin(at: start)
        scheduleNext()
        let end = window.end
        loop.scheduleTask(deadline: .uptimeNanoseconds(end)) { [self] in catchUp(now: end) }
    }

    private func scheduleNext() {
        guard let (deadline, skipped) = schedule.next(window: window) else { return }
        stats.skippedSlots += skipped
        loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { [self] in self.push() }
    }

    private func push() {
        guard let client, !client.isClosed else { return }
        let now = monotonicNanos()
        let sharedPick = Double.random(in: 0..<1, using: &rng) < plan.conflict
        let edit = Edit(createdNs: now, shared: sharedPick ? Int.random(in: 0..<plan.sharedRecords, using: &rng) : -1)
        if window.contains(now) {
            stats.pushes += 1
            if sharedPick { stats.sharedPushes += 1 }
            stats.sendLag.recordNanos(now > schedule.scheduledAt ? now - schedule.scheduledAt : 0)
        }
        if backoffPush != nil {
            held.append(edit)
            if window.contains(now) { stats.held += 1 }
            // The next slots are taken when the backoff ends or its retry goes (`catchUp`), and at the
            // window's end at the latest (`startPushing`), before the counts are read.
            paused = true
            return
        } else {
            send([edit], now: now, firstSendNs: now, attempts: 1)
        }
        scheduleNext()
    }

    /// Takes the slots that passed while paused as held edits, each created at its slot's time.
    private func catchUp(now: UInt64) {
        guard paused else { return }
        while let at = schedule.due(by: now, window: window) {
            let sharedPick = Double.random(in: 0..<1, using: &rng) < plan.conflict
            held.append(Edit(createdNs: at, shared: sharedPick ? Int.random(in: 0..<plan.sharedRecords, using: &rng) : -1))
            if window.contains(at) {
                stats.pushes += 1
                stats.held += 1
                if sharedPick { stats.sharedPushes += 1 }
            }
        }
    }

    /// The backoff ended: the schedule's timer runs again.
    private func resume() {
        guard paused else { return }
        paused = false
        scheduleNext()
    }

    /// Sends one push carrying `edits` (coalesced: the own record's field once, each shared record's
    /// appends as one) and returns its id.
    @discardableResult
    private func send(_ edits: [Edit], now: UInt64, firstSendNs: UInt64, attempts: Int) -> UInt64 {
        let id = nextID
        nextID += 1
        var msg = ByteBuffer.framePayload(capacity: 160)
        msg.writeStaticString(#"{"t":"push","doc":""#)
        msg.writeString(docName)
        msg.writeStaticString(#"","id":"#)
        msg.writeDecimal(id)
        msg.writeStaticString(#","base":"#)
        msg.writeDecimal(clock)
        msg.writeStaticString(#","ops":{"#)
        var first = true
        if edits.contains(where: { $0.shared < 0 }) {
            msg.writeStaticString(#""ed"#)
            msg.writeDecimal(index)
            msg.writeStaticString(#"":["patch",{"f":["put","#)
            msg.writeDecimal(id)
            msg.writeStaticString("]}]")
            first = false
        }
        var appends: [Append] = []
        for k in 0..<plan.sharedRecords {
            let units = edits.reduce(0) { $0 + ($1.shared == k ? 1 : 0) }
            guard units > 0 else { continue }
            let offset = sharedLength[k] + 2 * sharedInFlight[k]
            sharedInFlight[k] += units
            appends.append(Append(k: k, offset: offset, units: units))
            if !first { msg.writeStaticString(",") }
            first = false
            msg.writeStaticString(#""sh"#)
            msg.writeDecimal(k)
            msg.writeStaticString(#"":["patch",{"txt":["append",""#)
            for _ in 0..<units { msg.writeStaticString("ab") }
            msg.writeStaticString(#"","#)
            msg.writeDecimal(offset)
            msg.writeStaticString("]}]")
        }
        msg.writeStaticString("}}")
        pending[id] = Pending(sendNs: now, edits: edits, appends: appends, firstSendNs: firstSendNs, attempts: attempts)
        client?.send(text: msg)
        return id
    }

    /// A push is settled (answered for good, or folded into another): its appends are no longer in flight.
    private func release(_ p: Pending, committed: Bool) {
        for a in p.appends {
            sharedInFlight[a.k] -= a.units
            if committed { sharedLength[a.k] = a.offset + 2 * a.units }
        }
    }

    /// The refused push `id` is settled: the edits held behind it go now, as one push.
    private func endBackoff(_ id: UInt64, now: UInt64) {
        guard backoffPush == id else { return }
        backoffPush = nil
        catchUp(now: now)
        defer { resume() }
        guard !held.isEmpty, let client, !client.isClosed else { return }
        let edits = held
        held = []
        send(edits, now: now, firstSendNs: edits[0].createdNs, attempts: 1)
    }

    // MARK: Receiving

    private func received(_ buffer: ByteBuffer) {
        let now = monotonicNanos()
        buffer.withUnsafeReadableBytes { raw in
            var s = ByteScanner(raw)
            switch MessageType.of(s) {
            case .patch:
                guard let c = s.uint(after: Patterns.clock) else { return }
                advance(to: c)
                if let sent = board.received(clock: c, at: now), sent.inWindow {
                    recordVisible(now > sent.sendNs ? now - sent.sendNs : 0, sentAt: sent.sendNs)
                }
                if s.find(Patterns.sharedKey, from: s.index) != nil { applyShared(raw, fromResult: false, pending: nil) }
            case .result:
                handleResult(raw, &s, now: now)
            case .joined:
                joinedSeen = true
                if let c = s.uint(after: Patterns.clock) { clock = c }
            case .snapshot, .log:
                var probe = s
                if let c = probe.uint(after: MessageType.of(s) == .snapshot ? Patterns.clock : Patterns.head) { clock = c }
                if joinedSeen && !synced && s.find(Patterns.moreFalse, from: 0) != nil {
                    synced = true
                    syncedCounter.add()
                }
            case .error:
                handleError(&s, now: now)
            default:
                break
            }
        }
    }

    /// A push refused: sent again after the server's hint if it is `unavailable` and retries are left,
    /// otherwise settled as refused.
    private func handleError(_ s: inout ByteScanner, now: UInt64) {
        let code = s.string(after: Patterns.code) ?? "?"
        stats.errors[code, default: 0] += 1
        var idScan = s
        guard let id = idScan.uint(after: Patterns.id), var p = pending[id] else { return }
        let inWindow = window.contains(p.firstSendNs)
        var hintScan = s
        let hintMs = hintScan.uint(after: Patterns.retryAfterMs)
        if inWindow, let hintMs { stats.retryAfter.recordNanos(hintMs * 1_000_000) }
        let delayNs = (hintMs ?? 1_000) * 1_000_000
        // Only while half the drain remains after the retry: its answer must be able to arrive in time.
        let retryDeadline = window.end + plan.drainNanos / 2
        if code == "unavailable", p.attempts <= plan.maxRetries, now + delayNs < retryDeadline {
            if let other = backoffPush, other != id, var carrier = pending[other] {
                // One refused push per editor: this one's edits go with the one already backing off — in
                // its retry if it waits for one, else (its retry is in flight) right after its answer.
                release(p, committed: false)
                pending[id] = nil
                if carrier.waitingToRetry {
                    carrier.edits += p.edits
                    pending[other] = carrier
                } else {
                    held.insert(contentsOf: p.edits, at: 0)
                }
                return
            }
            p.waitingToRetry = true
            pending[id] = p
            backoffPush = id
            loop.scheduleTask(in: .nanoseconds(Int64(delayNs))) { [self] in
                guard let client, !client.isClosed, let again = pending[id], again.waitingToRetry else { return }
                // Sent again with everything held meanwhile, as one push (a new id: its ops changed).
                release(again, committed: false)
                pending[id] = nil
                let now = monotonicNanos()
                catchUp(now: now)
                let edits = again.edits + held
                held = []
                if window.contains(again.firstSendNs) { stats.retries += 1 }
                backoffPush = send(edits, now: now, firstSendNs: again.firstSendNs, attempts: again.attempts + 1)
            }
            return
        }
        pending[id] = nil
        release(p, committed: false)
        for edit in p.edits where window.contains(edit.createdNs) { stats.refused[code, default: 0] += 1 }
        endBackoff(id, now: now)
    }

    /// Edits of the measured window not answered yet (called after the drain): in a push whose attempt
    /// has no answer, or held behind one. Also the age of the oldest such attempt at the end of the drain
    /// (ms; 0 if none): older than the slowest answer in the window would point at a lost answer rather
    /// than a slow one.
    func unansweredInWindow() -> (edits: Int, oldestAttemptMs: Double) {
        let now = monotonicNanos()
        var edits = 0
        var oldest: UInt64 = 0
        for p in pending.values where !p.waitingToRetry {
            let inWindow = p.edits.reduce(0) { $0 + (window.contains($1.createdNs) ? 1 : 0) }
            guard inWindow > 0 else { continue }
            edits += inWindow
            oldest = max(oldest, now > p.sendNs ? now - p.sendNs : 0)
        }
        edits += held.reduce(0) { $0 + (window.contains($1.createdNs) ? 1 : 0) }
        return (edits, Double(oldest) / 1e6)
    }

    private func handleResult(_ raw: UnsafeRawBufferPointer, _ s: inout ByteScanner, now: UInt64) {
        guard let id = s.uint(after: Patterns.id), let action = s.string(after: Patterns.action),
            let c = s.uint(after: Patterns.clock)
        else { return }
        if id < 10 {
            if action != "discard" {
                advance(to: c)
                _ = board.committed(clock: c, sendNs: 0, inWindow: false)
            }
            setupCounter.add()
            return
        }
        guard let p = pending.removeValue(forKey: id) else { return }
        let inWindow = window.contains(p.firstSendNs)
        if inWindow {
            stats.actions[action, default: 0] += 1
            stats.pushLatency.recordNanos(now - p.sendNs)
            stats.pushTimeline.record(now - p.sendNs, sentAt: p.sendNs, window: window)
        }
        if action != "discard" {
            stats.editsCommitted += p.edits.reduce(0) { $0 + (window.contains($1.createdNs) ? 1 : 0) }
        }
        release(p, committed: action == "commit")
        if action != "discard" {
            advance(to: c)
            if inWindow { stats.expectedVisible += board.receivers }
            for early in board.committed(clock: c, sendNs: p.sendNs, inWindow: inWindow) where inWindow {
                recordVisible(early > p.sendNs ? early - p.sendNs : 0, sentAt: p.sendNs)
            }
            if action == "rebase", !p.appends.isEmpty { applyShared(raw, fromResult: true, pending: p) }
        }
        endBackoff(id, now: now)
    }

    private func recordVisible(_ ns: UInt64, sentAt: UInt64) {
        stats.visible += 1
        stats.visibleLatency.recordNanos(ns)
        stats.visibleTimeline.record(ns, sentAt: sentAt, window: window)
    }

    /// Results and patches arrive in clock order with no gaps; count any break of that promise.
    private func advance(to c: UInt64) {
        if c != clock + 1 { stats.orderViolations += 1 }
        clock = max(clock, c)
    }

    /// Updates the shared records' text lengths from a message's ops: scanned (`SharedOpsScan`), or parsed
    /// fully if the scan does not read them.
    private func applyShared(_ raw: UnsafeRawBufferPointer, fromResult: Bool, pending: Pending?) {
        if SharedOpsScan.apply(raw, into: &sharedLength) { return }
        guard let message = try? JSONParser.parse(raw).objectValue, let ops = message["ops"]?.objectValue else { return }
        for (id, op) in ops where id.hasPrefix("sh") {
            guard let k = Int(id.dropFirst(2)), k < plan.sharedRecords, let parts = op.arrayValue, parts.count == 2,
                let kind = parts[0].stringValue
            else { continue }
            var text: JSONValue?
            if kind == "put" {
                text = parts[1].objectValue?["txt"]
                if let s = text?.stringValue { sharedLength[k] = s.utf16.count }
                continue
            }
            guard kind == "patch", let diff = parts[1].objectValue, let fieldOp = diff["txt"]?.arrayValue,
                let fieldKind = fieldOp.first?.stringValue
            else { continue }
            switch fieldKind {
            case "put":
                if let s = fieldOp.dropFirst().first?.stringValue { sharedLength[k] = s.utf16.count }
            case "append":
                if fieldOp.count == 3, let s = fieldOp[1].stringValue, let off = fieldOp[2].intValue {
                    sharedLength[k] = off + s.utf16.count
                }
            default:
                break
            }
        }
    }

    private func closed(code: Int?) {
        guard !closing.isSet else { return }
        stats.disconnects[code.map(String.init) ?? "no close frame", default: 0] += 1
    }
}

extension Patterns {
    static let sharedKey = StaticPattern(#"{"sh"#)
    static let retryAfterMs = StaticPattern(#""retryAfterMs":"#)
}

// MARK: - Result

struct SyncResult: Codable, Sendable {
    var scenario = "sync"
    var editors: Int
    var docs: Int
    var editorsPerDoc: [Int]
    var ratePerEditor: Double
    var conflictShare: Double
    var sharedRecordsPerDoc: Int
    var durationSeconds: Double
    var warmupSeconds: Double
    var runID: String
    var readySeconds: Double
    var allSynced: Bool
    var handshakes: HandshakeCounts
    var pushes: Int
    var sharedPushes: Int
    var resultsByAction: [String: Int]
    /// Pushes answered (a result, or an error as their last answer) by the end of the drain.
    var answered: Int
    /// Edits whose last attempt had no answer at the end of the drain (or held behind such a push).
    var unanswered: Int
    /// Age of the oldest unanswered attempt at the end of the drain (0: none).
    var oldestUnansweredAttemptMs: Double
    /// Edits held while a refused push waited, sent coalesced with it or after it.
    var heldEdits: Int
    /// Edits committed (inside commits or rebases; after a refusal, several per commit) per second.
    var editsCommittedPerSecond: Double
    /// In-window pushes whose last answer was an error (no retries left), by code.
    var refusedByCode: [String: Int]
    /// Re-sends after `unavailable`, and the `retryAfterMs` hints received.
    var retries: Int
    var retryAfterMs: LatencySummary
    var conflictRate: Double
    var commitsPerSecond: Double
    var pushToResultMs: LatencySummary
    var commitToVisibleMs: LatencySummary
    var pushToResultPerSecond: [SecondSummary]
    var commitToVisiblePerSecond: [SecondSummary]
    var targetResultP99: Double
    var targetVisibleP99: Double
    var visibleDeliveries: Int
    var expectedVisibleDeliveries: Int
    var unresolvedReceipts: Int
    var orderViolations: Int
    var sendLagMs: LatencySummary
    /// Push slots the bench skipped because it was more than a period late (should be 0 on a quiet machine).
    var skippedPushSlots: Int
    /// Control: `ping` → `pong` round trip on an extra connection during the window (see PingProbe).
    var controlPingRTTMs: LatencySummary
    var redisCommandsPerPush: Double?
    /// Commands the node itself sent to Redis per push (`tandem_redis_command_seconds_count`: its round trips,
    /// a commit round or a group commit being one), where `redisCommandsPerPush` also counts what scripts run.
    var redisCallsPerPush: Double?
    /// CPU time per commit over the window (µs): Tandem's process and Redis's.
    var tandemCPUMicrosPerCommit: Double?
    var redisCPUMicrosPerCommit: Double?
    var targetCommitsPerSecond: Double?
    var errors: [String: Int]
    var disconnects: [String: Int]
    var disconnectCount: Int
    var resources: ResourceReport
    var targets: [TargetCheck]

    init(
        plan: SyncPlan, duration: Double, warmup: Double, ready: Double, allSynced: Bool, handshakes: HandshakeCounts,
        totals t: SyncLoopSnapshot, unresolvedReceipts: Int, unanswered: Int, oldestUnansweredMs: Double, pingRTT: LatencySummary,
        resources: ResourceReport, targetResultP99: Double, targetVisibleP99: Double, targetCommitsPerSecond: Double?
    ) {
        controlPingRTTMs = pingRTT
        redisCommandsPerPush = resources.redisCommands.map { t.pushes > 0 ? Double($0) / Double(t.pushes) : 0 }
        redisCallsPerPush = resources.serverMetricDeltas["tandem_redis_command_seconds_count"].map {
            t.pushes > 0 ? $0 / Double(t.pushes) : 0
        }
        editors = plan.editors
        docs = plan.docs
        editorsPerDoc = Array(Set(plan.editorsPerDoc)).sorted()
        ratePerEditor = plan.rate
        conflictShare = plan.conflict
        sharedRecordsPerDoc = plan.sharedRecords
        durationSeconds = duration
        warmupSeconds = warmup
        runID = plan.runID
        readySeconds = ready
        self.allSynced = allSynced
        self.handshakes = handshakes
        pushes = t.pushes
        sharedPushes = t.sharedPushes
        resultsByAction = t.actions
        let results = t.actions.values.reduce(0, +)
        self.unanswered = unanswered
        oldestUnansweredAttemptMs = oldestUnansweredMs
        heldEdits = t.held
        editsCommittedPerSecond = Double(t.editsCommitted) / duration
        answered = t.pushes - unanswered
        refusedByCode = t.refused
        retries = t.retries
        retryAfterMs = LatencySummary(t.retryAfter)
        let commits = (t.actions["commit"] ?? 0) + (t.actions["rebase"] ?? 0)
        conflictRate = results > 0 ? Double((t.actions["rebase"] ?? 0) + (t.actions["discard"] ?? 0)) / Double(results) : 0
        commitsPerSecond = Double(commits) / duration
        self.targetCommitsPerSecond = targetCommitsPerSecond
        func perCommit(_ process: ResourceReport.Process?) -> Double? {
            guard let process, commits > 0 else { return nil }
            return process.cpuPercent / 100 * resources.windowSeconds / Double(commits) * 1e6
        }
        tandemCPUMicrosPerCommit = perCommit(resources.server)
        redisCPUMicrosPerCommit = perCommit(resources.redis)
        pushToResultMs = LatencySummary(t.pushLatency)
        commitToVisibleMs = LatencySummary(t.visibleLatency)
        pushToResultPerSecond = t.pushTimeline.summary
        commitToVisiblePerSecond = t.visibleTimeline.summary
        self.targetResultP99 = targetResultP99
        self.targetVisibleP99 = targetVisibleP99
        visibleDeliveries = t.visible
        expectedVisibleDeliveries = t.expectedVisible
        self.unresolvedReceipts = unresolvedReceipts
        orderViolations = t.orderViolations
        sendLagMs = LatencySummary(t.sendLag)
        skippedPushSlots = t.skippedSlots
        errors = t.errors
        disconnects = t.disconnects
        disconnectCount = t.disconnects.values.reduce(0, +)
        self.resources = resources
        targets = [
            TargetCheck(
                name: "push → result p99", limit: "<= \(fmt(targetResultP99, 0)) ms",
                measured: "\(fmt(pushToResultMs.p99, 1)) ms", met: pushToResultMs.count > 0 && pushToResultMs.p99 <= targetResultP99),
            TargetCheck(
                name: "commit → visible p99", limit: "<= \(fmt(targetVisibleP99, 0)) ms",
                measured: "\(fmt(commitToVisibleMs.p99, 1)) ms",
                met: commitToVisibleMs.count > 0 && commitToVisibleMs.p99 <= targetVisibleP99),
            TargetCheck(
                name: "every push answered (result or error)", limit: "\(t.pushes)", measured: "\(answered)",
                met: unanswered == 0),
            TargetCheck(name: "clock order violations", limit: "0", measured: "\(t.orderViolations)", met: t.orderViolations == 0),
            TargetCheck(name: "disconnects", limit: "0", measured: "\(disconnectCount)", met: disconnectCount == 0 && allSynced),
        ]
        if let target = targetCommitsPerSecond {
            targets.append(
                TargetCheck(
                    name: "throughput", limit: ">= \(fmt(target, 0)) commits/s", measured: "\(fmt(commitsPerSecond, 0)) commits/s",
                    met: commitsPerSecond >= target))
        }
    }

    var table: String {
        var t = TextTable(
            title: "tandem-bench sync — \(editors) editors, \(docs) docs, \(fmt(ratePerEditor, 0)) pushes/s each, \(fmt(durationSeconds, 0)) s")
        t.section("setup")
        t.row("editors per doc", editorsPerDoc.map(String.init).joined(separator: ", "))
        t.row("conflict share / shared records", "\(conflictShare) / \(sharedRecordsPerDoc) per doc")
        t.row("ready (connect, join, create)", "\(fmt(readySeconds, 1)) s, all synced: \(allSynced)")
        t.row("handshakes", "\(handshakes.attempts) attempts, \(handshakes.succeeded) ok, \(handshakes.rejected) refused")
        t.section("pushes (measured window)")
        t.row("pushes", "\(pushes) (\(fmt(Double(pushes) / durationSeconds, 0))/s), \(sharedPushes) on shared records")
        t.counts("results by action", resultsByAction)
        t.row("answered", "\(answered) of \(pushes)\(unanswered > 0 ? ", \(unanswered) unanswered at the end of the drain" : "")")
        if unanswered > 0 { t.row("oldest unanswered attempt", "sent \(fmt(oldestUnansweredAttemptMs, 0)) ms before the end of the drain") }
        if heldEdits > 0 { t.row("edits held behind a refused push", "\(heldEdits) (sent coalesced)") }
        t.counts("refused (last answer an error)", refusedByCode)
        if retries > 0 || retryAfterMs.count > 0 {
            t.row("retries after unavailable", "\(retries); retryAfterMs hints: \(retryAfterMs.row)")
        }
        t.row("conflict rate", "\(fmt(conflictRate * 100, 2)) % (rebase + discard) / answered")
        t.row("throughput", "\(fmt(commitsPerSecond, 0)) commits/s, \(fmt(editsCommittedPerSecond, 0)) edits committed/s")
        t.row("push → result", pushToResultMs.row)
        t.timeline("  p99 per second", pushToResultPerSecond, limit: targetResultP99)
        t.row("commit → visible to others", commitToVisibleMs.row)
        t.timeline("  p99 per second", commitToVisiblePerSecond, limit: targetVisibleP99)
        t.row("visible deliveries", "\(visibleDeliveries) of \(expectedVisibleDeliveries) expected")
        if unresolvedReceipts > 0 { t.row("patches never matched to a result", "\(unresolvedReceipts)") }
        t.row("clock order violations", "\(orderViolations)")
        t.row("bench send lag", sendLagMs.row)
        t.row("bench skipped push slots", "\(skippedPushSlots)")
        t.row("control: ping round trip", controlPingRTTMs.row)
        t.counts("errors by code", errors)
        t.counts("disconnects by close code", disconnects)
        t.resources(resources)
        if let r = redisCommandsPerPush { t.row("redis commands per push", fmt(r, 2)) }
        if let r = redisCallsPerPush { t.row("redis calls per push (the node's)", fmt(r, 2)) }
        if let cpu = tandemCPUMicrosPerCommit { t.row("tandem CPU per commit", "\(fmt(cpu, 1)) µs") }
        if let cpu = redisCPUMicrosPerCommit { t.row("redis CPU per commit", "\(fmt(cpu, 1)) µs") }
        t.targets(targets)
        return t.text
    }
}
