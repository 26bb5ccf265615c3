import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import TandemClient
import TandemCore
import TandemTestSupport

#if canImport(Glibc)
import Glibc
#endif

// `tandem-bench fuzz`: a network fuzzer. Starts one redis-server and two `tandem serve` nodes on it
// (development mode, loopback), then N clients, each on its own thread and socket, send random and
// mutated traffic for --duration seconds (Support/FuzzTraffic.swift): valid messages, messages with
// fields at numeric extremes, huge or deeply nested or of the wrong type, unknown fields, damaged bytes;
// frame-level protocol violations; floods; clients that stop reading; malformed and fuzzed handshakes;
// dropped sockets and resumes.
//
// Every --check-interval seconds it asserts: both nodes are running and answer /healthz; their RSS
// stays under --max-rss-mb; Redis answers PING; two fresh clients, one on each node, join a doc and see
// each other's presence. A node that dies is restarted (so one run can find several crashes); before
// that, the actions sent to it last are replayed one by one against a fresh node to find a single-message
// reproducer. Everything goes to --out (default test-artifacts/fuzz/network). Exits non-zero if any
// assertion failed.

struct FuzzCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Network fuzzer: hostile traffic from N clients against two real nodes on one Redis; asserts they stay healthy.")

    @Option(help: "The tandem executable to run.") var tandem = ".build/debug/tandem"
    @Option(help: "Seconds of fuzzing.") var duration = 60.0
    @Option(help: "Fuzzing clients (threads), spread over both nodes.") var clients = 10
    @Option(help: "Seed of the traffic generators (random if not given; printed).") var seed: UInt64?
    @Option(name: .customLong("check-interval"), help: "Seconds between health assertions.") var checkInterval = 5.0
    @Option(name: .customLong("max-rss-mb"), help: "Largest resident memory a node may reach.") var maxRSSMB = 768.0
    @Option(name: .customLong("probe-timeout"), help: "Seconds two fresh clients get to see each other.") var probeTimeout = 20.0
    @Option(name: .customLong("server-arg"), parsing: .unconditionalSingleValue, help: "Extra `tandem serve` argument (repeatable).")
    var serverArgs: [String] = []
    @Option(help: "Where logs, failures and reproducers go.") var out = "test-artifacts/fuzz/network"
    @Flag(name: .customLong("no-triage"), help: "Do not replay a dead node's last actions to find a reproducer.") var noTriage = false
    @Option(help: "Replay one saved action (failure-N-*.bin) against a fresh node instead of fuzzing; exits 1 if the node dies.")
    var replay: String?
    @Option(name: .customLong("replay-docs"), help: "Docs to join before the replayed action (comma-separated).") var replayDocs = ""

    func validate() throws {
        guard clients > 0, duration > 0, checkInterval > 0 else { throw ValidationError("clients, duration and check-interval must be > 0") }
        guard FileManager.default.isExecutableFile(atPath: tandem) else {
            throw ValidationError("no tandem executable at \(tandem) (swift build --product tandem)")
        }
    }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: 1...UInt64(Int64.max))
        let outURL = URL(fileURLWithPath: out)
        try? FileManager.default.removeItem(at: outURL)
        try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
        log("fuzz: \(clients) clients, \(fmt(duration, 0)) s, seed \(seed), out \(out)")

        let redis = try RedisServerProcess()
        let nodes = [
            FuzzNode(name: "a", tandem: tandem, redis: redis.url, extra: serverArgs, out: outURL),
            FuzzNode(name: "b", tandem: tandem, redis: redis.url, extra: serverArgs, out: outURL),
        ]
        for node in nodes { try await node.start() }
        if let replay {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: replay)))
            let docs = replayDocs.split(separator: ",").map(String.init)
            let action = ActionRecord(
                client: 0, node: "a", generation: 1, at: Date(), kind: "replay", bytes: bytes, text: bytes, docs: docs,
                afterUpgrade: !bytes.starts(with: Array("GET ".utf8)))
            let node = nodes[0]
            let died = await offLoop { HealthChecker.replay(action, port: node.port, node: node) }
            _ = died ? true : await HealthChecker.dies(node)
            let survived = node.isRunning
            print(survived ? "node survived the replay of \(replay)" : "node died:\n" + crashExcerpt(node.logTail(lines: 400)))
            for node in nodes { _ = await node.stop() }
            redis.stop()
            if !survived { throw ExitCode(1) }
            return
        }
        log("  redis :\(redis.port), node a ws :\(nodes[0].port) ops :\(nodes[0].opsPort), node b ws :\(nodes[1].port) ops :\(nodes[1].opsPort)")

        let report = FuzzReport(seed: seed, out: outURL)
        let recorder = ActionRecorder()
        let control = FuzzControl()
        let deadline = Date().addingTimeInterval(duration)
        let threads = (0..<clients).map { i in
            let client = FuzzClient(index: i, seed: seed &+ UInt64(i) &* 0x1000_0001, node: nodes[i % nodes.count], recorder: recorder, control: control)
            let thread = Thread { client.run(until: deadline) }
            thread.stackSize = 4 << 20
            return (client, thread)
        }
        for (_, thread) in threads { thread.start() }

        let checker = HealthChecker(
            nodes: nodes, redisPort: redis.port, maxRSSBytes: UInt64(maxRSSMB * 1_048_576), probeTimeout: probeTimeout,
            report: report, recorder: recorder, control: control, triage: !noTriage)
        var round = 0
        var nextCheck = Date().addingTimeInterval(checkInterval)
        while Date() < deadline {
            // A dead node is noticed within 0.1 s, so the actions sent just before are the suspects.
            await sleep(seconds: 0.1)
            guard Date() >= nextCheck || nodes.contains(where: { !$0.isRunning }) else { continue }
            round += 1
            await checker.check(round: round)
            nextCheck = Date().addingTimeInterval(checkInterval)
            log("  t+\(fmt(duration - max(0, deadline.timeIntervalSinceNow), 0)) s: \(recorder.total) actions, \(report.failureCount) failed assertions, RSS \(checker.rssSummary)")
        }
        control.stop()
        while threads.contains(where: { !$0.0.finished.isSet }) { await sleep(seconds: 0.1) }
        // One last round on a quiet cluster, then a clean shutdown must work too.
        await checker.check(round: round + 1)
        for node in nodes {
            if let status = await node.stop(), status != .exited(0) {
                report.fail("shutdown", node: node.name, "SIGTERM ended node \(node.name) with \(status)", log: node.logTail())
            }
        }
        redis.stop()

        var actions: [String: Int] = [:]
        var replies: [String: Int] = [:]
        for (client, _) in threads {
            mergeCounts(&actions, client.actions)
            mergeCounts(&replies, client.replies)
        }
        let summary = report.summary(
            duration: duration, clients: clients, actions: actions, replies: replies, checks: checker.checksRun,
            peakRSS: checker.peakRSS.mapValues { Double($0) / 1_048_576 })
        print(summary)
        try? summary.write(to: outURL.appendingPathComponent("summary.txt"), atomically: true, encoding: .utf8)
        if report.failureCount > 0 { throw ExitCode(1) }
    }
}

