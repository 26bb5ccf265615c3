import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import TandemClient

// `tandem-bench presence`: N clients over D docs, each moving its cursor at --rate Hz; measures
// end-to-end cursor latency (send → receipt at every other member of the doc).
//
// Each cursor state is {"b":CLIENT,"n":SEQ,"ts":SEND_NS,"x":…,"y":…}. The server re-serializes states
// with sorted keys, so in every ENTRY the state starts with `"state":{"b":` followed by n and ts, which
// the receive path finds with memmem and reads without parsing the rest of the message.

struct PresenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presence",
        abstract: "Cursor broadcast: latency from a client's presence update to every other member of its doc.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Clients (each its own user).") var clients = 1000
    @Option(help: "Docs; clients are spread evenly (client i joins doc i mod docs).") var docs = 20
    @Option(help: "Cursor updates per client per second.") var rate = 20.0
    @Option(help: "Measured seconds (after the warm-up).") var duration = 60.0
    @Option(help: "Seconds of sending before the measured window.") var warmup = 5.0
    @Option(help: "Seconds to keep receiving after the last measured send.") var drain = 2.0
    @Option(help: "Send-time jitter, as a fraction of the period (each send at its slot ± this).") var jitter = 0.2
    @Option(name: .customLong("target-p99-ms"), help: "Latency target (p99).") var targetP99 = 100.0
    @Option(name: .customLong("target-redis-per-update"), help: "Redis commands per cursor update target.")
    var targetRedisPerUpdate = 0.2
    @Option(
        name: .customLong("second-url"),
        help: "A second node's WebSocket endpoint (same Redis): every other member of each doc connects there, and latency is reported for same-node and cross-node pairs apart.")
    var secondURL: String?
    @Option(name: .customLong("target-cross-p99-ms"), help: "Cross-node latency target (p99), with --second-url.")
    var targetCrossP99 = 65.0
    @Flag(
        name: .customLong("trace-pubsub"),
        help: "With --second-url and --redis: subscribe to the docs' channels too and split a sample of cross-node deliveries into send → on pub/sub and pub/sub → client (PresenceTrace.swift).")
    var tracePubSub = false
    @Option(name: .customLong("trace-every"), help: "With --trace-pubsub: trace the cross-node receipts of every n-th client.")
    var traceEvery = 5

    func validate() throws {
        guard clients > 0, docs > 0, docs <= clients else { throw ValidationError("need 0 < docs <= clients") }
        guard rate > 0, duration > 0, warmup >= 0 else { throw ValidationError("rate and duration must be > 0") }
        if tracePubSub {
            guard secondURL != nil, common.redis != nil else { throw ValidationError("--trace-pubsub needs --second-url and --redis") }
            guard traceEvery > 0 else { throw ValidationError("--trace-every must be > 0") }
        }
    }

    func run() async throws {
        let run = LoadRun(common: common)
        let runID = run.runID
        var tracedPlan = PresencePlan(clients: clients, docs: docs, runID: runID, rate: rate, jitter: jitter, nodes: secondURL == nil ? 1 : 2)
        let trace = try tracePubSub ? PubSubTrace(redisURL: common.redis!, channels: tracedPlan.docNames.map { "tandem:{\($0)}" }) : nil
        if trace != nil { tracedPlan.traceEvery = traceEvery }
        let plan = tracedPlan
        let loops = LoopSet(threads: common.threads) { PresenceLoopStats() }
        let joined = SharedCounter()
        let closing = SharedFlag()
        log("presence: \(clients) clients, \(docs) docs, \(rate) Hz, \(duration) s (+\(warmup) s warm-up), run \(runID), \(loops.loops.count) loops"
            + (secondURL.map { ", half of each doc's members on \($0)" } ?? ""))

        // 1. Connect (paced, honouring 503 Retry-After) and join.
        let started = monotonicNanos()
        let members = (0..<clients).map { i in
            PresenceMember(index: i, plan: plan, stats: loops.stats(for: i), loop: loops.loop(for: i), joined: joined, closing: closing)
        }
        let secondURL = self.secondURL
        await run.connect(
            members, identity: { ("\(runID)-u\($0)", "c\($0)") }, progress: { "joined \(joined.value)" },
            endpoint: { plan.node(of: $0) == 1 ? secondURL : nil })
        let clientCount = clients
        let allJoined = await waitUntil(timeoutSeconds: 30) { joined.value >= clientCount }
        let rampSeconds = Double(monotonicNanos() - started) / 1e9
        let handshakes = run.connector.snapshot
        log("  ramp: \(handshakes.succeeded) connected, \(joined.value) joined in \(fmt(rampSeconds, 1)) s; rejected \(handshakes.rejectedByStatus)")
        if !allJoined { log("  warning: only \(joined.value)/\(clients) joined; measuring anyway") }

        // 2. Send from now; measure [windowStart, windowEnd).
        let measured = await run.measure(loops: loops.loops, warmup: warmup, duration: duration, drain: drain) { sendStart, window in
            trace?.begin(window: window)
            for m in members { m.loop.execute { m.startSending(at: sendStart, window: window) } }
        }

        // 3. Collect, then leave cleanly.
        let perLoop = try await loops.collect { $0.snapshot() }
        closing.set()
        let pingRTT = await measured.probe.finish()
        await run.closeAll(members)
        await loops.shutdown()

        var total = PresenceLoopSnapshot.empty
        for s in perLoop { total.merge(s) }
        let traced = await trace?.finish(total.traceReceipts)
        let result = PresenceResult(
            plan: plan, duration: duration, warmup: warmup, ramp: rampSeconds, allJoined: allJoined, handshakes: handshakes,
            totals: total, pingRTT: pingRTT, resources: measured.resources, targetP99: targetP99,
            targetRedisPerUpdate: targetRedisPerUpdate, targetCrossP99: targetCrossP99, pubSubTrace: traced)
        try emit(result, table: result.table, options: common)
    }
}

