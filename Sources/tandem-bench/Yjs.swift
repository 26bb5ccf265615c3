import ArgumentParser
import NIOCore
import TandemClient

// `tandem-bench yjs`: N y-websocket clients over R rooms, each typing into the room's Y.Text at --rate Hz
// and sending its awareness state at --awareness-rate Hz; measures end-to-end latency (send → receipt at
// every other client of the room) of both. It speaks only y-protocols, so the same load runs against
// Tandem's /yjs/{room} and any y-websocket server, e.g. pycrdt-websocket's (scripts/bench.sh yjs-compare,
// docs/benchmarks.md): one Swift load generator for both, so the figures are the server's.
//
// Each update is one Yjs struct: a ContentString `~Y<sender>.<seq>.<sendNs>` appended after the client's
// own previous one (typing); a server may re-encode it (pycrdt-websocket relays its document's update, not
// the client's bytes), but the string stays whole, so the receive path finds `~Y` with memchr and reads
// three numbers without decoding the update. Each awareness state is `{"b":<sender>,"n":<seq>,"ts":<sendNs>}`,
// relayed verbatim by both servers (Tandem batches several clients' entries per message).

struct YjsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "yjs",
        abstract: "Yjs rooms (y-websocket protocol): update and awareness latency to every other client of the room.",
        discussion: """
            --url is the server's Yjs base (ws://HOST:PORT/yjs for Tandem; ws://HOST:PORT for pycrdt-websocket); \
            each room is URL/<room>. --server tandem adds the dev identity (?user=&name=) to each connection.
            """)

    enum Server: String, ExpressibleByArgument, Codable, Sendable {
        case tandem
        /// Any other y-websocket server: no query string, the path is the room.
        case plain
    }

    @OptionGroup var common: CommonOptions

    @Option(help: "tandem (dev identity in the query) or plain (another y-websocket server).") var server = Server.tandem
    @Option(help: "Clients (each its own user and Yjs clientID).") var clients = 20
    @Option(help: "Rooms; client i joins room i mod rooms.") var rooms = 1
    @Option(help: "Updates (typed strings) per client per second; 0 for none.") var rate = 20.0
    @Option(name: .customLong("awareness-rate"), help: "Awareness updates per client per second; 0 for none.")
    var awarenessRate = 20.0
    @Option(help: "Measured seconds (after the warm-up).") var duration = 60.0
    @Option(help: "Seconds of sending before the measured window.") var warmup = 5.0
    @Option(help: "Seconds to keep receiving after the last measured send.") var drain = 3.0
    @Option(help: "Send-time jitter, as a fraction of the period.") var jitter = 0.2
    @Option(name: .customLong("target-p99-ms"), help: "Latency target (p99) of updates and of awareness.") var targetP99 = 100.0

    func validate() throws {
        guard clients > 1, rooms > 0, rooms * 2 <= clients else { throw ValidationError("need at least 2 clients per room") }
        guard rate >= 0, awarenessRate >= 0, rate + awarenessRate > 0 else { throw ValidationError("need a rate") }
        guard duration > 0, warmup >= 0 else { throw ValidationError("duration must be > 0") }
    }

    func run() async throws {
        let run = LoadRun(common: common)
        let runID = run.runID
        let plan = YjsPlan(clients: clients, rooms: rooms, runID: runID, rate: rate, awarenessRate: awarenessRate, jitter: jitter)
        let loops = LoopSet(threads: common.threads) { YjsLoopStats() }
        let synced = SharedCounter()
        let closing = SharedFlag()
        log("yjs (\(server.rawValue)): \(clients) clients, \(rooms) rooms, updates \(rate) Hz, awareness \(awarenessRate) Hz, \(duration) s (+\(warmup) s warm-up), run \(runID)")

        // 1. Connect (paced) and wait for every client's first sync step 1 from the server.
        let started = monotonicNanos()
        let members = (0..<clients).map { i in
            YjsMember(index: i, plan: plan, stats: loops.stats(for: i), loop: loops.loop(for: i), synced: synced, closing: closing)
        }
        let (server, baseURL) = (self.server, run.connector.baseURL)
        await run.connect(members, width: 500, progress: { "synced \(synced.value)" }) { i in
            let url = baseURL + "/" + plan.roomNames[i % plan.rooms]
            return server == .tandem ? url + "?user=\(runID)-u\(i)&name=c\(i)" : url
        }
        let count = clients
        let allSynced = await waitUntil(timeoutSeconds: 30) { synced.value >= count }
        let rampSeconds = Double(monotonicNanos() - started) / 1e9
        let handshakes = run.connector.snapshot
        log("  ramp: \(handshakes.succeeded) connected, \(synced.value) synced in \(fmt(rampSeconds, 1)) s")
        if !allSynced { log("  warning: only \(synced.value)/\(clients) synced; measuring anyway") }

        // 2. Send from 100 ms from now; measure [window.start, window.end). (No ping probe: a y-websocket
        // server has no ping message.)
        let (_, resources) = await run.measureWindow(warmup: warmup, duration: duration, drain: drain) { sendStart, window in
            for m in members { m.loop.execute { m.startSending(at: sendStart, window: window) } }
        }

        // 3. Collect, then leave.
        let perLoop = try await loops.collect { $0.snapshot() }
        closing.set()
        await run.closeAll(members)
        await loops.shutdown()

        var total = YjsLoopSnapshot.empty
        for s in perLoop { total.merge(s) }
        let result = YjsResult(
            server: server, plan: plan, duration: duration, warmup: warmup, ramp: rampSeconds, allSynced: allSynced,
            handshakes: handshakes, totals: total, resources: resources, targetP99: targetP99)
        try emit(result, table: result.table, options: common)
    }
}