// MARK: - Nodes

/// One `tandem serve` child process; restartable (a new process gets new ports and a new log).
final class FuzzNode: @unchecked Sendable {
    // @unchecked: `process`, `port`, `opsPort` and `generation` change only under `lock`.
    let name: String
    private let tandem: String
    private let arguments: [String]
    private let out: URL
    private let lock = NSLock()
    private var process: ChildProcess?
    private var ports = (ws: 0, ops: 0)
    private var started = 0

    init(name: String, tandem: String, redis: String, extra: [String], out: URL) {
        self.name = name
        // Absolute: the node runs in its own directory under --out, where a relative path means nothing.
        self.tandem = tandem.hasPrefix("/") ? tandem : FileManager.default.currentDirectoryPath + "/" + tandem
        self.out = out
        arguments = ["serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0", "--node-id", "fuzz-\(name)", "--redis", redis] + extra
    }

    var port: Int { lock.withLock { ports.ws } }
    var opsPort: Int { lock.withLock { ports.ops } }
    /// Increases with every start, so actions can be matched to the process they reached.
    var generation: Int { lock.withLock { started } }
    var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.pid : nil } }
    var isRunning: Bool { lock.withLock { process?.isRunning ?? false } }
    var exitStatus: ChildProcess.ExitStatus? { lock.withLock { process?.exitStatus } }

    func start() async throws {
        let generation = lock.withLock { started + 1 }
        let directory = out.appendingPathComponent("node-\(name)-\(generation)")
        let child = try ChildProcess(
            executable: tandem, arguments: arguments, directory: directory)
        let line = try await child.waitForOutput(matching: #"ops\.port=\d+ .*port=\d+.*listening"#, timeout: .seconds(60))
        func value(_ key: String) -> Int {
            let pattern = try! Regex("(^| )\(key)=(\\d+)")
            return line.firstMatch(of: pattern).flatMap { Int($0.output[2].substring ?? "") } ?? 0
        }
        lock.withLock {
            process = child
            ports = (value("port"), value("ops\\.port"))
            started = generation
        }
        let ready = await waitUntil(timeoutSeconds: 30) { TCPProbe.httpStatus(port: self.opsPort, path: "/readyz") == 200 }
        if !ready { throw ValidationError("node \(name) not ready: \(logTail())") }
    }

    /// SIGTERM, then the exit status (nil if it was not running).
    func stop() async -> ChildProcess.ExitStatus? {
        guard let process = lock.withLock({ process }) else { return nil }
        if let status = process.exitStatus { return status }
        process.signal(SIGTERM)
        return try? await process.waitForTermination(timeout: .seconds(20))
    }

    func logTail(lines: Int = 60) -> String {
        guard let text = lock.withLock({ process?.logText }) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

/// Blocking one-shot probes with timeouts (run off the fuzzing threads).
enum TCPProbe {
    /// `GET path` on 127.0.0.1:port → HTTP status (0 if none within 5 s).
    static func httpStatus(port: Int, path: String) -> Int {
        guard let socket = RawWebSocket(port: port, timeoutSeconds: 5) else { return 0 }
        return socket.handshake(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8))
    }

    /// `PING` → true if Redis answers `+PONG` within 5 s.
    static func redisPing(port: Int) -> Bool {
        guard let socket = RawWebSocket(port: port, timeoutSeconds: 5), socket.send(Array("PING\r\n".utf8)) else { return false }
        var reply = [UInt8](repeating: 0, count: 64)
        let n = reply.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress!, $0.count, 0) }
        return n > 0 && String(decoding: reply[0..<n], as: UTF8.self).hasPrefix("+PONG")
    }
}

