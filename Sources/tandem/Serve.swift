import ArgumentParser
import Foundation
import Logging
import TandemServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Tandem node (with an embedded redis-server unless --redis is given).")

    @Option(help: "Client WebSocket address (default: 0.0.0.0 with a JWT secret or --insecure-dev-mode, else 127.0.0.1).")
    var host: String?
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
    @Option(
        name: .customLong("jwt-secret"),
        help: "HS256 secret for client tokens (visible in ps: prefer --jwt-secret-file or TANDEM_JWT_SECRET). Without one: development mode.")
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
    @Option(name: .customLong("max-new-connections-per-sec"), help: "Authenticated WebSocket handshakes admitted per second.")
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
    @Option(
        name: .customLong("max-queued-pushes"),
        help: "Pushes queued per doc before new ones get unavailable (a memory bound; --max-push-wait-ms refuses sooner).")
    var maxQueuedPushes = 1_000
    @Option(
        name: .customLong("max-push-wait-ms"),
        help: "A push that would wait longer than this for its commit is refused at once (unavailable, with retryAfterMs).")
    var maxPushWaitMs = 250
    @Option(name: .customLong("max-batch-pushes"), help: "Most pushes of one doc committed together (one Redis script call).")
    var maxBatchPushes = 128
    @Option(name: .customLong("max-batch-bytes"), help: "Most bytes of ops and records in one group commit.")
    var maxBatchBytes = 1 << 20
    @Option(
        name: .customLong("sync-log-mode"),
        help: "batch (default), or per-commit while nodes from before group commit still serve docs (rolling upgrade).")
    var syncLogMode = "batch"
    @Option(name: .customLong("max-docs-per-connection"), help: "Docs one connection may be in (beyond: too_many_docs).")
    var maxDocsPerConnection = 100
    @Option(name: .customLong("handshake-timeout-ms"), help: "Sockets not upgraded to WebSocket within this are closed.")
    var handshakeTimeoutMs = 10_000
    @Option(name: .customLong("max-pending-handshakes"), help: "Sockets in the pre-upgrade phase (beyond: 503, closed).")
    var maxPendingHandshakes = 1_000
    @Option(
        name: .customLong("max-handshake-attempts-per-sec"),
        help: "Handshakes whose token is checked per second, valid or not (beyond: 503 before the check).")
    var maxHandshakeAttemptsPerSec = 5_000
    @Option(
        name: .customLong("max-pending-requests"),
        help: "Requests of one connection waiting for its join of a doc to complete (beyond: unavailable).")
    var maxPendingRequests = 1_000
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
    // Secure defaults and Redis bounds (issue 7)
    @Option(name: .customLong("jwt-secret-file"), help: "A file holding the HS256 secret (trailing newline ignored).")
    var jwtSecretFile: String?
    @Flag(
        name: .customLong("insecure-dev-mode"),
        help: "Allow development mode (no JWT secret: anyone picks any user and edits every doc) on a non-loopback --host.")
    var insecureDevMode = false
    @Option(name: .customLong("doc-ttl"), help: "Drop a doc's Redis keys after this long without a write or a node holding it open (30d, 12h; 0: never).")
    var docTTL = "30d"
    @Option(
        name: .customLong("redis-maxmemory"),
        help: "Embedded Redis maxmemory (bytes, or 512MiB, 2GiB; 0: no limit). Default: a quarter of the memory available.")
    var redisMaxMemory: String?

    func validate() throws {
        guard ["everysec", "always"].contains(appendfsync) else {
            throw ValidationError("--appendfsync must be everysec or always")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard jwtSecret == nil || jwtSecretFile == nil else {
            throw ValidationError("give --jwt-secret or --jwt-secret-file (TANDEM_JWT_SECRET or TANDEM_JWT_SECRET_FILE), not both")
        }
        guard SyncLogMode(rawValue: syncLogMode) != nil else {
            throw ValidationError("--sync-log-mode must be batch or per-commit")
        }
        guard OptionValues.durationMs(docTTL) != nil else { throw ValidationError("--doc-ttl takes 0 or a duration: 90s, 12h, 30d") }
        if let redisMaxMemory {
            guard OptionValues.bytes(redisMaxMemory) != nil else {
                throw ValidationError("--redis-maxmemory takes bytes or a size such as 512MiB or 2GiB (0: no limit)")
            }
            guard redis == nil else {
                throw ValidationError("--redis-maxmemory sets the embedded Redis only; with --redis, set maxmemory on that Redis")
            }
        }
        guard opsToken == nil || opsTokenFile == nil else {
            throw ValidationError("give the ops token once: --ops-token (TANDEM_OPS_TOKEN) or --ops-token-file")
        }
    }

    /// The secret from --jwt-secret-file or --jwt-secret (each possibly from the environment), checked.
    private func resolveSecret(logger: Logger) throws -> String? {
        do {
            if let jwtSecretFile {
                let loaded = try JWTSecret.load(fromFile: jwtSecretFile)
                if let warning = loaded.warning { logger.warning("\(warning)") }
                return loaded.secret
            }
            if let jwtSecret {
                if CommandLine.arguments.contains(where: { $0 == "--jwt-secret" || $0.hasPrefix("--jwt-secret=") }) {
                    logger.warning("--jwt-secret on the command line is visible to every local user (ps); use --jwt-secret-file or TANDEM_JWT_SECRET")
                }
                try JWTSecret.check(jwtSecret, source: "--jwt-secret")
                return jwtSecret
            }
        } catch let failure as JWTSecret.Failure {
            throw StartupRefusal(description: failure.message)
        }
        return nil
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tandem")

        // Secure defaults (issue 7): resolve the secret and the client address, and refuse development mode
        // on a reachable address before anything starts.
        let secret = try resolveSecret(logger: logger)
        let clientHost = host ?? ServerConfiguration.defaultHost(hasSecret: secret != nil, insecureDevMode: insecureDevMode)
        guard secret != nil || insecureDevMode || ServerConfiguration.isLoopback(clientHost) else {
            throw StartupRefusal(description: ServerConfiguration.developmentModeRefusal(host: clientHost))
        }
        let maxMemory = redisMaxMemory.flatMap(OptionValues.bytes) ?? EmbeddedRedis.defaultMaxMemoryBytes()

        var embedded: EmbeddedRedis?
        let redisURL: String
        if let redis {
            redisURL = redis
        } else {
            let server = EmbeddedRedis(
                dataDirectory: dataDir + "/redis", redisServer: redisServer, appendFsync: appendfsync,
                maxMemoryBytes: maxMemory, logger: logger)
            redisURL = try server.start()
            embedded = server
        }

        var config = ServerConfiguration(nodeID: nodeID ?? Self.defaultNodeID(), redisURL: redisURL)
        config.host = clientHost
        config.port = port
        config.opsHost = opsHost
        config.opsPort = opsPort
        config.jwtSecret = secret
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
        config.maxPushWaitMs = maxPushWaitMs
        config.maxBatchPushes = maxBatchPushes
        config.maxBatchBytes = maxBatchBytes
        config.syncLogMode = SyncLogMode(rawValue: syncLogMode) ?? .batch
        config.maxDocsPerConnection = maxDocsPerConnection
        config.handshakeTimeoutMs = handshakeTimeoutMs
        config.maxPendingHandshakes = maxPendingHandshakes
        config.maxHandshakeAttemptsPerSecond = maxHandshakeAttemptsPerSec
        config.maxPendingRequests = maxPendingRequests
        config.webRoot = webRoot ?? Self.defaultWebRoot()
        config.insecureDevMode = insecureDevMode
        config.docTTLMs = OptionValues.durationMs(docTTL) ?? config.docTTLMs
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

/// A reason not to start, printed as `Error: …` (without the usage text a `ValidationError` adds).
struct StartupRefusal: Error, CustomStringConvertible {
    var description: String
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