struct Window: Sendable {
    var start: UInt64
    var end: UInt64
    @inline(__always) func contains(_ t: UInt64) -> Bool { t >= start && t < end }
}

/// Who is where; immutable, shared by every member.
struct PresencePlan: Sendable, Codable {
    var clients: Int
    var docs: Int
    var runID: String
    var rate: Double
    var jitter: Double
    var docNames: [String]
    var membersPerDoc: [Int]
    /// 1, or 2 with --second-url: client i is on node (i / docs) % 2, so each doc has members on both.
    var nodes: Int
    /// With --trace-pubsub: clients whose index is a multiple of this keep their cross-node receipts (0: none).
    var traceEvery = 0

    init(clients: Int, docs: Int, runID: String, rate: Double, jitter: Double, nodes: Int = 1) {
        self.nodes = nodes
        self.clients = clients
        self.docs = docs
        self.runID = runID
        self.rate = rate
        self.jitter = jitter
        docNames = (0..<docs).map { "bench-\(runID)-p\($0)" }
        membersPerDoc = (0..<docs).map { d in clients / docs + (d < clients % docs ? 1 : 0) }
    }

    var periodNs: UInt64 { UInt64(1e9 / rate) }

    @inline(__always) func node(of client: Int) -> Int { (client / docs) % nodes }
}

/// Counters of one event loop (only touched on that loop).
final class PresenceLoopStats {
    var latency = makeLatencyHistogram()
    /// With two nodes: sender and receiver on the same node, or on different ones.
    var sameNode = makeLatencyHistogram()
    var crossNode = makeLatencyHistogram()
    var timeline = LatencyTimeline()
    var sendLag = makeLatencyHistogram()
    var sent = 0
    var expected = 0
    var delivered = 0
    var superseded = 0
    var stale = 0
    var skippedSlots = 0
    var presenceMessages = 0
    var presenceBytes = 0
    var errors: [String: Int] = [:]
    var disconnects: [String: Int] = [:]
    /// With --trace-pubsub: sampled cross-node receipts, and same-node ones (the sender node's own delivery).
    var traceReceipts: [TraceReceipt] = []

    func snapshot() -> PresenceLoopSnapshot {
        PresenceLoopSnapshot(
            latency: latency, sameNode: sameNode, crossNode: crossNode, timeline: timeline, sendLag: sendLag, sent: sent, expected: expected, delivered: delivered,
            superseded: superseded, stale: stale, presenceMessages: presenceMessages, presenceBytes: presenceBytes,
            errors: errors, disconnects: disconnects, skippedSlots: skippedSlots, traceReceipts: traceReceipts)
    }
}

