import Foundation
import TandemCore
import TandemRedis

/// Everything a node is configured with. Each field's initial value is the default of the `tandem serve`
/// option that sets it: `ServeOptions` declares every option (its flag, TANDEM_<NAME> variable, bounds,
/// unit and help) once, and docs/configuration.md is made from it.
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
    /// `redis://HOST:PORT[/DB]` or `unix:///PATH`; or several comma-separated `redis://` URLs, seeds of a
    /// Redis Cluster (any one that answers is enough; see `redisSeedURLs`).
    public var redisURL: String
    /// A commit is answered only once this many replicas acknowledged it (Redis `WAIT`); 0: once the
    /// primary has it (replication is asynchronous: docs/operations.md says what a failover can lose).
    public var redisWaitReplicas = 0
    /// How long a commit waits for `redisWaitReplicas` acknowledgements before the pusher gets
    /// `unavailable` (the commit is in the primary all the same; a retried push is answered from it).
    public var redisWaitTimeoutMs = 1_000

    // Presence
    public var presenceTTLMs = 2_000
    public var tickMs = 50
    /// Each tick's docs are split into this many phases spread evenly over the tick (issue 14).
    public var tickPhases = 5
    /// A tick phase that starts more than this late stretches the next to two phase intervals after its
    /// work (0: never; issue 14).
    public var presenceStretchLagMs = 25
    /// Publish every presence write, even while no other node listens on the doc's channel (issue 14).
    public var presenceAlwaysPublish = false
    /// While no other node listens on a doc, its changed presence states are written to Redis at most
    /// this often (0: every tick; issue 14).
    public var presenceAloneWriteMs = 250
    /// Presence batches a loop gathers for another loop's shard before it hands them over without waiting
    /// for the end of its round (0: at the round's end only; issue 14).
    public var presenceHandoffBatches = 16
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
    public var maxFrameBytes: Int { limits.maxMessageBytes * Self.frameBytesPerMessageByte }
    /// How much larger than `--max-message-bytes` a frame may be before it is not even read: a message a
    /// little too large gets a `too_large` error it can act on, only a grossly oversized frame costs the socket.
    static let frameBytesPerMessageByte = 4
    public var maxMessagesPerSecond = 1_000
    /// More bad frames than this within `AbuseMonitor.Limits.badFrameWindowMs` close the connection (1008).
    public var maxBadFrames = 10
    /// Server WebSocket ping interval; a client that misses two pings is closed.
    public var pingIntervalMs = 10_000
    /// Above this many bytes queued for a client its presence is coalesced instead of written.
    public var outboundHighWaterBytes = 256 * 1024
    public var outboundLowWaterBytes = 64 * 1024
    /// Above this many bytes queued for a client it is closed with 1013.
    public var maxOutboundBytes = 8 * 1024 * 1024

    // Yjs (/yjs/{room})
    /// Largest y-protocols message a Yjs client may send; larger closes the connection with 1009.
    public var yjsMaxMessageBytes = 1 << 20
    /// Bytes one Yjs room may hold in Redis (snapshot plus log).
    public var yjsMaxRoomBytes = 64 << 20
    /// Updates one Yjs connection may send per second (burst `YjsConnection.updateBurstSeconds` worth).
    public var yjsUpdateRate = 100
    /// A room's updates within this window go to each member as one merged update; 0: one message each.
    public var yjsRelayMs = 20
    /// Updates with missing dependencies (structs past a gap in their client's clocks) one Yjs room may
    /// hold; one more closes its sender with 4429.
    public var yjsMaxPendingUpdates = YjsRoomMachine.defaultMaxPendingUpdates

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
    /// --checksum-check-ms: how often a node compares its replicas' checksums with Redis's (0: never).
    public var checksumCheckMs = 10_000
    /// --diverged-report-ms: a connection's `diverged` reports are counted at most once per this long.
    public var divergedReportMs = 10_000
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
    /// While a shard's event loop runs its tasks this much later than due (smoothed), pushes on it are
    /// refused at once with `unavailable` and `retryAfterMs`: messages wait behind a saturated loop before
    /// any doc's admission sees them (`LoopLoad`).
    public var maxLoopLagMs = 250
    /// The most of `maxPushWaitMs` a shard keeps free at admission for what its wait estimates miss
    /// (`LoopLoad.marginNanos`: the p99 of how much longer than estimated accepted pushes took). 0: none,
    /// the default until a quiet machine shows it pays: stop 29's runs (docs/benchmarks.md) had it lower the
    /// node's tail but cost commits/s at 20k.
    public var maxPushWaitMarginMs = 0
    /// Most pushes committed in one group commit (one script call). Bounds how long one call holds Redis.
    public var maxBatchPushes = 128
    /// Most bytes of ops and record values in one group commit (a single larger push still goes alone).
    public var maxBatchBytes = 1 << 20
    /// Group commits of one doc in Redis at once (pipelining, `PushPipeline`): 1 waits for each reply.
    /// 1 by default: with Redis beside the node (a round trip of tens of µs) a doc's rate is bounded by CPU,
    /// not by the wait, and a quiet A/B on this 2-core machine (docs/benchmarks.md) showed depth 2 no faster
    /// on one hot doc (+3 %) and slower under 4× overload (smaller batches); raise it when Redis is a
    /// network hop away.
    public var maxBatchesInFlight = 1
    /// Commit linger (`PushPipeline.startLinger`): on a busy node, a busy doc's first queued push waits up
    /// to this long for others to join its group commit (0: never). A batch of one costs the node about
    /// 2.5 commits' worth more than each further push does (docs/benchmarks.md, issue 8); at 50 pushes a
    /// second per doc, 20 ms gathers about two a batch. Off by default (as PostgreSQL's `commit_delay`):
    /// on this 2-core machine with Redis beside the node, 20 ms at 10,000 commits/s saved 2 % of Tandem's
    /// CPU per commit and doubled the p99 (docs/benchmarks.md, stop 25); it may pay when a batch costs
    /// more (Redis a network hop away).
    public var commitLingerMs = 0
    /// A linger ends once this many pushes wait.
    public var commitLingerPushes = 4
    /// Docs linger only while their shard's loop lags at least this much (smoothed): a loaded node.
    public var commitLingerMinLagMs = 2
    /// How group commits are written to the Redis log and announced to other nodes (`SyncLogMode`).
    public var syncLogMode = SyncLogMode.batch
    /// Commit rounds (issue 8, stop 30; `CommitRound`): on a single Redis, the group commits a shard forms
    /// in one pass of its event loop go to Redis as one script call, at most this many docs' (1: one call
    /// per doc, as before). Redis's instructions per commit of one push: ~171,000 alone, ~157,000 in
    /// rounds of 16 (docs/benchmarks.md, stop 30).
    public var commitRoundMaxDocs = 16
    /// Commits decided in a commit's reply (rounds, or a doc's alone) wait for the loop's next tick
    /// (`LoopDoorbell`) while the loop lags at least this much (nanoseconds, smoothed). Not an option: a
    /// scheduling threshold, measured at 1 ms (`CommitRound.doorbellMinLagNanos`); tests set 0 to take that
    /// path on an idle loop.
    var commitRoundDoorbellMinLagNanos = CommitRound.doorbellMinLagNanos

    // Secure defaults and Redis bounds (issue 7)
    /// Development mode (no JWT secret) on a non-loopback `host`: anyone who can reach the port picks any
    /// user id, resumes any session and edits every doc. Refused unless this is set, and logged loudly.
    public var insecureDevMode = false
    /// Every Redis key of a doc expires after this long without a write (each commit refreshes them, and
    /// so does every node that has the doc open, so a doc in use never loses its keys); 0 = never.
    public var docTTLMs: Int64 = 30 * 86_400_000
    /// Version history (issue 15, docs/history.md): a checkpoint every this many commits at least,
    /// and at least every `checkpointIntervalMs` while the doc changes; history older than
    /// `historyRetentionMs` is dropped (0: kept while the doc lives).
    public var checkpointEvery = 1_000
    public var checkpointIntervalMs: Int64 = 3_600_000
    public var historyRetentionMs: Int64 = 0
    /// The history layout this node writes (`HistoryFormat`): an older one while nodes that cannot read
    /// the newest still serve docs (a rolling upgrade, docs/operations.md).
    public var historyFormat = HistoryFormat.v5
    // Data-plane bounds (issue 7): what one socket or connection may hold on a node.
    /// Docs one connection may be in at once; a join beyond it gets `too_many_docs`.
    public var maxDocsPerConnection = 100
    /// Joins per second of docs a connection is not in (burst: `maxDocsPerConnection`).
    public var maxDocJoinsPerSecond: Double = 10
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
    /// `--schema-dir`: record schemas checked on every push (see `SchemaDirectory`); nil: none.
    public var schemaDir: String?

    // Ops plane (issue 7): who may use the ops port and what one client may cost it.
    /// Host names the ops port answers besides IP literals and localhost (DNS-rebinding defence); `*`: any.
    public var opsAllowedHosts: [String] = []
    /// Which web pages may open a client WebSocket (see `OriginPolicy`); empty: the mode's default.
    public var allowedOrigins: [String] = []
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

    /// The seeds in `redisURL`: one URL, or the comma-separated nodes of a cluster.
    public var redisSeedURLs: [String] {
        redisURL.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Most seed URLs `--redis` may list (a handful is enough: the cluster names the others itself).
    static let maxRedisSeeds = 16

    public static func isValidNodeID(_ id: String) -> Bool {
        id.utf8.count <= 64 && DocID.isValid(id)
    }

    /// The presence engine's settings derived from this configuration.
    public var presenceSettings: PresenceSettings {
        var settings = PresenceSettings(nodeID: nodeID)
        settings.ttlMs = UInt64(presenceTTLMs)
        settings.refreshIntervalMs = UInt64(max(Self.minimumPresenceRefreshMs, presenceTTLMs / Self.presenceRefreshesPerTTL))
        settings.rate = Double(presenceRate)
        settings.burst = Double(max(1, presenceBurst))
        settings.largeDocViewers = largeDocViewers
        settings.tickMs = UInt64(tickMs)
        settings.aloneWriteIntervalMs = UInt64(presenceAloneWriteMs)
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
        settings.maxBatchesInFlight = maxBatchesInFlight
        settings.commitLingerNanos = UInt64(commitLingerMs) * 1_000_000
        settings.commitLingerPushes = commitLingerPushes
        settings.commitLingerMinLagNanos = UInt64(commitLingerMinLagMs) * 1_000_000
        return settings
    }

    /// Own presence is rewritten to Redis this many times per TTL, so one or two lost writes never let it
    /// expire while the session lives.
    static let presenceRefreshesPerTTL = 4
    /// ... but not more often than this, whatever the TTL.
    static let minimumPresenceRefreshMs = 50

    public var abuseLimits: AbuseMonitor.Limits {
        var limits = AbuseMonitor.Limits()
        limits.maxBadFrames = maxBadFrames
        limits.maxMessagesPerSecond = maxMessagesPerSecond
        return limits
    }

    /// Checks every option's bounds (declared in `ServeOptions`) and the rules between options, so a typo
    /// fails at start-up with a clear message instead of misbehaving later.
    public func validate() throws(ConfigurationError) {
        for option in ServeOptions.all {
            if let message = option.nodeViolation?(self) { throw ConfigurationError(message: message) }
        }
        for rule in Self.rules where !rule.holds(self) {
            throw ConfigurationError(message: rule.message(self))
        }
    }

    /// A bound that involves more than one field (one field's bounds are declared with its option).
    public struct Rule: Sendable {
        /// What must hold, for the docs.
        public let summary: String
        let holds: @Sendable (ServerConfiguration) -> Bool
        let message: @Sendable (ServerConfiguration) -> String

        init(
            _ summary: String, message: (@Sendable (ServerConfiguration) -> String)? = nil,
            _ holds: @escaping @Sendable (ServerConfiguration) -> Bool
        ) {
            self.summary = summary
            self.holds = holds
            self.message = message ?? { _ in summary }
        }
    }

    /// A doc's keys are refreshed by the periodic head check (about every --reconcile-ms) of every node that
    /// holds it open; that check must come round this many times within the doc TTL...
    static let docTTLReconcileRounds: Int64 = 10
    /// ... and the TTL is never shorter than this.
    static let minimumDocTTLMs: Int64 = 60_000

    /// The client port's Origin check, from `--allowed-origins` and the mode (`validate()` has checked
    /// the entries).
    public var originPolicy: OriginPolicy {
        get throws { try OriginPolicy(allowedOrigins: allowedOrigins, developmentMode: jwtSecret == nil) }
    }

    public static let rules: [Rule] = [
        Rule("--node-id must be 1–64 characters of [A-Za-z0-9._:-]") { isValidNodeID($0.nodeID) },
        Rule("--tick-ms must be well below --presence-ttl-ms") { $0.tickMs * 2 < $0.presenceTTLMs },
        Rule("--tick-phases must not exceed --tick-ms (a phase lasts 1 ms at least)") { $0.tickPhases <= $0.tickMs },
        Rule("--outbound-low-water-bytes must be below --outbound-high-water-bytes") {
            $0.outboundLowWaterBytes < $0.outboundHighWaterBytes
        },
        Rule("--max-outbound-bytes must exceed --outbound-high-water-bytes") { $0.maxOutboundBytes > $0.outboundHighWaterBytes },
        Rule("--storm-resume-grace-ms must be at least --presence-ttl-ms") { $0.stormResumeGraceMs >= $0.presenceTTLMs },
        // RFC 7518 §3.2: an HS256 key must be at least as long as the hash (JWTKit also asserts it).
        Rule("--jwt-secret must be at least 32 bytes") { $0.jwtSecret.map { $0.utf8.count >= JWTSecret.minimumBytes } ?? true },
        Rule(
            "without a JWT secret, --host must be a loopback address unless --insecure-dev-mode is given",
            message: { developmentModeRefusal(host: $0.host) }
        ) { $0.jwtSecret != nil || $0.insecureDevMode || isLoopback($0.host) },
        Rule(
            "--allowed-origins entries must be origins (https://app.example.com), wildcards (https://*.example.com), null or *",
            message: { config in
                do { _ = try config.originPolicy } catch { return "--allowed-origins: \(error)" }
                return ""
            }
        ) { (try? $0.originPolicy) != nil },
        Rule("--doc-ttl must be 0 (never expire) or at least 1m (and 10 × --reconcile-ms)") {
            $0.docTTLMs == 0 || $0.docTTLMs >= max(minimumDocTTLMs, docTTLReconcileRounds * Int64($0.reconcileMs))
        },
        Rule("--yjs-max-room-bytes must be at least --yjs-max-message-bytes") { $0.yjsMaxRoomBytes >= $0.yjsMaxMessageBytes },
        Rule("--ops-token must be 16–1024 printable ASCII characters without spaces") {
            $0.opsToken.map(isValidOpsToken) ?? true
        },
        Rule(
            "--redis must be 1–16 comma-separated redis://HOST:PORT[/DB] or unix:///PATH URLs",
            message: { config in
                for url in config.redisSeedURLs {
                    do { _ = try RedisEndpoint(url: url) } catch { return "--redis \(url): \(error)" }
                }
                return "--redis must be 1–\(maxRedisSeeds) comma-separated redis://HOST:PORT[/DB] or unix:///PATH URLs"
            }
        ) { config in
            // Empty: not chosen yet (`tandem serve` sets it, to an embedded Redis without --redis).
            let seeds = config.redisSeedURLs
            return config.redisURL.isEmpty
                || ((1...maxRedisSeeds).contains(seeds.count) && seeds.allSatisfy { (try? RedisEndpoint(url: $0)) != nil })
        },
        Rule("--ops-max-connections-per-ip must be 1–--ops-max-connections") {
            (1...max(1, $0.opsMaxConnections)).contains($0.opsMaxConnectionsPerIP)
        },
    ]
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

/// `--history-format`: how this node writes version history (docs/history.md). Every node reads all of
/// them; a node reads only the formats up to its own release's, so during a rolling upgrade the new nodes
/// write what the old ones read until every node is upgraded (docs/operations.md, Upgrading).
public enum HistoryFormat: String, Sendable, CaseIterable, Comparable {
    /// Blobs v3: zlib blobs (kind `z`), version entries as JSON members with their authors, segments of
    /// up to 1,024 commits that end at each checkpoint, every checkpoint full.
    case v3 = "3"
    /// Blobs v4: bzip2 or zlib blobs (kind `b` or `z`), `CLOCK:AT:COMMITS:MORE` members with the authors
    /// under `a:CLOCK`, segments of up to 2,048 commits holding checkpoints inside, every checkpoint full.
    case v4 = "4"
    /// Blobs v5 (the default): v4 with delta checkpoints (`d:CLOCK`), a full one every
    /// `HistoryPolicy.defaultFullCheckpointEvery`.
    case v5 = "5"

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}