// MARK: - Clients

/// Pauses the fuzzing clients (while a crash is triaged) and stops them at the end.
final class FuzzControl: Sendable {
    private let state = NIOLockedValueBox((paused: false, stopped: false))
    func pause(_ paused: Bool) { state.withLockedValue { $0.paused = paused } }
    func stop() { state.withLockedValue { $0.stopped = true } }
    var isPaused: Bool { state.withLockedValue { $0.paused } }
    var isStopped: Bool { state.withLockedValue { $0.stopped } }
}

/// What a client sent last, per client, so a crash can be traced back to the traffic before it.
struct ActionRecord: Sendable {
    var client: Int
    var node: String
    var generation: Int
    var at: Date
    var kind: String
    /// The bytes written on an upgraded, joined connection (kept whole up to 2 MiB).
    var bytes: [UInt8]
    /// What they say, readable: the (unmasked) message text, or the bytes themselves.
    var text: [UInt8]
    var docs: [String]
    /// False for actions on a fresh socket (handshakes): replaying needs no upgrade first.
    var afterUpgrade: Bool
}

final class ActionRecorder: Sendable {
    private let state = NIOLockedValueBox((recent: [Int: [ActionRecord]](), total: 0))
    static let keep = 64

    func record(_ action: ActionRecord) {
        state.withLockedValue { s in
            s.total += 1
            var list = s.recent[action.client, default: []]
            list.append(action)
            if list.count > Self.keep { list.removeFirst(list.count - Self.keep) }
            s.recent[action.client] = list
        }
    }

    var total: Int { state.withLockedValue { $0.total } }

    /// The latest actions that reached `node` in its process `generation`, newest first.
    func recent(node: String, generation: Int) -> [ActionRecord] {
        state.withLockedValue { s in
            s.recent.values.flatMap { $0 }.filter { $0.node == node && $0.generation == generation }.sorted { $0.at > $1.at }
        }
    }
}

/// One fuzzing client: a thread with its own socket and random generator.
final class FuzzClient: @unchecked Sendable {
    // @unchecked: everything but `finished` is touched only by the client's own thread (and read by the
    // main task after `finished` is set).
    let index: Int
    private var random: FuzzRandom
    private let node: FuzzNode
    private let recorder: ActionRecorder
    private let control: FuzzControl
    private var connection: RawWebSocket?
    private var docs: [String] = []
    private var clock: UInt64 = 0
    private(set) var actions: [String: Int] = [:]
    private(set) var replies: [String: Int] = [:]
    let finished = SharedFlag()
    /// Every fifth client never reads after its handshake (nor answers pings): the server must bound
    /// what it queues for it (1013 past --max-outbound-bytes, or the ping timeout) and carry on.
    private var neverReads: Bool { index % 5 == 4 }

    init(index: Int, seed: UInt64, node: FuzzNode, recorder: ActionRecorder, control: FuzzControl) {
        self.index = index
        self.random = FuzzRandom(seed: seed)
        self.node = node
        self.recorder = recorder
        self.control = control
    }

    var user: String { "fz-\(index)" }

    func run(until deadline: Date) {
        defer {
            retire()
            finished.set()
        }
        while Date() < deadline && !control.isStopped {
            if control.isPaused {
                retire()
                usleep(100_000)
                continue
            }
            guard let connection = connectIfNeeded() else {
                usleep(200_000)
                continue
            }
            act(on: connection)
            if !neverReads { connection.drain() }
            clock = max(clock, UInt64(random.int(0...40)))
            usleep(UInt32(random.int(0...1000)))
        }
    }

