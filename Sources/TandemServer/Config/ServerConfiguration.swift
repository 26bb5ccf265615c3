import Foundation
import TandemCore

/// Everything `tandem serve` can be told. Every limit is named here with its default; README and
/// docs/configuration.md list the same names (each also settable as TANDEM_<NAME> in the environment).
public struct ServerConfiguration: Sendable {
    // Listeners
    /// Client WebSocket address. Loopback by default: without a JWT secret only loopback is allowed unless
    /// `insecureDevMode` is set (`tandem serve` picks 0.0.0.0 when a secret or that flag is given).
    public var host = "127.0.0.1"
    /// Client WebSocket port; 0 picks a free port (logged).
    public var port = 7070
    public var opsHost = "127.0.0.1"
    public var opsPort = 7071

    // Identity
    /// This node's name in presence entries, status and logs: 1–64 characters of [A-Za-z0-9._:-].
    public var nodeID: String
    /// HS256 secret for client tokens; nil is development mode (`?user=&name=`, editor everywhere).
    public var jwtSecret: String?

    // Redis
    /// `redis://HOST:PORT[/DB]` or `unix:///PATH`.
    public var redisURL: String

    // Presence
    public var presenceTTLMs = 2_000
    public var tickMs = 50
    public var presenceRate = 20
    /// Updates a user may send back to back before `presenceRate` applies.
    public var presenceBurst = 5
    public var largeDocViewers = 100
    /// How often each node removes nodes whose registration expired (sessions of dead nodes).
    public var sweepMs = 500
    /// How often each node checks its view of each doc against Redis.
    public var reconcileMs = 5_000

    // Client connections
    public var limits = ProtocolLimits()
    /// Frames above this close the connection with 1009 instead of getting a `too_large` error.
    public var maxFrameBytes: Int { limits.maxMessageBytes * 4 }
    public var maxMessagesPerSecond = 1_000
    public var maxBadFrames = 10
    /// Server WebSocket ping interval; a client that misses two pings is closed.
    public var pingIntervalMs = 10_000
    /// Above this many bytes queued for a client its presence is coalesced instead of written.
    public var outboundHighWaterBytes = 256 * 1024
    public var outboundLowWaterBytes = 64 * 1024
    /// Above this many bytes queued for a client it is closed with 1013.
    public var maxOutboundBytes = 8 * 1024 * 1024

    // Admission (reconnect storms)
    public var maxNewConnectionsPerSecond = 500
    public var maxConnections = 20_000
    public var maxConnectionsPerUser = 64
    public var stormThreshold = 50.0
    /// While handshakes are refused for rate or a storm is on, lost sessions stay resumable this long
    /// (instead of the presence TTL): clients told to wait keep their place without flicker.
    public var stormResumeGraceMs = 30_000

    // Sync
    public var logRetention = 10_000
    public var maxRecordBytes = 64 * 1024
    public var maxPushBytes = 1024 * 1024
    public var maxPushOps = 1_000
    public var maxDocRecords = 100_000
    /// Pushes waiting in one doc (not counting the batch in Redis) before new ones are refused with
    /// `unavailable`. A hard memory bound: admission by waiting time (`maxPushWaitMs`) normally refuses
    /// long before it is reached.
    public var maxQueuedPushes = 1_000
    /// A push whose estimated wait before its commit is longer than this is refused at once with
    /// `unavailable` and `retryAfterMs`, instead of queueing (admission by waiting time).
    public var maxPushWaitMs = 250
    /// Most pushes committed in one group commit (one script call). Bounds how long one call holds Redis.
    public var maxBatchPushes = 128
    /// Most bytes of ops and record values in one group commit (a single larger push still goes alone).
    public var maxBatchBytes = 1 << 20
    /// How group commits are written to the Redis log and announced to other nodes (`SyncLogMode`).
    public var syncLogMode = SyncLogMode.batch