/// Who is where; immutable, shared by every member.
struct YjsPlan: Sendable {
    var clients: Int
    var rooms: Int
    var runID: String
    var rate: Double
    var awarenessRate: Double
    var jitter: Double
    var roomNames: [String]
    var membersPerRoom: [Int]
    /// Yjs clientIDs are 32-bit randoms in y-websocket clients; here consecutive from a random base, so
    /// no two clients of a run share one.
    var clientIDBase: UInt64

    init(clients: Int, rooms: Int, runID: String, rate: Double, awarenessRate: Double, jitter: Double) {
        self.clients = clients
        self.rooms = rooms
        self.runID = runID
        self.rate = rate
        self.awarenessRate = awarenessRate
        self.jitter = jitter
        roomNames = (0..<rooms).map { "bench-\(runID)-y\($0)" }
        membersPerRoom = (0..<rooms).map { r in clients / rooms + (r < clients % rooms ? 1 : 0) }
        clientIDBase = UInt64.random(in: 1..<(1 << 31))
    }
}

/// Latency and delivery counters of one kind of message (updates or awareness).
struct YjsFlowStats: Sendable {
    var latency = makeLatencyHistogram()
    var timeline = LatencyTimeline()
    var sent = 0
    var expected = 0
    var delivered = 0
    /// Awareness only: states replaced by a newer one of the same client before the server sent them.
    var superseded = 0
    var skippedSlots = 0

    mutating func merge(_ o: YjsFlowStats) {
        latency.add(o.latency)
        timeline.merge(o.timeline)
        sent += o.sent
        expected += o.expected
        delivered += o.delivered
        superseded += o.superseded
        skippedSlots += o.skippedSlots
    }
}

/// Counters of one event loop (only touched on that loop).
final class YjsLoopStats {
    var updates = YjsFlowStats()
    var awareness = YjsFlowStats()
    var messages = 0
    var bytes = 0
    var disconnects: [String: Int] = [:]

    func snapshot() -> YjsLoopSnapshot {
        YjsLoopSnapshot(updates: updates, awareness: awareness, messages: messages, bytes: bytes, disconnects: disconnects)
    }
}

struct YjsLoopSnapshot: Sendable {
    var updates: YjsFlowStats
    var awareness: YjsFlowStats
    var messages: Int
    var bytes: Int
    var disconnects: [String: Int]

    static var empty: YjsLoopSnapshot { .init(updates: .init(), awareness: .init(), messages: 0, bytes: 0, disconnects: [:]) }

    mutating func merge(_ o: YjsLoopSnapshot) {
        updates.merge(o.updates)
        awareness.merge(o.awareness)
        messages += o.messages
        bytes += o.bytes
        mergeCounts(&disconnects, o.disconnects)
    }
}