    private func retire() {
        if let connection {
            mergeCounts(&replies, connection.seen)
            if random.chance(0.5) {
                connection.send(wsFrame(opcode: WSOpcode.close, payload: closePayload(code: 1000)))
            }
            connection.abort()
        }
        connection = nil
    }

    /// A valid upgrade (with a fuzzed query now and then) and valid joins of 1–3 shared docs.
    private func connectIfNeeded() -> RawWebSocket? {
        if let connection, !connection.closed { return connection }
        retire()
        let port = node.port
        guard let socket = RawWebSocket(port: port) else { return nil }
        let query = HandshakeFactory.query(&random, user: user, resume: nil)
        let request = HandshakeFactory.valid(port: port, query: query, &random)
        count(neverReads ? "connect (never reading)" : "connect")
        guard socket.handshake(request) == 101, socket.awaitWelcome() else {
            mergeCounts(&replies, socket.seen)
            return nil
        }
        docs = Array(Set((0..<random.int(1...3)).map { _ in random.pick(MessageFactory.docs) }))
        for doc in docs {
            let join = Array("{\"t\":\"join\",\"doc\":\"\(doc)\",\"state\":{\"c\":[\(index),0]}}".utf8)
            socket.send(wsFrame(opcode: WSOpcode.text, payload: join))
        }
        connection = socket
        return socket
    }

    private func act(on connection: RawWebSocket) {
        let roll = random.int(0...99)
        switch roll {
        case 0..<50:
            let (kind, payload) = MessageFactory.message(&random, doc: random.chance(0.9) ? random.pick(docs) : Nasty.string(&random), clock: clock)
            send(kind: "message: \(kind)", wsFrame(opcode: WSOpcode.text, payload: payload), text: payload, on: connection)
        case 50..<62:
            let (kind, bytes) = FrameFactory.violation(&random)
            send(kind: "frame: \(kind)", bytes, on: connection)
        case 62..<70:
            flood(on: connection)
        case 70..<74:
            stall(on: connection)
        case 74..<84:
            fuzzHandshake()
        case 84..<90:
            dropAndResume(connection)
        case 90..<95:
            // Back into its docs (a fuzzed `leave` may have taken it out).
            let joins = docs.map { Array("{\"t\":\"join\",\"doc\":\"\($0)\"}".utf8) }
            send(kind: "rejoin", joins.flatMap { wsFrame(opcode: WSOpcode.text, payload: $0) }, text: joins.first, on: connection)
        default:
            let joins = (0..<random.int(1...10)).map { _ in Array("{\"t\":\"join\",\"doc\":\"fz-j\(random.int(0...200))\"}".utf8) }
            send(kind: "join flood", joins.flatMap { wsFrame(opcode: WSOpcode.text, payload: $0) }, text: joins.first, on: connection)
        }
    }

    private func send(kind: String, _ bytes: [UInt8], text: [UInt8]? = nil, on connection: RawWebSocket, afterUpgrade: Bool = true) {
        let kept = bytes.count <= 2 << 20 ? bytes : Array(bytes.prefix(2 << 20))
        recorder.record(
            ActionRecord(
                client: index, node: node.name, generation: node.generation, at: Date(), kind: kind, bytes: kept,
                text: Array((text ?? bytes).prefix(400)), docs: docs, afterUpgrade: afterUpgrade))
        count(kind.split(separator: ":").first.map(String.init) ?? kind)
        connection.send(bytes)
    }

    /// Many small messages in one write: pings, presence or sync requests.
    private func flood(on connection: RawWebSocket) {
        let n = random.int(200...3000)
        let doc = random.pick(docs)
        let text: [UInt8]
        switch random.int(0...2) {
        case 0: text = Array("{\"t\":\"ping\"}".utf8)
        case 1: text = Array("{\"t\":\"presence\",\"doc\":\"\(doc)\",\"state\":{\"f\":1}}".utf8)
        default: text = Array("{\"t\":\"sync\",\"doc\":\"\(doc)\",\"from\":0}".utf8)
        }
        let message = wsFrame(opcode: WSOpcode.text, payload: text)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(message.count * n)
        for _ in 0..<n { bytes += message }
        send(kind: "flood: \(n) × \(message.count) bytes", bytes, text: text, on: connection)
    }

    /// Stops reading for 1–5 s while asking for catch-ups, so the server's queue for us fills up.
    private func stall(on connection: RawWebSocket) {
        let until = Date().addingTimeInterval(Double(random.int(1000...5000)) / 1000)
        let doc = random.pick(docs)
        let sync = Array("{\"t\":\"sync\",\"doc\":\"\(doc)\",\"from\":0,\"limit\":5000}".utf8)
        let frame = wsFrame(opcode: WSOpcode.text, payload: sync)
        // Recorded once (replaying one catch-up request is what matters), sent every 50 ms.
        send(kind: "stall: not reading while asking for catch-ups", frame, text: sync, on: connection)
        while Date() < until && !connection.closed && !control.isStopped {
            usleep(50_000)
            connection.send(frame)
        }
    }