    // Secure defaults and Redis bounds (issue 7)
    /// Development mode (no JWT secret) on a non-loopback `host`: anyone who can reach the port picks any
    /// user id, resumes any session and edits every doc. Refused unless this is set, and logged loudly.
    public var insecureDevMode = false
    /// Every Redis key of a doc expires after this long without a write (each commit refreshes them, and
    /// so does every node that has the doc open, so a doc in use never loses its keys); 0 = never.
    public var docTTLMs: Int64 = 30 * 86_400_000
    // Data-plane bounds (issue 7): what one socket or connection may hold on a node.
    /// Docs one connection may be in at once; a join beyond it gets `too_many_docs`.
    public var maxDocsPerConnection = 100
    /// A socket that has not completed the WebSocket upgrade after this long is closed (idle or slow
    /// HTTP requests included).
    public var handshakeTimeoutMs = 10_000
    /// Sockets in the pre-upgrade phase (accepted, not upgraded yet); beyond it a new socket gets 503 and
    /// is closed at once. Separate from `maxConnections`, so unauthenticated sockets cannot use up the
    /// slots of authenticated clients.
    public var maxPendingHandshakes = 1_000
    /// Handshakes whose token is checked per second, authenticated or not; beyond it: 503 before any
    /// check. `maxNewConnectionsPerSecond` applies to authenticated handshakes only. Never below it (see
    /// `handshakeAttemptsPerSecond`).
    public var maxHandshakeAttemptsPerSecond = 5_000
    /// The attempt rate in force: at least the admission rate, so raising `--max-new-connections-per-sec`
    /// alone never makes the attempt bound the tighter one.
    public var handshakeAttemptsPerSecond: Int { max(maxHandshakeAttemptsPerSecond, maxNewConnectionsPerSecond) }
    /// Requests (push, sync, ack) of one connection waiting for its join of one doc to complete; beyond
    /// it they are refused with `unavailable`.
    public var maxPendingRequests = 1_000

    /// Where the status page lives (served by the ops server at `/`).
    public var webRoot: String?

    // Ops plane (issue 7): who may use the ops port and what one client may cost it.
    /// Host names the ops port answers besides IP literals and localhost (DNS-rebinding defence); `*`: any.
    public var opsAllowedHosts: [String] = []
    /// When set, `/api/docs/…` requires `Authorization: Bearer <token>`; metrics, health and status stay open.
    public var opsToken: String?
    /// Connections to the ops port; at the limit a new one closes the connection idle longest.
    public var opsMaxConnections = 1024
    /// Connections to the ops port from one address (IPv6: one /64); more are closed at once.
    public var opsMaxConnectionsPerIP = 32
    /// An ops connection with no traffic for this long is closed (whole seconds).
    public var opsIdleTimeoutMs = 5_000
    /// Ops-plane polling threads (every ops connection shares them; no thread per connection).
    public var opsThreads = 2
    /// Ops requests waiting for Redis or the shards at once; more get 503 `busy`.
    public var opsMaxPendingRequests = 16
    /// How long an ops request may wait for Redis or the shards before it gets 503 `timeout`.
    public var opsRequestTimeoutMs = 2_000
    /// Docs listed by /api/status and members by /api/docs/{id} (the totals are always given).
    public var opsMaxListItems = 1_000

    public init(nodeID: String, redisURL: String) {
        self.nodeID = nodeID
        self.redisURL = redisURL
    }

    public static func isValidNodeID(_ id: String) -> Bool {
        id.utf8.count <= 64 && DocID.isValid(id)
    }

    /// The presence engine's settings derived from this configuration.
    public var presenceSettings: PresenceSettings {
        var settings = PresenceSettings(nodeID: nodeID)
        settings.ttlMs = UInt64(presenceTTLMs)
        settings.refreshIntervalMs = UInt64(max(50, presenceTTLMs / 4))
        settings.rate = Double(presenceRate)
        settings.burst = Double(max(1, presenceBurst))
        settings.largeDocViewers = largeDocViewers
        return settings
    }