struct PresenceLoopSnapshot: Sendable {
    var latency: LatencyHistogram
    var sameNode: LatencyHistogram
    var crossNode: LatencyHistogram
    var timeline: LatencyTimeline
    var sendLag: LatencyHistogram
    var sent: Int
    var expected: Int
    var delivered: Int
    var superseded: Int
    var stale: Int
    var presenceMessages: Int
    var presenceBytes: Int
    var errors: [String: Int]
    var disconnects: [String: Int]
    var skippedSlots: Int
    var traceReceipts: [TraceReceipt]

    static var empty: PresenceLoopSnapshot {
        .init(
            latency: makeLatencyHistogram(), sameNode: makeLatencyHistogram(), crossNode: makeLatencyHistogram(),
            timeline: LatencyTimeline(), sendLag: makeLatencyHistogram(), sent: 0, expected: 0, delivered: 0,
            superseded: 0, stale: 0, presenceMessages: 0, presenceBytes: 0, errors: [:], disconnects: [:],
            skippedSlots: 0, traceReceipts: [])
    }

    mutating func merge(_ o: PresenceLoopSnapshot) {
        latency.add(o.latency)
        sameNode.add(o.sameNode)
        crossNode.add(o.crossNode)
        timeline.merge(o.timeline)
        sendLag.add(o.sendLag)
        sent += o.sent
        expected += o.expected
        delivered += o.delivered
        superseded += o.superseded
        stale += o.stale
        presenceMessages += o.presenceMessages
        presenceBytes += o.presenceBytes
        mergeCounts(&errors, o.errors)
        mergeCounts(&disconnects, o.disconnects)
        skippedSlots += o.skippedSlots
        traceReceipts += o.traceReceipts
    }
}

/// One simulated user. Confined to `loop`: created on the main task, then only used there.
final class PresenceMember: LoadMember, @unchecked Sendable {  // @unchecked: confined to `loop` (state touched there only)
    let index: Int
    let doc: Int
    let plan: PresencePlan
    let stats: PresenceLoopStats
    let loop: any EventLoop
    private let joinedCounter: SharedCounter
    private let closing: SharedFlag
    private(set) var client: WebSocketClient?
    private var hasJoined = false
    /// Highest sequence number seen per member of the doc (by local index = client / docs).
    private var lastSeq: [Int32]
    /// Whether that last update was sent inside the measured window.
    private var lastInWindow: [Bool]
    private var seq: UInt64 = 0
    private var window = Window(start: 0, end: 0)
    private lazy var schedule = SendSchedule(periodNs: plan.periodNs, spreadNs: Int64(Double(plan.periodNs) * plan.jitter))
    private let docPrefix: ByteBuffer