    /// A second socket with a malformed or fuzzed upgrade request, or one that says nothing for a while.
    private func fuzzHandshake() {
        let port = node.port
        guard let socket = RawWebSocket(port: port, timeoutSeconds: 2) else { return }
        if random.chance(0.1) {
            count("idle pre-upgrade socket")
            usleep(UInt32(random.int(200_000...2_000_000)))
            socket.abort()
            return
        }
        let (kind, request): (String, [UInt8])
        if random.chance(0.5) {
            (kind, request) = HandshakeFactory.malformed(port: port, &random)
        } else {
            kind = "fuzzed query"
            request = HandshakeFactory.valid(port: port, query: HandshakeFactory.query(&random, user: "fz-h\(index)", resume: connection?.session), &random)
        }
        recorder.record(
            ActionRecord(
                client: index, node: node.name, generation: node.generation, at: Date(), kind: "handshake: \(kind)", bytes: request,
                text: Array(request.prefix(400)), docs: [], afterUpgrade: false))
        count("handshake")
        let status = socket.handshake(request)
        replies["http:\(status)", default: 0] += 1
        if status == 101 { _ = socket.awaitWelcome(seconds: 1) }
        mergeCounts(&replies, socket.seen.filter { !$0.key.hasPrefix("http:") })
        socket.abort()
    }

    /// Drops the socket without a close frame and reconnects with `?resume=` (own session, or junk).
    private func dropAndResume(_ connection: RawWebSocket) {
        let session = random.chance(0.8) ? connection.session : "AAAAAAAAAAAAAAAAAAAAAA"
        mergeCounts(&replies, connection.seen)
        connection.abort()
        self.connection = nil
        count("drop and resume")
        let port = node.port
        guard let socket = RawWebSocket(port: port) else { return }
        let request = HandshakeFactory.valid(port: port, query: "user=\(user)&name=\(user)&resume=\(session ?? "")", &random)
        if socket.handshake(request) == 101, socket.awaitWelcome() {
            for doc in docs { socket.send(wsFrame(opcode: WSOpcode.text, payload: Array("{\"t\":\"join\",\"doc\":\"\(doc)\"}".utf8))) }
            self.connection = socket
        } else {
            mergeCounts(&replies, socket.seen)
        }
    }

    private func count(_ kind: String) { actions[kind, default: 0] += 1 }
}

// MARK: - Assertions

/// The periodic assertions, with crash triage.
final class HealthChecker: @unchecked Sendable {
    // @unchecked: used by the main task only.
    let nodes: [FuzzNode]
    let redisPort: Int
    let maxRSSBytes: UInt64
    let probeTimeout: Double
    let report: FuzzReport
    let recorder: ActionRecorder
    let control: FuzzControl
    let triage: Bool
    private(set) var checksRun = 0
    private(set) var peakRSS: [String: UInt64] = [:]
    private var lastRSS: [String: UInt64] = [:]
    /// Crash sites (first Tandem frame of the crashed thread) already triaged, with their failure number.
    private var triagedSites: [String: Int] = [:]

    init(
        nodes: [FuzzNode], redisPort: Int, maxRSSBytes: UInt64, probeTimeout: Double, report: FuzzReport, recorder: ActionRecorder,
        control: FuzzControl, triage: Bool
    ) {
        self.nodes = nodes
        self.redisPort = redisPort
        self.maxRSSBytes = maxRSSBytes
        self.probeTimeout = probeTimeout
        self.report = report
        self.recorder = recorder
        self.control = control
        self.triage = triage
    }

    var rssSummary: String {
        nodes.map { "\($0.name) \(fmt(Double(lastRSS[$0.name] ?? 0) / 1_048_576, 0)) MB" }.joined(separator: ", ")
    }

