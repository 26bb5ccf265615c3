import ArgumentParser
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TandemClient

// `tandem-bench storm`: connect and join all clients, drop every socket at once (no close frame), then
// reconnect each with ?resume=SESSION — exponential backoff with full jitter, honouring Retry-After —
// and re-join. Measures how long until all are back and whether presence converged (every client sees
// exactly the sessions of its doc), tracking membership from `joined` plus the presence deltas.

struct StormCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "Reconnect storm: drop all clients at once, reconnect with resume, check presence converges.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Clients (each its own user).") var clients = 2000
    @Option(help: "Docs; client i joins doc i mod docs.") var docs = 20
    @Option(name: .customLong("backoff-base-ms"), help: "Reconnect backoff base (full jitter).") var backoffBaseMs = 500.0
    @Option(name: .customLong("backoff-cap-ms"), help: "Reconnect backoff cap.") var backoffCapMs = 30_000.0
    @Option(help: "Seconds to wait after all are back before checking presence.") var settle = 3.0
    @Option(name: .customLong("settle-max"), help: "Keep checking presence this long after all are back.") var settleMax = 15.0
    @Option(name: .customLong("max-wait"), help: "Give up waiting for reconnects after this many seconds.") var maxWait = 90.0
    @Option(name: .customLong("target-seconds"), help: "All clients back within this many seconds.") var targetSeconds = 10.0

    func validate() throws {
        guard clients > 0, docs > 0, docs <= clients else { throw ValidationError("need 0 < docs <= clients") }
    }

    func run() async throws {
        let run = LoadRun(common: common)
        let (runID, connector) = (run.runID, run.connector)
        let docNames = (0..<docs).map { "bench-\(runID)-r\($0)" }
        let loops = LoopSet(threads: common.threads) { StormLoopStats() }
        let joinedCounter = SharedCounter()
        let phase = StormPhase()
        let config = BackoffConfig(baseMs: backoffBaseMs, capMs: backoffCapMs)
        log("storm: \(clients) clients, \(docs) docs, run \(runID)")

        // 1. Connect and join (paced ramp).
        let started = monotonicNanos()
        let members = (0..<clients).map { i in
            StormClient(
                index: i, docName: docNames[i % docs], user: "\(runID)-s\(i)", stats: loops.stats(for: i),
                loop: loops.loop(for: i), joined: joinedCounter, phase: phase)
        }
        await run.connect(members, identity: { ("\(runID)-s\($0)", "s\($0)") }, progress: { "joined \(joinedCounter.value)" })
        let allJoined = await waitUntil(timeoutSeconds: 60) { joinedCounter.value >= clients }
        let rampSeconds = Double(monotonicNanos() - started) / 1e9
        let rampHandshakes = connector.snapshot
        log("  ramp: \(joinedCounter.value)/\(clients) joined in \(fmt(rampSeconds, 1)) s; refused \(rampHandshakes.rejectedByStatus)")
        let before = await checkPresence(members, docs: docs, until: monotonicNanos() + 15_000_000_000)
        log("  presence before the drop: \(before.convergedClients)/\(clients) converged after \(fmt(before.seconds, 1)) s")

        // 2. Drop everything at once, then reconnect with backoff.
        let monitor = ResourceMonitor(options: common.monitorOptions)
        monitor.start()
        connector.resetCounts()
        let backCounter = SharedCounter()
        let connectTimes = NIOLockedValueBox<[UInt64]>([])
        let attemptTimes = NIOLockedValueBox<[UInt64]>([])
        phase.set(.dropped)
        let dropAt = monotonicNanos()
        for m in members { m.loop.execute { m.drop() } }
        log("  dropped \(clients) connections")
        let deadline = dropAt + UInt64(maxWait * 1e9)
        let reconnects = Task {
            await forEachConcurrently(clients, width: clients) { i in
                let m = members[i]
                await m.reconnect(
                    connector: connector, config: config, deadline: deadline, backCounter: backCounter,
                    onAttempt: { t in attemptTimes.withLockedValue { $0.append(t) } },
                    onConnected: { t in connectTimes.withLockedValue { $0.append(t) } })
            }
        }
        let progress = Task {
            while !Task.isCancelled {
                try await Task.sleep(nanoseconds: 1_000_000_000)
                log("  t+\(fmt(Double(monotonicNanos() - dropAt) / 1e9, 0)) s: back \(backCounter.value)/\(clients)")
            }
        }
        let allBack = await waitUntil(timeoutSeconds: maxWait) { backCounter.value >= clients }
        progress.cancel()
        let backTimes = try await loops.collectClients(members) { $0.backAt }
        let lastBack = backTimes.compactMap { $0 }.max() ?? monotonicNanos()
        let allBackSeconds = Double(lastBack - dropAt) / 1e9
        log("  \(backCounter.value)/\(clients) back; last after \(fmt(allBackSeconds, 2)) s")

        // 3. Presence: settle, compare, keep checking until it converges (or settle-max).
        await sleep(untilNanos: lastBack + UInt64(settle * 1e9))
        let atSettle = await checkPresence(members, docs: docs, until: 0)
        let eventually =
            atSettle.convergedClients == clients
            ? atSettle : await checkPresence(members, docs: docs, until: lastBack + UInt64(settleMax * 1e9))
        let resources = monitor.stop()
        await reconnects.value
        let handshakes = connector.snapshot

        let perLoop = try await loops.collect { $0.snapshot() }
        // Sessions reported gone to at least one member of their doc although they came back (flicker).
        let leftSets = try await loops.collectClients(members) { $0.leftAfterDrop }
        var flickered = Set<String>()
        for set in leftSets { flickered.formUnion(set) }
        phase.set(.closing)
        await run.closeAll(members)
        await loops.shutdown()

        var totals = StormLoopSnapshot()
        for s in perLoop { totals.merge(s) }
        var backHistogram = makeLatencyHistogram()
        for t in backTimes.compactMap({ $0 }) { backHistogram.recordNanos(t - dropAt) }
        let result = StormResult(
            clients: clients, docs: docs, runID: runID, ramp: rampSeconds, allJoined: allJoined,
            rampHandshakes: rampHandshakes, before: before, allBack: allBack, back: backCounter.value,
            allBackSeconds: allBackSeconds, backMs: LatencySummary(backHistogram), handshakes: handshakes,
            connectsPerSecond: perSecond(connectTimes.withLockedValue { $0 }, from: dropAt),
            attemptsPerSecond: perSecond(attemptTimes.withLockedValue { $0 }, from: dropAt), totals: totals,
            settle: settle, atSettle: atSettle, eventually: eventually, resources: resources, targetSeconds: targetSeconds,
            flickeredSessions: flickered.count)
        try emit(result, table: result.table, options: common)
    }

    /// Polls every 250 ms until every client's view equals its doc's sessions, or `until` passes
    /// (`until` 0: check once).
    private func checkPresence(_ members: [StormClient], docs: Int, until: UInt64) async -> PresenceCheck {
        let start = monotonicNanos()
        while true {
            let views: [(Int, String?, Set<String>)] = (try? await withThrowingTaskGroup(of: (Int, String?, Set<String>).self) { group in
                for m in members {
                    group.addTask { try await m.loop.submit { (m.index, m.session, m.members) }.get() }
                }
                var out: [(Int, String?, Set<String>)] = []
                for try await v in group { out.append(v) }
                return out
            }) ?? []
            var expected = Array(repeating: Set<String>(), count: docs)
            for (i, session, _) in views { if let session { expected[i % docs].insert(session) } }
            var check = PresenceCheck(seconds: Double(monotonicNanos() - start) / 1e9)
            for (i, _, seen) in views {
                let want = expected[i % docs]
                let missing = want.subtracting(seen).count
                let extra = seen.subtracting(want).count
                check.missing += missing
                check.extra += extra
                if missing == 0 && extra == 0 { check.convergedClients += 1 }
            }
            check.clients = views.count
            check.averageViewSize = views.isEmpty ? 0 : Double(views.reduce(0) { $0 + $1.2.count }) / Double(views.count)
            if check.convergedClients == members.count || monotonicNanos() >= until { return check }
            try? await Task.sleep(nanoseconds: 250_000_000)
        }
    }
}