    init(index: Int, plan: PresencePlan, stats: PresenceLoopStats, loop: any EventLoop, joined: SharedCounter, closing: SharedFlag) {
        self.index = index
        self.doc = index % plan.docs
        self.plan = plan
        self.stats = stats
        self.loop = loop
        self.joinedCounter = joined
        self.closing = closing
        self.lastSeq = Array(repeating: -1, count: plan.membersPerDoc[index % plan.docs])
        self.lastInWindow = Array(repeating: false, count: plan.membersPerDoc[index % plan.docs])
        var prefix = ByteBufferAllocator().buffer(capacity: 96)
        prefix.writeString(#"{"t":"presence","doc":""# + plan.docNames[index % plan.docs] + #"","state":{"b":"#)
        prefix.writeDecimal(index)
        prefix.writeString(#","n":"#)
        docPrefix = prefix
    }

    var callbacks: WebSocketClient.Callbacks {
        .init(
            onText: { [self] buffer in self.received(buffer) },
            onClose: { [self] code, reason in self.closed(code: code, reason: reason) })
    }

    func attached(_ client: WebSocketClient) {
        self.client = client
        let join = #"{"t":"join","doc":""# + plan.docNames[doc] + #"","state":{"b":"# + String(index)
            + #","n":0,"ts":0,"x":0,"y":0}}"#
        client.send(text: join)
    }

    // MARK: Sending

    func startSending(at start: UInt64, window: Window) {
        self.window = window
        schedule.begin(at: start)
        scheduleNext()
    }

    private func scheduleNext() {
        guard let (deadline, skipped) = schedule.next(window: window) else { return }
        stats.skippedSlots += skipped
        loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { [self] in self.fire() }
    }

    private func fire() {
        guard let client, !client.isClosed else { return }
        let now = monotonicNanos()
        seq += 1
        var msg = ByteBuffer.framePayload(capacity: 160)
        msg.writeImmutableBuffer(docPrefix)
        msg.writeDecimal(seq)
        msg.writeStaticString(#","ts":"#)
        msg.writeDecimal(now)
        msg.writeStaticString(#","x":"#)
        msg.writeDecimal(Int(seq % 1000))
        msg.writeStaticString(#","y":"#)
        msg.writeDecimal(Int((seq * 7) % 700))
        msg.writeStaticString("}}")
        client.send(text: msg)
        if window.contains(now) {
            stats.sent += 1
            stats.expected += plan.membersPerDoc[doc] - 1
            stats.sendLag.recordNanos(now > schedule.scheduledAt ? now - schedule.scheduledAt : 0)
        }
        scheduleNext()
    }

    // MARK: Receiving

    private func received(_ buffer: ByteBuffer) {
        let now = monotonicNanos()
        buffer.withUnsafeReadableBytes { raw in
            var s = ByteScanner(raw)
            switch MessageType.of(s) {
            case .presence:
                stats.presenceMessages += 1
                stats.presenceBytes += raw.count
                scanEntries(&s, now: now)
            case .joined:
                if !hasJoined {
                    hasJoined = true
                    joinedCounter.add()
                }
                scanEntries(&s, now: now)
            case .error:
                let code = s.string(after: Patterns.code) ?? "?"
                stats.errors[code, default: 0] += 1
            default:
                break
            }
        }
    }

    /// Every ENTRY's state: `"state":{"b":B,"n":N,"ts":T,…`.
    private func scanEntries(_ s: inout ByteScanner, now: UInt64) {
        let docs = UInt64(plan.docs)
        while s.skip(past: Patterns.stateB) {
            guard let sender = s.readUInt(), s.consume(Patterns.commaN), let n = s.readUInt(),
                s.consume(Patterns.commaTs), let ts = s.readUInt()
            else { continue }
            guard sender != UInt64(index), sender % docs == UInt64(doc) else { continue }
            let local = Int(sender / docs)
            guard local < lastSeq.count else { continue }
            let last = lastSeq[local]
            let seqN = Int32(truncatingIfNeeded: n)
            if seqN <= last {
                if ts > 0 && window.contains(ts) { stats.stale += 1 }
                continue
            }
            lastSeq[local] = seqN
            let previousInWindow = lastInWindow[local]
            lastInWindow[local] = ts > 0 && window.contains(ts)
            guard ts > 0, window.contains(ts) else { continue }
            stats.delivered += 1
            // The updates between the previous one seen and this one were merged away by the server's tick
            // (latest state wins). Counted only when the previous one was in the window too, so updates sent
            // before the window are not counted (undercounts by at most one gap per pair at the start).
            if previousInWindow { stats.superseded += Int(seqN - last - 1) }
            let ns = now > ts ? now - ts : 0
            stats.latency.recordNanos(ns)
            if plan.nodes > 1 {
                if plan.node(of: Int(sender)) == plan.node(of: index) {
                    stats.sameNode.recordNanos(ns)
                } else {
                    stats.crossNode.recordNanos(ns)
                    if plan.traceEvery > 0 && index % plan.traceEvery == 0 {
                        stats.traceReceipts.append(TraceReceipt(key: TraceReceipt.key(sender: sender, n: n), sentAt: ts, receivedAt: now))
                    }
                }
                if plan.traceEvery > 0 && index % plan.traceEvery == 0 && plan.node(of: Int(sender)) == plan.node(of: index) {
                    // The sender node's own delivery of the same tick: when it went out there (see PubSubTrace).
                    stats.traceReceipts.append(
                        TraceReceipt(key: TraceReceipt.key(sender: sender, n: n), sentAt: ts, receivedAt: now, sameNode: true))
                }
            }
            stats.timeline.record(ns, sentAt: ts, window: window)
        }
    }

    private func closed(code: Int?, reason: String) {
        guard !closing.isSet else { return }
        stats.disconnects[code.map(String.init) ?? "no close frame", default: 0] += 1
    }
}

// MARK: - Result

struct PresenceResult: Codable, Sendable {
    var scenario = "presence"
    var clients: Int
    var docs: Int
    var membersPerDoc: [Int]
    var rateHz: Double
    var durationSeconds: Double
    var warmupSeconds: Double
    var runID: String
    var rampSeconds: Double
    var allJoined: Bool
    var handshakes: HandshakeCounts
    var sent: Int
    var expected: Int
    var delivered: Int
    var deliveredRatio: Double
    /// Updates replaced by a newer one of the same sender before a tick went out (the protocol merges).
    var superseded: Int
    var deliveredOrSupersededRatio: Double
    var stale: Int
    var latencyMs: LatencySummary
    /// With --second-url: pairs on the same node, and across the two nodes (nil with one node).
    var sameNodeLatencyMs: LatencySummary?
    var crossNodeLatencyMs: LatencySummary?
    var nodes: Int
    /// Per second of the window (by send time).
    var latencyPerSecond: [SecondSummary]
    /// The window without its first `settleSeconds` seconds (by send time): whether the p99 is made while
    /// the load settles (issue 14, stop 27). Nil if the window is not longer than that.
    var latencyAfterSettlingMs: LatencySummary?
    /// The median of the per-second p99s: the steady tail, which a few bad seconds do not move.
    var medianSecondP99Ms: Double?
    /// Means of the node's own legs over the window, from its /metrics (nil against the bare server).
    var nodeLegsMeanMs: NodeLegs?
    /// How late the bench fired its sends compared with their schedule (a bench health check).
    var sendLagMs: LatencySummary
    /// Send slots the bench skipped because it was more than a period late (should be 0 on a quiet machine).
    var skippedSendSlots: Int
    /// Control: `ping` → `pong` round trip on an extra connection during the window (see PingProbe).
    var controlPingRTTMs: LatencySummary
    var presenceMessagesReceived: Int
    var presenceMBReceived: Double
    var errors: [String: Int]
    var disconnects: [String: Int]
    var disconnectCount: Int
    var resources: ResourceReport
    var redisCommandsPerUpdate: Double?
    var targets: [TargetCheck]
    var targetP99: Double
    /// With --trace-pubsub: a sample of cross-node deliveries split at the sender node's publish.
    var pubSubTrace: PubSubTraceResult?

    init(
        plan: PresencePlan, duration: Double, warmup: Double, ramp: Double, allJoined: Bool, handshakes: HandshakeCounts,
        totals t: PresenceLoopSnapshot, pingRTT: LatencySummary, resources: ResourceReport, targetP99: Double,
        targetRedisPerUpdate: Double, targetCrossP99: Double = 65, pubSubTrace: PubSubTraceResult? = nil
    ) {
        self.pubSubTrace = pubSubTrace
        controlPingRTTMs = pingRTT
        self.targetP99 = targetP99
        clients = plan.clients
        docs = plan.docs
        membersPerDoc = Array(Set(plan.membersPerDoc)).sorted()
        rateHz = plan.rate
        durationSeconds = duration
        warmupSeconds = warmup
        runID = plan.runID
        rampSeconds = ramp
        self.allJoined = allJoined
        self.handshakes = handshakes
        sent = t.sent
        expected = t.expected
        delivered = t.delivered
        deliveredRatio = t.expected > 0 ? Double(t.delivered) / Double(t.expected) : 0
        superseded = t.superseded
        deliveredOrSupersededRatio = t.expected > 0 ? Double(t.delivered + t.superseded) / Double(t.expected) : 0
        stale = t.stale
        latencyMs = LatencySummary(t.latency)
        nodes = plan.nodes
        sameNodeLatencyMs = plan.nodes > 1 ? LatencySummary(t.sameNode) : nil
        crossNodeLatencyMs = plan.nodes > 1 ? LatencySummary(t.crossNode) : nil
        latencyPerSecond = t.timeline.summary
        latencyAfterSettlingMs = t.timeline.merged(from: Self.settleSeconds).map { LatencySummary($0) }
        let p99s = latencyPerSecond.filter { $0.count > 0 }.map(\.p99).sorted()
        medianSecondP99Ms = p99s.isEmpty ? nil : p99s[p99s.count / 2]
        nodeLegsMeanMs = NodeLegs(resources.serverMetricDeltas, seconds: duration)
        sendLagMs = LatencySummary(t.sendLag)
        skippedSendSlots = t.skippedSlots
        presenceMessagesReceived = t.presenceMessages
        presenceMBReceived = Double(t.presenceBytes) / 1_048_576
        errors = t.errors
        disconnects = t.disconnects
        disconnectCount = t.disconnects.values.reduce(0, +)
        self.resources = resources
        redisCommandsPerUpdate = resources.redisCommands.map { t.sent > 0 ? Double($0) / Double(t.sent) : 0 }
        targets = [
            TargetCheck(
                name: "cursor latency p99", limit: "<= \(fmt(targetP99, 0)) ms", measured: "\(fmt(latencyMs.p99, 1)) ms",
                met: latencyMs.count > 0 && latencyMs.p99 <= targetP99),
            TargetCheck(name: "disconnects", limit: "0", measured: "\(disconnectCount)", met: disconnectCount == 0 && allJoined),
        ]
        if let same = sameNodeLatencyMs, let cross = crossNodeLatencyMs {
            targets.append(
                TargetCheck(
                    name: "cross-node latency p99", limit: "<= \(fmt(targetCrossP99, 0)) ms", measured: "\(fmt(cross.p99, 1)) ms",
                    met: cross.count > 0 && cross.p99 <= targetCrossP99))
            targets.append(
                TargetCheck(
                    name: "same-node latency p99", limit: "<= \(fmt(targetP99, 0)) ms", measured: "\(fmt(same.p99, 1)) ms",
                    met: same.count > 0 && same.p99 <= targetP99))
        }
        if let r = redisCommandsPerUpdate {
            targets.append(
                TargetCheck(
                    name: "redis commands per update", limit: "<= \(targetRedisPerUpdate)", measured: fmt(r, 3),
                    met: r <= targetRedisPerUpdate))
        }
    }

    var table: String {
        var t = TextTable(title: "tandem-bench presence — \(clients) clients, \(docs) docs, \(fmt(rateHz, 0)) Hz, \(fmt(durationSeconds, 0)) s")
        t.section("setup")
        if nodes > 1 { t.row("nodes", "\(nodes) (half of each doc's members on each; server figures are the first node's)") }
        t.row("members per doc", membersPerDoc.map(String.init).joined(separator: ", "))
        t.row("ramp (connect + join)", "\(fmt(rampSeconds, 1)) s, all joined: \(allJoined)")
        t.row("handshakes", "\(handshakes.attempts) attempts, \(handshakes.succeeded) ok, \(handshakes.rejected) refused")
        t.counts("  refused by status", handshakes.rejectedByStatus)
        if !handshakes.failures.isEmpty { t.counts("  failures", handshakes.failures) }
        t.section("cursor updates (measured window)")
        t.row("sent", "\(sent) (\(fmt(Double(sent) / durationSeconds, 0))/s)")
        t.row("expected deliveries", "\(expected) (sent × (members − 1))")
        t.row("delivered", "\(delivered) (\(fmt(deliveredRatio * 100, 2)) %)")
        t.row("superseded by a newer update", "\(superseded) (delivered + superseded: \(fmt(deliveredOrSupersededRatio * 100, 2)) %)")
        if stale > 0 { t.row("stale (older than seen)", "\(stale)") }
        t.row("end-to-end latency", latencyMs.row)
        if let same = sameNodeLatencyMs, let cross = crossNodeLatencyMs {
            t.row("  same node (of 2)", same.row)
            t.row("  cross-node", cross.row)
        }
        if let trace = pubSubTrace {
            t.row("  traced cross-node sample", trace.totalMs.row + (trace.unmatched > 0 ? ", \(trace.unmatched) not seen on pub/sub" : ""))
            t.row("    send → on pub/sub", trace.sendToPubSubMs.row)
            t.row("    pub/sub → client", trace.pubSubToClientMs.row)
            if let slow = trace.slowestPercentMeanMs {
                t.row(
                    "    slowest 1 %, mean",
                    "\(fmt(slow.total, 1)) ms = \(fmt(slow.sendToPubSub, 1)) to pub/sub + \(fmt(slow.pubSubToClient, 1)) from it")
            }
            if let local = trace.sendToSameNodeMs, let behind = trace.sameNodeToPubSubMs {
                t.row("    send → sender node's own delivery", local.row)
                t.row("    own delivery → on pub/sub", behind.row + ", on pub/sub first in \(fmt(trace.pubSubFirstPercent ?? 0, 1)) %")
                if let slow = trace.slowestPercentMeanMs, let toLocal = slow.sendToSameNode {
                    t.row("    slowest 1 %, mean", "\(fmt(toLocal, 1)) ms to own delivery (of \(fmt(slow.sendToPubSub, 1)) to pub/sub)")
                }
            }
        }
        t.timeline("  p99 per second", latencyPerSecond, limit: targetP99)
        if let median = medianSecondP99Ms { t.row("  median of the per-second p99s", "\(fmt(median, 1)) ms") }
        if let settled = latencyAfterSettlingMs { t.row("  without the first \(Self.settleSeconds) s", settled.row) }
        if let legs = nodeLegsMeanMs { t.row("  in the node (means)", legs.row) }
        t.row("bench send lag", sendLagMs.row)
        t.row("bench skipped send slots", "\(skippedSendSlots)")
        t.row("control: ping round trip", controlPingRTTMs.row)
        t.row("presence messages received", "\(presenceMessagesReceived) (\(fmt(presenceMBReceived, 0)) MB)")
        t.counts("errors by code", errors)
        t.counts("disconnects by close code", disconnects)
        t.resources(resources)
        if let r = redisCommandsPerUpdate { t.row("redis commands per update", fmt(r, 3)) }
        t.targets(targets)
        return t.text
    }
}

extension PresenceResult {
    /// The first seconds of the window left out of `latencyAfterSettlingMs`.
    static let settleSeconds = 3
}

/// Where a delivered entry waits inside the node, as means over the window from the node's histograms
/// (`tandem_presence_*_seconds`, `tandem_event_loop_lag_seconds`): the rest of the end-to-end mean is the
/// doc's tick (half of --tick-ms on average), the kernel and the clients (issue 14, stop 27).
struct NodeLegs: Codable, Sendable {
    /// Read on a connection's loop → applied by its doc's shard on another loop (senders on the other loop only).
    var inboundHop: Double
    /// How late the loops ran their timers (the tick's lateness).
    var loopLag: Double
    /// Tick start → delta flushed on one loop.
    var delivery: Double
    /// One tick phase's duration, and phases per second over all shards.
    var tickPhase: Double
    var tickPhasesPerSecond: Double

    init?(_ deltas: [String: Double], seconds: Double) {
        func mean(_ name: String) -> Double? {
            guard let sum = deltas[name + "_sum"], let count = deltas[name + "_count"], count > 0 else { return nil }
            return sum / count * 1000
        }
        guard let tick = mean("tandem_presence_tick_seconds"), let delivery = mean("tandem_presence_delivery_seconds") else { return nil }
        inboundHop = mean("tandem_presence_inbound_hop_seconds") ?? 0
        loopLag = mean("tandem_event_loop_lag_seconds") ?? 0
        self.delivery = delivery
        tickPhase = tick
        tickPhasesPerSecond = seconds > 0 ? (deltas["tandem_presence_tick_seconds_count"] ?? 0) / seconds : 0
    }

    var row: String {
        "inbound hop \(fmt(inboundHop, 1)), loop lag \(fmt(loopLag, 1)), delivery \(fmt(delivery, 1)) ms; "
            + "tick phase \(fmt(tickPhase, 2)) ms, \(fmt(tickPhasesPerSecond, 0))/s"
    }
}

extension LatencyTimeline {
    /// The seconds from `first` on, in one histogram (nil if there are none).
    func merged(from first: Int) -> LatencyHistogram? {
        guard seconds.count > first else { return nil }
        var all = seconds[first]
        for index in (first + 1)..<seconds.count { all.add(seconds[index]) }
        return all
    }
}

func log(_ message: String) {
    let line = message + "\n"
    line.utf8CString.withUnsafeBufferPointer { p in
        _ = write(2, p.baseAddress!, p.count - 1)
    }
}
