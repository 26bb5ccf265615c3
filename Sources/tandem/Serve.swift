import ArgumentParser
import Foundation
import Logging
import TandemServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Tandem node (with an embedded redis-server unless --redis is given).")

    @Option(help: "Client WebSocket address.") var host = "0.0.0.0"
    @Option(help: "Client WebSocket port (0 picks a free port; the log says which).") var port = 7070
    @Option(name: .customLong("ops-host"), help: "Ops HTTP address (metrics, health, status page).") var opsHost = "127.0.0.1"
    @Option(name: .customLong("ops-port"), help: "Ops HTTP port (0 picks a free port).") var opsPort = 7071
    @Option(help: "redis://HOST:PORT[/DB] or unix:///PATH. Without it, Tandem runs its own redis-server.")
    var redis: String?
    @Option(name: .customLong("node-id"), help: "This node's name: 1–64 of [A-Za-z0-9._:-] (default HOSTNAME-PID).")
    var nodeID: String?
    @Option(name: .customLong("presence-ttl-ms"), help: "How long presence outlives its last refresh.") var presenceTTLMs = 2000
    @Option(name: .customLong("tick-ms"), help: "Presence delta interval.") var tickMs = 50
    @Option(name: .customLong("presence-rate"), help: "Presence updates per (user, doc) per second.") var presenceRate = 20
    @Option(name: .customLong("presence-burst"), help: "Updates a user may send back to back before the rate applies.")
    var presenceBurst = 5
    @Option(name: .customLong("large-doc-viewers"), help: "Viewers above which a doc is large (viewers see membership only).")
    var largeDocViewers = 100
    @Option(name: .customLong("jwt-secret"), help: "HS256 secret for client tokens. Without it: development mode.")
    var jwtSecret: String?
    @Option(name: .customLong("max-messages-per-sec"), help: "Messages per second a client may sustain (5 s over it closes with 1008).")
    var maxMessagesPerSec = 1000
    @Option(name: .customLong("max-message-bytes"), help: "Largest client message.") var maxMessageBytes = 1_114_112
    @Option(name: .customLong("max-state-bytes"), help: "Largest presence state.") var maxStateBytes = 1024
    @Option(name: .customLong("ping-interval-ms"), help: "WebSocket ping interval; two missed pings close the socket.")
    var pingIntervalMs = 10_000
    @Option(name: .customLong("max-outbound-bytes"), help: "Bytes queued for one client before it is closed with 1013.")
    var maxOutboundBytes = 8 * 1024 * 1024
    @Option(name: .customLong("sweep-ms"), help: "How often expired nodes are swept from docs.") var sweepMs = 500
    @Option(name: .customLong("reconcile-ms"), help: "How often each doc's presence is checked against Redis.")
    var reconcileMs = 5000
    @Option(name: .customLong("max-new-connections-per-sec"), help: "WebSocket handshakes admitted per second.")
    var maxNewConnectionsPerSec = 500
    @Option(name: .customLong("max-connections"), help: "Open client connections per node.") var maxConnections = 20_000
    @Option(name: .customLong("max-connections-per-user"), help: "Open client connections per user on a node.")
    var maxConnectionsPerUser = 64
    @Option(name: .customLong("storm-threshold"), help: "Reconnects per second (10 s average) that count as a storm.")
    var stormThreshold = 50.0
    @Option(
        name: .customLong("storm-resume-grace-ms"),
        help: "While handshakes are refused or a storm is on, lost sessions stay resumable this long.")
    var stormResumeGraceMs = 30_000
    @Option(name: .customLong("log-retention"), help: "Log entries (and tombstones) kept per doc.") var logRetention = 10_000
    @Option(name: .customLong("max-record-bytes"), help: "Largest record.") var maxRecordBytes = 64 * 1024
    @Option(name: .customLong("max-push-bytes"), help: "Largest push (its ops).") var maxPushBytes = 1024 * 1024
    @Option(name: .customLong("max-push-ops"), help: "Most ops in one push.") var maxPushOps = 1000
    @Option(name: .customLong("max-doc-records"), help: "Most records in one doc.") var maxDocRecords = 100_000
    @Option(name: .customLong("max-queued-pushes"), help: "Pushes queued per doc before new ones get unavailable.")
    var maxQueuedPushes = 1_000
    @Option(name: .customLong("data-dir"), help: "Where the embedded redis-server keeps its data.") var dataDir = ".tandem"
    @Option(name: .customLong("redis-server"), help: "The redis-server program for the embedded Redis.")
    var redisServer = "redis-server"
    @Option(help: "Embedded Redis AOF fsync policy: everysec or always.") var appendfsync = "everysec"
    @Option(name: .customLong("web-root"), help: "Directory of the status page (default: Web/status if present).")
    var webRoot: String?
    // Ops plane (issue 7)
    @Option(
        name: .customLong("ops-allowed-hosts"),
        help: "Host names the ops port answers besides IP addresses and localhost, comma-separated (DNS-rebinding defence); * for any.")
    var opsAllowedHosts = ""
    @Option(
        name: .customLong("ops-token"),
        help: "Bearer token /api/docs/… requires (document content, user names). ps shows it: prefer --ops-token-file or TANDEM_OPS_TOKEN.")
    var opsToken: String?
    @Option(name: .customLong("ops-token-file"), help: "File holding the ops token (its first line).") var opsTokenFile: String?
    @Option(name: .customLong("ops-max-connections"), help: "Ops-port connections; at the limit a new one closes the one idle longest.")
    var opsMaxConnections = 1024
    @Option(name: .customLong("ops-max-connections-per-ip"), help: "Ops-port connections from one address (IPv6: one /64).")
    var opsMaxConnectionsPerIP = 32
    @Option(name: .customLong("ops-idle-timeout-ms"), help: "An ops connection without traffic this long is closed (whole seconds).")
    var opsIdleTimeoutMs = 5000
    @Option(name: .customLong("ops-threads"), help: "Ops-plane polling threads (shared by every ops connection).") var opsThreads = 2
    @Option(name: .customLong("ops-max-pending-requests"), help: "Ops requests waiting for Redis at once; more get 503 busy.")
    var opsMaxPendingRequests = 16
    @Option(name: .customLong("ops-request-timeout-ms"), help: "How long an ops request may wait for Redis before 503 timeout.")
    var opsRequestTimeoutMs = 2000
    @Option(name: .customLong("ops-max-list-items"), help: "Docs listed by /api/status, members by /api/docs/{id}.")
    var opsMaxListItems = 1000
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard ["everysec", "always"].contains(appendfsync) else {
            throw ValidationError("--appendfsync must be everysec or always")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard opsToken == nil || opsTokenFile == nil else {
            throw ValidationError("give the ops token once: --ops-token (TANDEM_OPS_TOKEN) or --ops-token-file")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tandem")

        var embedded: EmbeddedRedis?
        let redisURL: String
        if let redis {
            redisURL = redis
        } else {
            let server = EmbeddedRedis(
                dataDirectory: dataDir + "/redis", redisServer: redisServer, appendFsync: appendfsync, logger: logger)
            redisURL = try server.start()
            embedded = server
        }

        var config = ServerConfiguration(nodeID: nodeID ?? Self.defaultNodeID(), redisURL: redisURL)
        config.host = host
        config.port = port
        config.opsHost = opsHost
        config.opsPort = opsPort
        config.jwtSecret = jwtSecret
        config.presenceTTLMs = presenceTTLMs
        config.tickMs = tickMs
        config.presenceRate = presenceRate
        config.presenceBurst = presenceBurst
        config.largeDocViewers = largeDocViewers
        config.maxMessagesPerSecond = maxMessagesPerSec
        config.limits.maxMessageBytes = maxMessageBytes
        config.limits.maxStateBytes = maxStateBytes
        config.pingIntervalMs = pingIntervalMs
        config.maxOutboundBytes = maxOutboundBytes
        config.sweepMs = sweepMs
        config.reconcileMs = reconcileMs
        config.maxNewConnectionsPerSecond = maxNewConnectionsPerSec
        config.maxConnections = maxConnections
        config.maxConnectionsPerUser = maxConnectionsPerUser
        config.stormThreshold = stormThreshold
        config.stormResumeGraceMs = stormResumeGraceMs
        config.logRetention = logRetention
        config.maxRecordBytes = maxRecordBytes
        config.maxPushBytes = maxPushBytes
        config.maxPushOps = maxPushOps
        config.maxDocRecords = maxDocRecords
        config.maxQueuedPushes = maxQueuedPushes
        config.webRoot = webRoot ?? Self.defaultWebRoot()
        config.opsAllowedHosts = opsAllowedHosts.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        config.opsToken = try opsToken ?? opsTokenFile.map(Self.readOpsToken(path:))
        config.opsMaxConnections = opsMaxConnections
        config.opsMaxConnectionsPerIP = opsMaxConnectionsPerIP
        config.opsIdleTimeoutMs = opsIdleTimeoutMs
        config.opsThreads = opsThreads
        config.opsMaxPendingRequests = opsMaxPendingRequests
        config.opsRequestTimeoutMs = opsRequestTimeoutMs
        config.opsMaxListItems = opsMaxListItems

        let node: TandemNode
        do {
            node = try await TandemNode(configuration: config, logger: logger)
            try await node.start()
        } catch {
            logger.critical("failed to start", metadata: ["error": "\(error)"])
            embedded?.stop()
            throw ExitCode.failure
        }

        await Self.waitForTerminationSignal()
        await node.shutdown()
        embedded?.stop()
    }

    static func defaultNodeID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
        let cleaned = String(host.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == "-" }.prefix(40))
        return "\(cleaned.isEmpty ? "node" : cleaned)-\(getpid())"
    }

    /// `Web/status` next to the working directory or the package the binary was built in.
    static func defaultWebRoot() -> String? {
        var candidates = [FileManager.default.currentDirectoryPath + "/Web/status"]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.path + "/Web/status")
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/index.html") }
    }

    /// The first line of an `--ops-token-file`, without its line ending.
    static func readOpsToken(path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read --ops-token-file \(path)")
        }
        let token = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard !token.isEmpty else { throw ValidationError("--ops-token-file \(path) is empty") }
        return token
    }

    /// Suspends until SIGTERM or SIGINT.
    static func waitForTerminationSignal() async {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let queue = DispatchQueue(label: "tandem.signals")
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = SignalOnce(continuation)
            for sig in [SIGTERM, SIGINT] {
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler { once.fire() }
                source.resume()
                once.keep(source)
            }
        }
    }
}

/// Resumes the continuation on the first signal only; keeps the signal sources alive meanwhile.
/// Only touched on the `tandem.signals` queue after set-up.
private final class SignalOnce: @unchecked Sendable {
    private var continuation: CheckedContinuation<Void, Never>?
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    func keep(_ source: any DispatchSourceSignal) { sources.append(source) }
    func fire() {
        continuation?.resume()
        continuation = nil
    }
}