/// Successes per whole second since `from` (index 0 = first second).
private func perSecond(_ times: [UInt64], from: UInt64) -> [Int] {
    guard let last = times.max() else { return [] }
    var buckets = Array(repeating: 0, count: Int((last - from) / 1_000_000_000) + 1)
    for t in times where t >= from { buckets[Int((t - from) / 1_000_000_000)] += 1 }
    return buckets
}

struct BackoffConfig: Sendable {
    var baseMs: Double
    var capMs: Double

    /// Full jitter: uniform in [0, min(cap, base · 2^attempt)).
    func delaySeconds(attempt: Int) -> Double {
        let ceiling = min(capMs, baseMs * Double(1 << min(attempt, 20)))
        return Double.random(in: 0..<max(ceiling, 1)) / 1000
    }
}

struct PresenceCheck: Codable, Sendable {
    var seconds: Double
    var clients = 0
    var convergedClients = 0
    /// Sessions a client should see but does not, summed over clients.
    var missing = 0
    /// Sessions a client sees that are not (or no longer) in its doc, summed over clients.
    var extra = 0
    /// Sessions a client sees, averaged over clients (should be the members per doc).
    var averageViewSize = 0.0

    init(seconds: Double) { self.seconds = seconds }
}

final class StormPhase: Sendable {
    enum Value: Sendable { case running, dropped, closing }
    private let box = NIOLockedValueBox(Value.running)
    func set(_ v: Value) { box.withLockedValue { $0 = v } }
    var value: Value { box.withLockedValue { $0 } }
}