    func check(round: Int) async {
        for node in nodes {
            checksRun += 1
            guard node.isRunning else {
                await handleDeath(of: node)
                continue
            }
            let status = await offLoop { TCPProbe.httpStatus(port: node.opsPort, path: "/healthz") }
            if status != 200 {
                // It may be dying (the Swift runtime's crash backtrace takes seconds, frozen meanwhile);
                // then the crash is the report.
                if await Self.dies(node) {
                    await handleDeath(of: node)
                    continue
                }
                report.fail("healthz", node: node.name, "/healthz answered \(status) (0: no answer within 5 s)", log: node.logTail(lines: 20))
            }
            if let pid = node.pid, let sample = ProcSample.read(pid: pid) {
                lastRSS[node.name] = sample.rssBytes
                peakRSS[node.name] = max(peakRSS[node.name] ?? 0, sample.rssBytes)
                if sample.rssBytes > maxRSSBytes {
                    report.fail(
                        "rss", node: node.name,
                        "resident memory \(sample.rssBytes / 1_048_576) MB over --max-rss-mb \(maxRSSBytes / 1_048_576)", log: "")
                }
            }
        }
        checksRun += 1
        if !(await offLoop { TCPProbe.redisPing(port: self.redisPort) }) {
            report.fail("redis", node: "redis", "Redis did not answer PING within 5 s", log: "")
        }
        guard nodes.allSatisfy(\.isRunning) else { return }
        checksRun += 1
        if let problem = await presenceProbe(round: round) {
            for node in nodes where await Self.dies(node) { return }  // a crash: reported next round
            report.fail("presence", node: "a+b", problem, log: nodes.map { "[\($0.name)]\n" + $0.logTail(lines: 15) }.joined(separator: "\n"))
        }
    }

    /// Two fresh clients, one per node, join the same new doc; each must see the other's session.
    private func presenceProbe(round: Int) async -> String? {
        let doc = "fz-probe-\(round)-\(UInt32.random(in: 0...UInt32.max))"
        let a = ProbeClient(name: "a"), b = ProbeClient(name: "b")
        defer {
            a.close()
            b.close()
        }
        do {
            try await a.connect(port: nodes[0].port, user: "probe-a-\(round)", doc: doc)
            try await b.connect(port: nodes[1].port, user: "probe-b-\(round)", doc: doc)
        } catch {
            return "a fresh client could not connect and join: \(error)"
        }
        let seen = await waitUntil(timeoutSeconds: probeTimeout) {
            guard let sa = a.session, let sb = b.session else { return false }
            return a.sees(sb) && b.sees(sa)
        }
        return seen ? nil : "fresh clients on node a and b did not see each other's presence within \(fmt(probeTimeout, 0)) s (a sees \(a.members), b sees \(b.members))"
    }

    /// "File:line" of the first Tandem frame of a crash excerpt.
    private static func crashSite(_ excerpt: String) -> String {
        excerpt.split(separator: "\n").first(where: { $0.contains("/Sources/Tandem") })
            .flatMap { $0.split(separator: " at ").last.map(String.init) } ?? "unknown"
    }

    /// Whether `node` exits within 10 s.
    static func dies(_ node: FuzzNode) async -> Bool {
        for _ in 0..<20 {
            if !node.isRunning { return true }
            await sleep(seconds: 0.5)
        }
        return !node.isRunning
    }

    /// Records the crash, finds a single-action reproducer if there is one, and restarts the node.
    private func handleDeath(of node: FuzzNode) async {
        let generation = node.generation
        let status = node.exitStatus.map { "\($0)" } ?? "unknown"
        let tail = crashExcerpt(node.logTail(lines: 400))
        // The node died at most 0.1 s ago (plus its backtrace time): suspects are what it got in the last
        // seconds (a flood can take it a while to work through), newest first.
        let recent = recorder.recent(node: node.name, generation: generation)
        let window = recent.filter { $0.at > Date().addingTimeInterval(-30) }
        let candidates = window.isEmpty ? Array(recent.prefix(32)) : window
        let failure = report.fail("crash", node: node.name, "node \(node.name) died (\(status))", log: tail, recent: candidates)
        control.pause(true)
        defer { control.pause(false) }
        do {
            try await node.start()
        } catch {
            report.fail("restart", node: node.name, "node \(node.name) did not restart: \(error)", log: "")
            return
        }
        guard triage else { return }
        let site = Self.crashSite(tail)
        if let earlier = triagedSites[site] {
            report.note(failure, "the same crash site as failure \(earlier) (\(site)): not triaged again")
            return
        }
        triagedSites[site] = failure
        log("  triage: replaying the last \(min(128, candidates.count)) actions one by one against a fresh node \(node.name)")
        // The replays themselves can crash the node elsewhere (joins and drops unload and reload docs):
        // only a death at the same site, right after the candidate, counts.
        func killsAtSite(_ candidate: ActionRecord) async -> Bool {
            if !node.isRunning { try? await node.start() }
            guard await offLoop({ Self.replay(candidate, port: node.port, node: node) }) else { return false }
            let same = await Self.dies(node) && Self.crashSite(crashExcerpt(node.logTail(lines: 400))) == site
            try? await node.start()
            return same
        }
        for candidate in candidates.prefix(128) where await killsAtSite(candidate) {
            report.reproducer(failure, candidate)
            log("  triage: one action kills the node: \(candidate.kind)")
            return
        }
        report.note(failure, "no single recent action kills a fresh node: the crash needs a sequence (see the recent actions)")
    }