private enum YjsPatterns {
    static let update = StaticPattern("~Y")
    static let dot = StaticPattern(".")
    static let awarenessB = StaticPattern(#"{"b":"#)
    static let commaN = StaticPattern(#","n":"#)
    static let commaTs = StaticPattern(#","ts":"#)
}

/// One simulated y-websocket client. Confined to `loop`.
final class YjsMember: LoadMember, @unchecked Sendable {  // @unchecked: confined to `loop` (state touched there only)
    let index: Int
    let room: Int
    let plan: YjsPlan
    let stats: YjsLoopStats
    let loop: any EventLoop
    private let syncedCounter: SharedCounter
    private let closing: SharedFlag
    private(set) var client: WebSocketClient?
    private var hasSynced = false
    private let clientID: UInt64
    /// This client's next Yjs clock (UTF-16 units typed so far; the strings are ASCII).
    private var clock = 0
    private var updateSeq: UInt64 = 0
    private var awarenessSeq: UInt64 = 0
    /// Highest sequence number seen per member of the room (by local index = sender / rooms), per kind.
    private var lastUpdate: [Int64]
    private var lastAwareness: [Int64]
    private var lastAwarenessInWindow: [Bool]
    private var window = Window(start: 0, end: 0)
    private var updateSchedule: SendSchedule?
    private var awarenessSchedule: SendSchedule?

    init(index: Int, plan: YjsPlan, stats: YjsLoopStats, loop: any EventLoop, synced: SharedCounter, closing: SharedFlag) {
        self.index = index
        self.room = index % plan.rooms
        self.plan = plan
        self.stats = stats
        self.loop = loop
        self.syncedCounter = synced
        self.closing = closing
        clientID = plan.clientIDBase + UInt64(index)
        let members = plan.membersPerRoom[index % plan.rooms]
        lastUpdate = Array(repeating: -1, count: members)
        lastAwareness = Array(repeating: -1, count: members)
        lastAwarenessInWindow = Array(repeating: false, count: members)
        func schedule(_ rate: Double) -> SendSchedule? {
            guard rate > 0 else { return nil }
            let period = UInt64(1e9 / rate)
            return SendSchedule(periodNs: period, spreadNs: Int64(Double(period) * plan.jitter))
        }
        updateSchedule = schedule(plan.rate)
        awarenessSchedule = schedule(plan.awarenessRate)
    }

    var callbacks: WebSocketClient.Callbacks {
        .init(
            onBinary: { [self] buffer in self.received(buffer) },
            onClose: { [self] code, reason in self.closed(code: code) })
    }

    func attached(_ client: WebSocketClient) {
        self.client = client
    }

    // MARK: Sending

    func startSending(at start: UInt64, window: Window) {
        self.window = window
        if updateSchedule != nil {
            updateSchedule!.begin(at: start)
            scheduleUpdate()
        }
        if awarenessSchedule != nil {
            awarenessSchedule!.begin(at: start)
            scheduleAwareness()
        }
    }

    private func scheduleUpdate() {
        guard let (deadline, skipped) = updateSchedule?.next(window: window) else { return }
        stats.updates.skippedSlots += skipped
        loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { [self] in self.sendUpdate() }
    }

    private func scheduleAwareness() {
        guard let (deadline, skipped) = awarenessSchedule?.next(window: window) else { return }
        stats.awareness.skippedSlots += skipped
        loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { [self] in self.sendAwareness() }
    }

    /// sync update (0, 2) holding one Yjs update: one struct, no delete set.
    private func sendUpdate() {
        defer { scheduleUpdate() }
        guard let client, !client.isClosed else { return }
        let now = monotonicNanos()
        updateSeq += 1
        var text = ByteBufferAllocator().buffer(capacity: 48)
        text.writeStaticString("~Y")
        text.writeDecimal(index)
        text.writeStaticString(".")
        text.writeDecimal(updateSeq)
        text.writeStaticString(".")
        text.writeDecimal(now)
        var update: [UInt8] = [1, 1]  // one client, one struct
        appendVarUInt(clientID, to: &update)
        appendVarUInt(UInt64(clock), to: &update)
        if clock == 0 {
            update += [0x04, 0x01, 0x01, UInt8(ascii: "t")]  // ContentString, parent: root type "t"
        } else {
            update.append(0x84)  // ContentString with an origin: this client's previous character
            appendVarUInt(clientID, to: &update)
            appendVarUInt(UInt64(clock - 1), to: &update)
        }
        appendVarUInt(UInt64(text.readableBytes), to: &update)
        update += text.readableBytesView
        update.append(0)  // empty delete set
        clock += text.readableBytes
        var message = ByteBuffer.framePayload(capacity: update.count + 8)
        message.writeBytes([0, 2])
        message.writeVarUInt(UInt64(update.count))
        message.writeBytes(update)
        client.sendBinary(message)
        if window.contains(now) {
            stats.updates.sent += 1
            stats.updates.expected += plan.membersPerRoom[room] - 1
        }
    }

    /// awareness (1) with this client's one entry.
    private func sendAwareness() {
        defer { scheduleAwareness() }
        guard let client, !client.isClosed else { return }
        let now = monotonicNanos()
        awarenessSeq += 1
        var state = ByteBufferAllocator().buffer(capacity: 64)
        state.writeStaticString(#"{"b":"#)
        state.writeDecimal(index)
        state.writeStaticString(#","n":"#)
        state.writeDecimal(awarenessSeq)
        state.writeStaticString(#","ts":"#)
        state.writeDecimal(now)
        state.writeStaticString("}")
        var payload: [UInt8] = [1]
        appendVarUInt(clientID, to: &payload)
        appendVarUInt(awarenessSeq, to: &payload)
        appendVarUInt(UInt64(state.readableBytes), to: &payload)
        payload += state.readableBytesView
        var message = ByteBuffer.framePayload(capacity: payload.count + 8)
        message.writeInteger(UInt8(1))
        message.writeVarUInt(UInt64(payload.count))
        message.writeBytes(payload)
        client.sendBinary(message)
        if window.contains(now) {
            stats.awareness.sent += 1
            stats.awareness.expected += plan.membersPerRoom[room] - 1
        }
    }

    // MARK: Receiving

    private func received(_ buffer: ByteBuffer) {
        let now = monotonicNanos()
        stats.messages += 1
        stats.bytes += buffer.readableBytes
        guard buffer.readableBytes >= 2, let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let sub = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self)
        else { return }
        switch (type, sub) {
        case (0, 0):
            // The server's sync step 1: answer with a step 2 of what we have that it lacks (nothing yet,
            // or our typing so far after a reconnect — not done here), as y-websocket clients do.
            if !hasSynced {
                hasSynced = true
                syncedCounter.add()
                client?.sendBinary([0, 1, 2, 0, 0])  // step 2: an empty update (no structs, no deletes)
            }
        case (0, 1), (0, 2):
            buffer.withUnsafeReadableBytes { raw in
                var s = ByteScanner(raw, from: 2)
                while s.skip(past: YjsPatterns.update) {
                    guard let sender = s.readUInt(), s.consume(YjsPatterns.dot), let seq = s.readUInt(),
                        s.consume(YjsPatterns.dot), let ts = s.readUInt()
                    else { continue }
                    record(update: sender, seq: seq, ts: ts, now: now)
                }
            }
        case (1, _):
            buffer.withUnsafeReadableBytes { raw in
                var s = ByteScanner(raw, from: 1)
                while s.skip(past: YjsPatterns.awarenessB) {
                    guard let sender = s.readUInt(), s.consume(YjsPatterns.commaN), let seq = s.readUInt(),
                        s.consume(YjsPatterns.commaTs), let ts = s.readUInt()
                    else { continue }
                    record(awareness: sender, seq: seq, ts: ts, now: now)
                }
            }
        default:
            break
        }
    }

    /// The sender's local index in this room, if it is another member of it.
    private func local(_ sender: UInt64) -> Int? {
        let rooms = UInt64(plan.rooms)
        guard sender != UInt64(index), sender % rooms == UInt64(room) else { return nil }
        let local = Int(sender / rooms)
        return local < lastUpdate.count ? local : nil
    }

    private func record(update sender: UInt64, seq: UInt64, ts: UInt64, now: UInt64) {
        guard let local = local(sender), Int64(seq) > lastUpdate[local] else { return }
        lastUpdate[local] = Int64(seq)
        guard window.contains(ts) else { return }
        stats.updates.delivered += 1
        let ns = now > ts ? now - ts : 0
        stats.updates.latency.recordNanos(ns)
        stats.updates.timeline.record(ns, sentAt: ts, window: window)
    }

    private func record(awareness sender: UInt64, seq: UInt64, ts: UInt64, now: UInt64) {
        guard let local = local(sender) else { return }
        let last = lastAwareness[local]
        guard Int64(seq) > last else { return }
        lastAwareness[local] = Int64(seq)
        let previousInWindow = lastAwarenessInWindow[local]
        lastAwarenessInWindow[local] = window.contains(ts)
        guard window.contains(ts) else { return }
        stats.awareness.delivered += 1
        // States between the previous one seen and this one were replaced by the server's batching
        // (latest state wins), counted only when the previous one was in the window too.
        if previousInWindow { stats.awareness.superseded += Int(Int64(seq) - last - 1) }
        let ns = now > ts ? now - ts : 0
        stats.awareness.latency.recordNanos(ns)
        stats.awareness.timeline.record(ns, sentAt: ts, window: window)
    }

    private func closed(code: Int?) {
        guard !closing.isSet else { return }
        stats.disconnects[code.map(String.init) ?? "no close frame", default: 0] += 1
    }
}

private func appendVarUInt(_ value: UInt64, to bytes: inout [UInt8]) {
    var value = value
    while value > 0x7F {
        bytes.append(UInt8(value & 0x7F) | 0x80)
        value >>= 7
    }
    bytes.append(UInt8(value))
}

extension ByteBuffer {
    /// lib0 varUint.
    mutating func writeVarUInt(_ value: UInt64) {
        var value = value
        while value > 0x7F {
            writeInteger(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        writeInteger(UInt8(value))
    }
}

// MARK: - Result

struct YjsFlowResult: Codable, Sendable {
    var sent: Int
    var expected: Int
    var delivered: Int
    var deliveredRatio: Double
    var superseded: Int
    var deliveriesPerSecond: Double
    var latencyMs: LatencySummary
    var latencyPerSecond: [SecondSummary]
    var skippedSendSlots: Int

    init(_ s: YjsFlowStats, duration: Double) {
        sent = s.sent
        expected = s.expected
        delivered = s.delivered
        deliveredRatio = s.expected > 0 ? Double(s.delivered) / Double(s.expected) : 0
        superseded = s.superseded
        deliveriesPerSecond = Double(s.delivered) / duration
        latencyMs = LatencySummary(s.latency)
        latencyPerSecond = s.timeline.summary
        skippedSendSlots = s.skippedSlots
    }
}

struct YjsResult: Codable, Sendable {
    var scenario = "yjs"
    var server: YjsCommand.Server
    var clients: Int
    var rooms: Int
    var membersPerRoom: [Int]
    var updateRateHz: Double
    var awarenessRateHz: Double
    var durationSeconds: Double
    var warmupSeconds: Double
    var runID: String
    var rampSeconds: Double
    var allSynced: Bool
    var handshakes: HandshakeCounts
    var updates: YjsFlowResult
    var awareness: YjsFlowResult
    /// Updates and awareness states delivered per second of the window (each to each other member).
    var deliveriesPerSecond: Double
    /// Server CPU per delivery (µs), and with Redis's CPU added (Tandem stores every update; pycrdt-websocket
    /// stores nothing by default).
    var serverCpuMicrosPerDelivery: Double?
    var serverAndRedisCpuMicrosPerDelivery: Double?
    var messagesReceived: Int
    var mbReceived: Double
    var disconnects: [String: Int]
    var disconnectCount: Int
    var resources: ResourceReport
    var targets: [TargetCheck]
    var targetP99: Double

    init(
        server: YjsCommand.Server, plan: YjsPlan, duration: Double, warmup: Double, ramp: Double, allSynced: Bool,
        handshakes: HandshakeCounts, totals t: YjsLoopSnapshot, resources: ResourceReport, targetP99: Double
    ) {
        self.server = server
        self.targetP99 = targetP99
        clients = plan.clients
        rooms = plan.rooms
        membersPerRoom = Array(Set(plan.membersPerRoom)).sorted()
        updateRateHz = plan.rate
        awarenessRateHz = plan.awarenessRate
        durationSeconds = duration
        warmupSeconds = warmup
        runID = plan.runID
        rampSeconds = ramp
        self.allSynced = allSynced
        self.handshakes = handshakes
        updates = YjsFlowResult(t.updates, duration: duration)
        awareness = YjsFlowResult(t.awareness, duration: duration)
        let deliveries = Double(t.updates.delivered + t.awareness.delivered)
        deliveriesPerSecond = deliveries / duration
        func micros(_ cpuPercent: Double?) -> Double? {
            guard let cpuPercent, deliveries > 0 else { return nil }
            return cpuPercent / 100 * resources.windowSeconds * 1e6 / deliveries
        }
        serverCpuMicrosPerDelivery = micros(resources.server?.cpuPercent)
        serverAndRedisCpuMicrosPerDelivery = resources.redis.flatMap { r in micros((resources.server?.cpuPercent ?? 0) + r.cpuPercent) }
        messagesReceived = t.messages
        mbReceived = Double(t.bytes) / 1_048_576
        disconnects = t.disconnects
        disconnectCount = t.disconnects.values.reduce(0, +)
        self.resources = resources
        targets = []
        if plan.rate > 0 {
            targets.append(TargetCheck(
                name: "update latency p99", limit: "<= \(fmt(targetP99, 0)) ms", measured: "\(fmt(updates.latencyMs.p99, 1)) ms",
                met: updates.latencyMs.count > 0 && updates.latencyMs.p99 <= targetP99))
            targets.append(TargetCheck(
                name: "updates delivered", limit: "100 %", measured: "\(fmt(updates.deliveredRatio * 100, 2)) %",
                met: updates.delivered == updates.expected))
        }
        if plan.awarenessRate > 0 {
            targets.append(TargetCheck(
                name: "awareness latency p99", limit: "<= \(fmt(targetP99, 0)) ms",
                measured: "\(fmt(awareness.latencyMs.p99, 1)) ms",
                met: awareness.latencyMs.count > 0 && awareness.latencyMs.p99 <= targetP99))
        }
        targets.append(TargetCheck(name: "disconnects", limit: "0", measured: "\(disconnectCount)", met: disconnectCount == 0 && allSynced))
    }

    var table: String {
        var t = TextTable(
            title: "tandem-bench yjs (\(server.rawValue)) — \(clients) clients, \(rooms) rooms, updates \(fmt(updateRateHz, 0)) Hz, awareness \(fmt(awarenessRateHz, 0)) Hz, \(fmt(durationSeconds, 0)) s")
        t.section("setup")
        t.row("members per room", membersPerRoom.map(String.init).joined(separator: ", "))
        t.row("ramp (connect + step 1)", "\(fmt(rampSeconds, 1)) s, all synced: \(allSynced)")
        t.row("handshakes", "\(handshakes.attempts) attempts, \(handshakes.succeeded) ok, \(handshakes.rejected) refused")
        for (name, flow) in [("updates", updates), ("awareness", awareness)] where flow.sent > 0 {
            t.section("\(name) (measured window)")
            t.row("sent", "\(flow.sent) (\(fmt(Double(flow.sent) / durationSeconds, 0))/s)")
            t.row("expected deliveries", "\(flow.expected) (sent × (members − 1))")
            t.row("delivered", "\(flow.delivered) (\(fmt(flow.deliveredRatio * 100, 2)) %), \(fmt(flow.deliveriesPerSecond, 0))/s")
            if flow.superseded > 0 { t.row("superseded by a newer state", "\(flow.superseded)") }
            t.row("end-to-end latency", flow.latencyMs.row)
            t.timeline("  p99 per second", flow.latencyPerSecond, limit: targetP99)
            t.row("bench skipped send slots", "\(flow.skippedSendSlots)")
        }
        t.section("totals")
        t.row("deliveries", "\(fmt(deliveriesPerSecond, 0))/s")
        if let c = serverCpuMicrosPerDelivery { t.row("server CPU per delivery", "\(fmt(c, 2)) µs") }
        if let c = serverAndRedisCpuMicrosPerDelivery { t.row("server + Redis CPU per delivery", "\(fmt(c, 2)) µs") }
        t.row("messages received", "\(messagesReceived) (\(fmt(mbReceived, 0)) MB)")
        t.counts("disconnects by close code", disconnects)
        t.resources(resources)
        t.targets(targets)
        return t.text
    }
}