final class StormLoopStats {
    var errors: [String: Int] = [:]
    /// Closes the bench did not cause, by close code.
    var unexpectedCloses: [String: Int] = [:]
    var resumed = 0
    var notResumed = 0
    /// `left` entries received after the drop for sessions that come back (flicker) or not.
    var leftAfterDrop = 0
    /// New sessions (never seen by that client before) received after the drop.
    var newSessionsAfterDrop = 0

    func snapshot() -> StormLoopSnapshot {
        StormLoopSnapshot(
            errors: errors, unexpectedCloses: unexpectedCloses, resumed: resumed, notResumed: notResumed,
            leftAfterDrop: leftAfterDrop, newSessionsAfterDrop: newSessionsAfterDrop)
    }
}

struct StormLoopSnapshot: Sendable, Codable {
    var errors: [String: Int] = [:]
    var unexpectedCloses: [String: Int] = [:]
    var resumed = 0
    var notResumed = 0
    var leftAfterDrop = 0
    var newSessionsAfterDrop = 0

    mutating func merge(_ o: StormLoopSnapshot) {
        mergeCounts(&errors, o.errors)
        mergeCounts(&unexpectedCloses, o.unexpectedCloses)
        resumed += o.resumed
        notResumed += o.notResumed
        leftAfterDrop += o.leftAfterDrop
        newSessionsAfterDrop += o.newSessionsAfterDrop
    }
}

/// One simulated client, confined to `loop` (the reconnect task reaches it through `loop.submit`).
final class StormClient: LoadMember, @unchecked Sendable {  // @unchecked: confined to `loop`; other tasks reach it through `loop.submit`
    let index: Int
    let docName: String
    let user: String
    let stats: StormLoopStats
    let loop: any EventLoop
    private let joinedCounter: SharedCounter
    private let phase: StormPhase
    private(set) var client: WebSocketClient?
    private(set) var session: String?
    /// Sessions this client believes are in its doc.
    private(set) var members = Set<String>()
    private var everSeen = Set<String>()
    /// Sessions this client was told had left, after the drop.
    private(set) var leftAfterDrop = Set<String>()
    /// Connection generation; callbacks of an older connection are ignored.
    private var generation = 0
    private var joinedOnce = false
    private(set) var backAt: UInt64?
    private var backCounter: SharedCounter?

