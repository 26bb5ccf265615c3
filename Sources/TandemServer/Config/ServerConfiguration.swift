import TandemCore

/// Everything `tandem serve` can be told. Every limit is named here with its default; README and
/// docs/configuration.md list the same names (each also settable as TANDEM_<NAME> in the environment).
public struct ServerConfiguration: Sendable {
    // Listeners
    public var host = "0.0.0.0"
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
    /// Pushes waiting for their turn in one doc before new ones are refused with `unavailable`.
    public var maxQueuedPushes = 1_000

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
        // RFC 7518 §3.2: an HS256 key must be at least as long as the hash (JWTKit also asserts it).
        try check(jwtSecret.map { $0.utf8.count >= 32 } ?? true, "--jwt-secret must be at least 32 bytes")
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