    /// Replays one action (after a valid upgrade and the joins its client had made, if it was sent on an
    /// upgraded connection); true if the node died within a second.
    static func replay(_ action: ActionRecord, port: Int, node: FuzzNode) -> Bool {
        let debug = ProcessInfo.processInfo.environment["FUZZ_TRIAGE_DEBUG"] != nil
        func say(_ text: String) { if debug { FileHandle.standardError.write(Data("triage: \(text)\n".utf8)) } }
        guard let socket = RawWebSocket(port: port) else {
            say("cannot connect to \(port)")
            return !node.isRunning
        }
        if action.afterUpgrade {
            var random = FuzzRandom(seed: 1)
            let status = socket.handshake(HandshakeFactory.valid(port: port, query: "user=triage&name=triage", &random))
            guard status == 101, socket.awaitWelcome() else {
                say("upgrade: HTTP \(status), session \(socket.session ?? "none"), seen \(socket.seen)")
                return !node.isRunning
            }
            for doc in action.docs {
                socket.send(wsFrame(opcode: WSOpcode.text, payload: Array("{\"t\":\"join\",\"doc\":\"\(doc)\"}".utf8)))
            }
            // Joined and caught up (the doc's sync state loaded) before the action, so whatever it does
            // runs now, against a loaded doc.
            func ready() -> Bool {
                (socket.seen["joined"] ?? 0) >= action.docs.count
                    && (socket.seen["snapshot"] ?? 0) + (socket.seen["log"] ?? 0) >= action.docs.count
            }
            let joinedBy = Date().addingTimeInterval(10)
            while !ready() && !socket.closed && Date() < joinedBy {
                usleep(20_000)
                socket.drain()
            }
        }
        say("joined \(socket.seen["joined"] ?? 0) of \(action.docs.count), \(socket.seen); sending \(action.bytes.count) bytes: \(socket.send(action.bytes))")
        // The fuzzing clients are paused, so the node handles the action at once.
        for _ in 0..<10 {
            usleep(100_000)
            socket.drain()
            if !node.isRunning { return true }
        }
        socket.abort()
        return !node.isRunning
    }
}

/// Runs blocking socket work on a plain thread, off the concurrency pool.
func offLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

/// A well-behaved client (TandemClient) that tracks the sessions it sees in one doc.
final class ProbeClient: Sendable {
    let name: String
    private let state = NIOLockedValueBox((session: String?.none, members: Set<String>(), client: WebSocketClient?.none))

    init(name: String) { self.name = name }

    var session: String? { state.withLockedValue { $0.session } }
    var members: Set<String> { state.withLockedValue { $0.members } }
    func sees(_ sid: String) -> Bool { state.withLockedValue { $0.members.contains(sid) } }

    func connect(port: Int, user: String, doc: String) async throws {
        let client = try await WebSocketClient.connect(
            to: "ws://127.0.0.1:\(port)/v1/ws?user=\(user)&name=\(user)", on: MultiThreadedEventLoopGroup.singleton,
            configuration: .init(connectTimeout: .seconds(10)))
        state.withLockedValue { $0.client = client }
        Task { [state] in
            for await event in client.events {
                guard case .text(let text) = event, let o = (try? JSONParser.parse(text))?.objectValue else { continue }
                state.withLockedValue { s in
                    switch o["t"]?.stringValue {
                    case "welcome": s.session = o["session"]?.stringValue
                    case "joined":
                        for entry in o["presence"]?.arrayValue ?? [] { if let sid = entry.objectValue?["sid"]?.stringValue { s.members.insert(sid) } }
                    case "presence":
                        for entry in (o["joined"]?.arrayValue ?? []) + (o["updated"]?.arrayValue ?? []) {
                            if let sid = entry.objectValue?["sid"]?.stringValue { s.members.insert(sid) }
                        }
                        for sid in o["left"]?.arrayValue ?? [] { if let sid = sid.stringValue { s.members.remove(sid) } }
                    default: break
                    }
                }
            }
        }
        client.send(text: "{\"t\":\"join\",\"doc\":\"\(doc)\",\"state\":{\"probe\":\"\(name)\"}}")
    }

    func close() {
        if let client = state.withLockedValue({ $0.client }) { client.abort() }
    }
}

// MARK: - Report

/// Failed assertions, with what the nodes logged and what was sent to them last.
final class FuzzReport: Sendable {
    struct Failure: Sendable {
        var check: String
        var node: String
        var message: String
        var file: String
    }

    let seed: UInt64
    let out: URL
    private let failures = NIOLockedValueBox<[Failure]>([])

    init(seed: UInt64, out: URL) {
        self.seed = seed
        self.out = out
    }