    init(index: Int, docName: String, user: String, stats: StormLoopStats, loop: any EventLoop, joined: SharedCounter, phase: StormPhase) {
        self.index = index
        self.docName = docName
        self.user = user
        self.stats = stats
        self.loop = loop
        self.joinedCounter = joined
        self.phase = phase
    }

    /// Callbacks bound to the current generation (read on the loop).
    var callbacks: WebSocketClient.Callbacks {
        let gen = generation
        return .init(
            onText: { [self] buffer in if gen == self.generation { self.received(buffer) } },
            onClose: { [self] code, _ in if gen == self.generation { self.closed(code: code) } })
    }

    func attached(_ client: WebSocketClient) {
        self.client = client
        client.send(text: #"{"t":"join","doc":""# + docName + #"","state":{"c":"# + String(index) + "}}")
    }

    /// Drops the connection without a close frame.
    func drop() {
        generation += 1
        client?.abort()
        client = nil
    }

    func reconnect(
        connector: Connector, config: BackoffConfig, deadline: UInt64, backCounter: SharedCounter,
        onAttempt: @Sendable (UInt64) -> Void, onConnected: @Sendable (UInt64) -> Void
    ) async {
        var attempt = 0
        var retryAfter: Double?
        guard let (session, callbacks) = try? await loop.submit({ [self] in
            self.backCounter = backCounter
            return (self.session, self.callbacks)
        }).get() else { return }
        var query = [("user", user), ("name", "s\(index)")]
        if let session { query.append(("resume", session)) }
        let url = connector.url(query)
        while monotonicNanos() < deadline {
            var delay = config.delaySeconds(attempt: attempt)
            if let retryAfter { delay = max(delay, retryAfter) }
            await sleep(seconds: delay)
            onAttempt(monotonicNanos())
            switch await connector.attempt(url: url, on: loop, callbacks: callbacks) {
            case .connected(let client):
                onConnected(monotonicNanos())
                loop.execute { [self] in self.attached(client) }
                return
            case .rejected(_, let ra, _):
                retryAfter = ra
            case .failed:
                retryAfter = nil
            }
            attempt += 1
        }
    }

    private func received(_ buffer: ByteBuffer) {
        let now = monotonicNanos()
        let dropped = phase.value != .running
        buffer.withUnsafeReadableBytes { raw in
            var s = ByteScanner(raw)
            switch MessageType.of(s) {
            case .welcome:
                let wasResume = session != nil
                if let sid = s.string(after: Patterns.session) {
                    session = sid
                }
                if wasResume && dropped {
                    if s.find(Patterns.resumedTrue, from: 0) != nil { stats.resumed += 1 } else { stats.notResumed += 1 }
                }
            case .joined:
                var next = Set<String>()
                guard s.skip(past: Patterns.presenceList) else { return }
                while let sid = s.string(after: Patterns.sid) { next.insert(sid) }
                if dropped { for sid in next where !everSeen.contains(sid) { stats.newSessionsAfterDrop += 1 } }
                members = next
                everSeen.formUnion(next)
                if !joinedOnce {
                    joinedOnce = true
                    joinedCounter.add()
                } else if dropped && backAt == nil {
                    backAt = now
                    backCounter?.add()
                }
            case .presence:
                let leftAt = s.find(Patterns.leftList, from: 0) ?? raw.count
                while let at = s.find(Patterns.sid, from: s.index, end: leftAt) {
                    s.index = at + Patterns.sid.count
                    guard let sid = s.readSimpleString() else { break }
                    if dropped && !everSeen.contains(sid) { stats.newSessionsAfterDrop += 1 }
                    members.insert(sid)
                    everSeen.insert(sid)
                }
                s.index = leftAt + Patterns.leftList.count
                while s.index < raw.count && raw[s.index] == UInt8(ascii: "\"") {
                    s.index += 1
                    guard let sid = s.readSimpleString() else { break }
                    members.remove(sid)
                    if dropped {
                        stats.leftAfterDrop += 1
                        leftAfterDrop.insert(sid)
                    }
                    if s.index < raw.count && raw[s.index] == UInt8(ascii: ",") { s.index += 1 }
                }
            case .error:
                let code = s.string(after: Patterns.code) ?? "?"
                stats.errors[code, default: 0] += 1
            default:
                break
            }
        }
    }

    private func closed(code: Int?) {
        guard phase.value != .closing else { return }
        stats.unexpectedCloses[code.map(String.init) ?? "no close frame", default: 0] += 1
    }
}

extension LoopSet {
    /// Reads one value of every client on the client's loop.
    func collectClients<T: Sendable>(_ clients: [StormClient], _ body: @escaping @Sendable (StormClient) -> T) async throws -> [T] {
        var out: [T] = []
        out.reserveCapacity(clients.count)
        for c in clients { out.append(try await c.loop.submit { body(c) }.get()) }
        return out
    }
}

// MARK: - Result

struct StormResult: Codable, Sendable {
    var scenario = "storm"
    var clients: Int
    var docs: Int
    var runID: String
    var rampSeconds: Double
    var allJoined: Bool
    var rampHandshakes: HandshakeCounts
    var presenceBeforeDrop: PresenceCheck
    var allBack: Bool
    var back: Int
    /// Drop → the last client's `joined` after reconnecting.
    var allBackSeconds: Double
    /// Per client: drop → `joined` after reconnecting.
    var backMs: LatencySummary
    var handshakes: HandshakeCounts
    /// Successful handshakes per second after the drop (index 0 = first second).
    var reconnectsPerSecond: [Int]
    var peakReconnectsPerSecond: Int
    var attemptsPerSecond: [Int]
    var resumed: Int
    var notResumed: Int
    var leftAfterDrop: Int
    /// Distinct sessions some member saw in `left` after the drop (each came back: a leave + join flicker
    /// that resume is meant to avoid; happens when a reconnect takes longer than the presence TTL).
    var flickeredSessions: Int
    var newSessionsAfterDrop: Int
    var errors: [String: Int]
    var unexpectedCloses: [String: Int]
    /// Error messages, handshake refusals other than 503/429, connection failures and unexpected closes.
    var serverErrors: Int
    var settleSeconds: Double
    var presenceAtSettle: PresenceCheck
    var presenceEventually: PresenceCheck
    var presenceConverged: Bool
    var resources: ResourceReport
    var targets: [TargetCheck]