    /// The push pipeline's settings derived from this configuration.
    public var pushPipelineSettings: PushPipelineSettings {
        var settings = PushPipelineSettings(nodeID: nodeID)
        settings.limits.maxRecordBytes = maxRecordBytes
        settings.limits.maxPushBytes = maxPushBytes
        settings.limits.maxPushOps = maxPushOps
        settings.limits.maxDocRecords = maxDocRecords
        settings.retention = UInt64(logRetention)
        settings.maxQueuedPushes = maxQueuedPushes
        settings.maxPushWaitNanos = UInt64(maxPushWaitMs) * 1_000_000
        settings.maxBatchPushes = maxBatchPushes
        settings.maxBatchBytes = maxBatchBytes
        return settings
    }

    public var abuseLimits: AbuseMonitor.Limits {
        var limits = AbuseMonitor.Limits()
        limits.maxBadFrames = maxBadFrames
        limits.maxMessagesPerSecond = maxMessagesPerSecond
        return limits
    }

    /// Checks ranges so a typo fails at start-up with a clear message instead of misbehaving later.
    public func validate() throws(ConfigurationError) {
        func check(_ ok: Bool, _ message: String) throws(ConfigurationError) {
            if !ok { throw ConfigurationError(message: message) }
        }
        try check(Self.isValidNodeID(nodeID), "--node-id must be 1–64 characters of [A-Za-z0-9._:-]")
        try check((0...65535).contains(port) && (0...65535).contains(opsPort), "ports must be 0–65535")
        try check(presenceTTLMs >= 200, "--presence-ttl-ms must be at least 200")
        try check(tickMs >= 5 && tickMs <= 1000, "--tick-ms must be 5–1000")
        try check(tickMs * 2 < presenceTTLMs, "--tick-ms must be well below --presence-ttl-ms")
        try check(presenceRate >= 1, "--presence-rate must be at least 1")
        try check(largeDocViewers >= 0, "--large-doc-viewers must be >= 0")
        try check(maxMessagesPerSecond >= 1, "--max-messages-per-sec must be at least 1")
        try check(pingIntervalMs >= 100, "--ping-interval-ms must be at least 100")
        try check(sweepMs >= 50 && reconcileMs >= 100, "--sweep-ms >= 50 and --reconcile-ms >= 100")
        try check(outboundLowWaterBytes < outboundHighWaterBytes, "outbound low water must be below high water")
        try check(maxOutboundBytes > outboundHighWaterBytes, "--max-outbound-bytes must exceed the high water mark")
        try check(limits.maxStateBytes >= 2 && limits.maxMessageBytes >= 1024, "message limits too small")
        try check(maxNewConnectionsPerSecond >= 1 && maxConnections >= 1 && maxConnectionsPerUser >= 1,
                  "connection limits must be at least 1")
        try check(stormResumeGraceMs >= presenceTTLMs, "--storm-resume-grace-ms must be at least --presence-ttl-ms")
        try check(logRetention >= 1, "--log-retention must be at least 1")
        try check(maxDocsPerConnection >= 1, "--max-docs-per-connection must be at least 1")
        try check(handshakeTimeoutMs >= 100, "--handshake-timeout-ms must be at least 100")
        try check(maxPendingHandshakes >= 1, "--max-pending-handshakes must be at least 1")
        try check(maxHandshakeAttemptsPerSecond >= 1, "--max-handshake-attempts-per-sec must be at least 1")
        try check(maxPendingRequests >= 1, "--max-pending-requests must be at least 1")
        try check(maxQueuedPushes >= 1, "--max-queued-pushes must be at least 1")
        try check((1...60_000).contains(maxPushWaitMs), "--max-push-wait-ms must be 1–60000")
        try check((1...1_000).contains(maxBatchPushes), "--max-batch-pushes must be 1–1000")
        try check((1024...(64 << 20)).contains(maxBatchBytes), "--max-batch-bytes must be 1 KiB–64 MiB")
        // RFC 7518 §3.2: an HS256 key must be at least as long as the hash (JWTKit also asserts it).
        try check(jwtSecret.map { $0.utf8.count >= JWTSecret.minimumBytes } ?? true, "--jwt-secret must be at least 32 bytes")
        try check(jwtSecret != nil || insecureDevMode || Self.isLoopback(host), Self.developmentModeRefusal(host: host))
        // Docs that nodes hold open refresh their keys from the periodic head check (every ~--reconcile-ms),
        // which must come round several times within the TTL.
        try check(
            docTTLMs == 0 || docTTLMs >= max(60_000, 10 * Int64(reconcileMs)),
            "--doc-ttl must be 0 (never expire) or at least 1m (and 10 × --reconcile-ms)")
        try check(opsToken.map(Self.isValidOpsToken) ?? true, "--ops-token must be 16–1024 printable ASCII characters without spaces")
        try check((1...1_000_000).contains(opsMaxConnections), "--ops-max-connections must be 1–1000000")
        try check((1...opsMaxConnections).contains(opsMaxConnectionsPerIP), "--ops-max-connections-per-ip must be 1–--ops-max-connections")
        try check((1000...86_400_000).contains(opsIdleTimeoutMs), "--ops-idle-timeout-ms must be 1000–86400000")
        try check((1...64).contains(opsThreads), "--ops-threads must be 1–64")
        try check((1...100_000).contains(opsMaxPendingRequests), "--ops-max-pending-requests must be 1–100000")
        try check((10...600_000).contains(opsRequestTimeoutMs), "--ops-request-timeout-ms must be 10–600000")
        try check((1...1_000_000).contains(opsMaxListItems), "--ops-max-list-items must be 1–1000000")
    }
}