    var failureCount: Int { failures.withLockedValue { $0.count } }

    /// Records a failed assertion (and prints it); returns its index.
    @discardableResult
    func fail(_ check: String, node: String, _ message: String, log text: String, recent: [ActionRecord] = []) -> Int {
        let index = failures.withLockedValue { $0.count } + 1
        let file = out.appendingPathComponent("failure-\(index)-\(check)-\(node).txt")
        var body = "\(check) failed on \(node): \(message)\nseed \(seed)\n"
        if !text.isEmpty { body += "\n--- log ---\n\(text)\n" }
        if !recent.isEmpty {
            body += "\n--- the last \(recent.count) actions sent to it, newest first ---\n"
            for (i, action) in recent.enumerated() {
                var name = ""
                if i < 32 {
                    name = "failure-\(index)-action-\(i).bin"
                    try? Data(action.bytes).write(to: out.appendingPathComponent(name))
                }
                body += "[\(i)] client \(action.client), \(action.kind), \(action.bytes.count) bytes, docs \(action.docs) \(name)\n"
                body += "    \(preview(action.text))\n"
            }
        }
        try? body.write(to: file, atomically: true, encoding: .utf8)
        failures.withLockedValue { $0.append(Failure(check: check, node: node, message: message, file: file.lastPathComponent)) }
        tandemBenchLogFailure("FAILED \(check) (\(node)): \(message) — \(file.path)")
        for line in text.split(separator: "\n") where line.contains("Fatal error") || line.contains("*** Swift runtime failure") {
            tandemBenchLogFailure("    \(line)")
        }
        if let frame = text.split(separator: "\n").first(where: { $0.contains("/Sources/Tandem") }) {
            tandemBenchLogFailure("    at \(frame.split(separator: " in ", maxSplits: 1).last ?? frame)")
        }
        return index
    }

    func reproducer(_ index: Int, _ action: ActionRecord) {
        let name = "failure-\(index)-reproducer.bin"
        try? Data(action.bytes).write(to: out.appendingPathComponent(name))
        note(index, "single-action reproducer: \(action.kind) (\(action.bytes.count) bytes\(action.afterUpgrade ? ", sent after a valid upgrade and joins of \(action.docs)" : " on a fresh socket")) in \(name): \(preview(action.text))")
    }

    func note(_ index: Int, _ text: String) {
        failures.withLockedValue { list in
            guard index >= 1, index <= list.count else { return }
            list[index - 1].message += "\n    " + text
            let url = out.appendingPathComponent(list[index - 1].file)
            if let handle = try? FileHandle(forWritingTo: url) {
                handle.seekToEndOfFile()
                handle.write(Data("\n\(text)\n".utf8))
                try? handle.close()
            }
        }
    }

    func summary(
        duration: Double, clients: Int, actions: [String: Int], replies: [String: Int], checks: Int, peakRSS: [String: Double]
    ) -> String {
        var lines = ["", "tandem-bench fuzz: \(fmt(duration, 0)) s, \(clients) clients, seed \(seed)"]
        lines.append("actions: " + actions.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        lines.append("server answers: " + replies.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        lines.append("peak RSS: " + peakRSS.sorted { $0.key < $1.key }.map { "\($0.key) \(fmt($0.value, 0)) MB" }.joined(separator: ", "))
        let list = failures.withLockedValue { $0 }
        lines.append("assertions: \(checks) checked, \(list.count) failed")
        for failure in list { lines.append("  FAILED \(failure.check) (\(failure.node)): \(failure.message) [\(failure.file)]") }
        if !list.isEmpty { lines.append("see \(out.path)") }
        lines.append("\(max(0, checks - list.count)) passed, \(list.count) failed")
        return lines.joined(separator: "\n")
    }
}

/// From a crashed node's log: the failure line(s) and the first frames of the crashed thread (the Swift
/// runtime's backtrace), else the last lines.
func crashExcerpt(_ log: String) -> String {
    let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
    var out = lines.filter { $0.contains("Fatal error") || $0.contains("*** Swift runtime failure") || $0.contains("*** Program crashed") }
    if let start = lines.firstIndex(where: { $0.hasPrefix("Thread") && $0.hasSuffix("crashed:") }) {
        out += lines[start..<min(lines.count, start + 24)]
    } else {
        out += lines.suffix(60)
    }
    return out.joined(separator: "\n")
}

private func preview(_ bytes: [UInt8]) -> String {
    let head = bytes.prefix(300).map { b -> String in
        (0x20..<0x7F).contains(b) && b != 0x5C ? String(UnicodeScalar(b)) : String(format: "\\x%02x", b)
    }.joined()
    return head + (bytes.count > 300 ? "… (+\(bytes.count - 300) bytes)" : "")
}

private func tandemBenchLogFailure(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