    init(
        clients: Int, docs: Int, runID: String, ramp: Double, allJoined: Bool, rampHandshakes: HandshakeCounts,
        before: PresenceCheck, allBack: Bool, back: Int, allBackSeconds: Double, backMs: LatencySummary,
        handshakes: HandshakeCounts, connectsPerSecond: [Int], attemptsPerSecond: [Int], totals: StormLoopSnapshot,
        settle: Double, atSettle: PresenceCheck, eventually: PresenceCheck, resources: ResourceReport, targetSeconds: Double,
        flickeredSessions: Int
    ) {
        self.flickeredSessions = flickeredSessions
        self.clients = clients
        self.docs = docs
        self.runID = runID
        rampSeconds = ramp
        self.allJoined = allJoined
        self.rampHandshakes = rampHandshakes
        presenceBeforeDrop = before
        self.allBack = allBack
        self.back = back
        self.allBackSeconds = allBackSeconds
        self.backMs = backMs
        self.handshakes = handshakes
        reconnectsPerSecond = connectsPerSecond
        peakReconnectsPerSecond = connectsPerSecond.max() ?? 0
        self.attemptsPerSecond = attemptsPerSecond
        resumed = totals.resumed
        notResumed = totals.notResumed
        leftAfterDrop = totals.leftAfterDrop
        newSessionsAfterDrop = totals.newSessionsAfterDrop
        errors = totals.errors
        unexpectedCloses = totals.unexpectedCloses
        let badRefusals = handshakes.rejectedByStatus.filter { $0.key != "503" && $0.key != "429" }.values.reduce(0, +)
        serverErrors =
            totals.errors.values.reduce(0, +) + badRefusals + handshakes.failures.values.reduce(0, +)
            + totals.unexpectedCloses.values.reduce(0, +)
        settleSeconds = settle
        presenceAtSettle = atSettle
        presenceEventually = eventually
        presenceConverged = atSettle.convergedClients == clients
        self.resources = resources
        targets = [
            TargetCheck(
                name: "all back", limit: "<= \(fmt(targetSeconds, 0)) s",
                measured: allBack ? "\(fmt(allBackSeconds, 2)) s" : "\(back)/\(clients) back",
                met: allBack && allBackSeconds <= targetSeconds),
            TargetCheck(name: "server errors", limit: "0", measured: "\(serverErrors)", met: serverErrors == 0),
            TargetCheck(
                name: "presence converged", limit: "all \(clients) clients after \(fmt(settle, 0)) s",
                measured: "\(atSettle.convergedClients) clients", met: presenceConverged),
        ]
    }