extension ServerConfiguration {
    /// Whether `host` names only this machine: 127.0.0.0/8, ::1 (also IPv4-mapped), or `localhost`.
    /// Anything else — 0.0.0.0, ::, an interface address, another name — may be reachable from elsewhere.
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, bare, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }  // ::1
        // ::ffff:127.x.x.x
        return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }

    /// Why development mode on `host` is refused, and what to do instead.
    public static func developmentModeRefusal(host: String) -> String {
        "refusing development mode on --host \(host): without a JWT secret anyone who can reach it picks any user id,"
            + " resumes any session and edits every doc. Require tokens with --jwt-secret-file PATH (or"
            + " TANDEM_JWT_SECRET), listen on loopback (omit --host, or --host 127.0.0.1), or accept the risk with"
            + " --insecure-dev-mode"
    }

    /// The client address `tandem serve` listens on when `--host` is not given: every interface once clients
    /// must authenticate (or the operator insists), loopback otherwise.
    public static func defaultHost(hasSecret: Bool, insecureDevMode: Bool) -> String {
        hasSecret || insecureDevMode ? "0.0.0.0" : "127.0.0.1"
    }

    /// An ops token travels in an `Authorization: Bearer` header: visible ASCII, no spaces; at least 16
    /// characters so it cannot be guessed over the network.
    public static func isValidOpsToken(_ token: String) -> Bool {
        (16...1024).contains(token.utf8.count) && token.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// `--sync-log-mode`: how group commits are written to a doc's Redis log and announced on its channel.
public enum SyncLogMode: String, Sendable, CaseIterable {
    /// One log entry and one message per group commit (a batch of one is written the classic way). The
    /// default, and what nodes from before group commit cannot read.
    case batch
    /// One classic log entry and one message per commit, exactly as nodes from before group commit wrote
    /// and read them: for a rolling upgrade while such nodes still serve docs. Commits are still batched.
    case perCommit = "per-commit"
}