    var table: String {
        var t = TextTable(title: "tandem-bench storm — \(clients) clients, \(docs) docs")
        t.section("before the drop")
        t.row("ramp (connect + join)", "\(fmt(rampSeconds, 1)) s, all joined: \(allJoined)")
        t.row("handshakes", "\(rampHandshakes.attempts) attempts, \(rampHandshakes.rejected) refused")
        t.row("presence converged", "\(presenceBeforeDrop.convergedClients)/\(clients) after \(fmt(presenceBeforeDrop.seconds, 1)) s (each sees \(fmt(presenceBeforeDrop.averageViewSize, 1)) sessions)")
        t.section("after the drop")
        t.row("back (re-joined)", "\(back)/\(clients); last after \(fmt(allBackSeconds, 2)) s")
        t.row("time to back per client", backMs.row)
        t.row("handshakes", "\(handshakes.attempts) attempts, \(handshakes.succeeded) ok, \(handshakes.rejected) refused")
        t.counts("  refused by status", handshakes.rejectedByStatus)
        t.counts("  refused by error", handshakes.rejectedByError)
        if !handshakes.failures.isEmpty { t.counts("  failures", handshakes.failures) }
        t.row("reconnects per second", reconnectsPerSecond.map(String.init).joined(separator: " "))
        t.row("peak reconnect rate", "\(peakReconnectsPerSecond)/s")
        t.row("attempts per second", attemptsPerSecond.map(String.init).joined(separator: " "))
        t.row("sessions resumed", "\(resumed) resumed, \(notResumed) not")
        t.row("left entries seen after drop", "\(leftAfterDrop), for \(flickeredSessions) distinct sessions (new sessions seen: \(newSessionsAfterDrop))")
        t.counts("errors by code", errors)
        t.counts("unexpected closes", unexpectedCloses)
        t.row("server errors", "\(serverErrors)")
        t.section("presence")
        t.row("after \(fmt(settleSeconds, 0)) s settle", "\(presenceAtSettle.convergedClients)/\(clients) converged (missing \(presenceAtSettle.missing), extra \(presenceAtSettle.extra); each sees \(fmt(presenceAtSettle.averageViewSize, 1)))")
        if presenceAtSettle.convergedClients != clients {
            t.row("eventually", "\(presenceEventually.convergedClients)/\(clients) (missing \(presenceEventually.missing), extra \(presenceEventually.extra))")
        }
        t.resources(resources)
        t.targets(targets)
        return t.text
    }
}
