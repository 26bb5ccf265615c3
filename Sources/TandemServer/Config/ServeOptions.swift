/// Every `tandem serve` option, declared once. The command line (`--NAME VALUE`), the environment
/// (`TANDEM_NAME`), `tandem serve --help`, the bounds `ServerConfiguration.validate()` checks,
/// docs/configuration.md and README's option table are made from this list (ConfigurationDocsTests fails
/// when the two documents disagree with it; `TANDEM_UPDATE_DOCS=1` regenerates them).
///
/// To add an option: add the field (type and default) to `ServerConfiguration` (or `LaunchSettings` when
/// `tandem serve` resolves it itself), add one entry below in its section, then regenerate the docs. Bounds
/// that involve two options go into `ServerConfiguration.rules`.
public enum ServeOptions {
    public static let all: [ConfigOption] = listeners + security + presence + connections + admission + sync + yjs + redis + ops
        + logging

    static let listeners: [ConfigOption] = [
        .launch(
            "host", \.host, .optionalText("addr"), section: .listeners,
            default: "127.0.0.1; 0.0.0.0 with a JWT secret or --insecure-dev-mode",
            help: "Client WebSocket address. Without a JWT secret only a loopback address is allowed (see --insecure-dev-mode)."),
        .node(
            "port", \.port, .integer("port"), bounds: .within(0...65535), section: .listeners,
            help: "Client WebSocket port (0 picks a free port; the log says which)."),
        .node(
            "ops-host", \.opsHost, .text("addr"), section: .listeners,
            help: "Ops HTTP address (metrics, health, status page); keep it off the internet."),
        .node(
            "ops-port", \.opsPort, .integer("port"), bounds: .within(0...65535), section: .listeners,
            help: "Ops HTTP port (0 picks a free port)."),
        .launch(
            "node-id", \.nodeID, .optionalText("name"), section: .listeners, default: "HOSTNAME-PID",
            help: "This node's name in presence entries, status and logs: 1–64 of [A-Za-z0-9._:-]."),
    ]

    static let security: [ConfigOption] = [
        .launch(
            "jwt-secret-file", \.jwtSecretFile, .optionalText("path"), section: .security, featured: true,
            help: "File holding the HS256 secret for client tokens (≥ 32 bytes; trailing newline ignored). Without a secret: development mode."),
        .launch(
            "jwt-secret", \.jwtSecret, .optionalText("secret"), section: .security,
            help: "The HS256 secret itself (≥ 32 bytes). The command line is visible in ps: prefer --jwt-secret-file or TANDEM_JWT_SECRET."),
        .nodeFlag(
            "insecure-dev-mode", \.insecureDevMode, section: .security, featured: true,
            help: "Allow development mode (no JWT secret: anyone picks any user and edits every doc) on a non-loopback --host; logged loudly."),
        .node(
            "allowed-origins", \.allowedOrigins, .list("origins"), section: .security,
            default: "development mode: this machine's pages; with a secret: any",
            help: "Web pages (Origin) that may open a client WebSocket, comma-separated: https://app.example.com, https://*.example.com, null, or * for any. Others get 403 origin_not_allowed; clients without an Origin (native, servers) are not checked."),
    ]

    static let presence: [ConfigOption] = [
        .node(
            "presence-ttl-ms", \.presenceTTLMs, .integer("ms"), bounds: .atLeast(200), unit: .milliseconds,
            section: .presence, featured: true,
            help: "How long presence outlives its last refresh (and the resume window of a lost socket)."),
        .node(
            "tick-ms", \.tickMs, .integer("ms"), bounds: .within(5...1000), unit: .milliseconds, section: .presence,
            featured: true, help: "Presence delta interval."),
        .node(
            "tick-phases", \.tickPhases, .integer(), bounds: .within(1...50), unit: .count, section: .presence,
            help: "Phases of the presence tick: a shard's docs are ticked in this many groups spread evenly over --tick-ms (each doc still every --tick-ms), so their deltas and Redis writes do not all go out in one burst. 1: every doc at once."),
        .node(
            "presence-stretch-lag-ms", \.presenceStretchLagMs, .integer("ms"), bounds: .within(0...10_000), unit: .milliseconds,
            section: .presence,
            help: "While the node is behind, presence degrades by coalescing instead of queueing: a tick phase that starts more than this late (its event loop's lag) schedules the next one two phase intervals after its own work instead of at the fixed rate, so each doc is ticked about half as often and its deltas carry only the latest state of each session (fewer, fresher entries to write and for clients to read). A phase on time restores the fixed rate. tandem_presence_ticks_stretched_total counts the stretched phases. 0: never stretch."),
        .nodeFlag(
            "presence-always-publish", \.presenceAlwaysPublish, section: .presence,
            help: "Publish every presence write on the doc's channel. Off: a write is published only while another node (or any other client) subscribes to the channel, counted by Redis in the same script (tandem_presence_publish_skipped_total counts the others); a node alone on a doc no longer hears its own deltas back. Always on with a Redis Cluster."),
        .node(
            "presence-alone-write-ms", \.presenceAloneWriteMs, .integer("ms"), bounds: .within(0...10_000), unit: .milliseconds,
            section: .presence,
            help: "While no other node serves a doc (its last presence write found no other listener), changed presence states are written to Redis at most this often instead of every tick; the latest state is always the one written, and joins, leaves and refreshes go at once. A node that starts serving the doc meanwhile may list a state this much older in its first joined, and gets the update within this time. 0: every tick."),
        .node(
            "presence-handoff-batches", \.presenceHandoffBatches, .integer(), bounds: .within(0...100_000), unit: .count,
            section: .presence,
            help: "Presence updates read on one event loop for a doc whose shard is on another are gathered and handed over in one task when the loop's round of reads ends; once this many connections' batches are gathered they go at once instead, so that a long round (thousands of busy sockets) does not hold the first ones back. tandem_presence_inbound_handoffs_total counts the hand-overs by reason. 0: at the round's end only."),
        .node(
            "presence-rate", \.presenceRate, .integer(), bounds: .atLeast(1), unit: .perSecond, section: .presence,
            featured: true, help: "Presence updates per (user, doc) per second."),
        .node(
            "presence-burst", \.presenceBurst, .integer(), bounds: .within(0...1_000_000), unit: .count, section: .presence,
            help: "Updates a user may send back to back before --presence-rate applies (below 1 counts as 1)."),
        .node(
            "large-doc-viewers", \.largeDocViewers, .integer(), bounds: .atLeast(0), unit: .count, section: .presence,
            featured: true, help: "Above this many viewers, viewers get membership only (at most once a second)."),
        .node(
            "sweep-ms", \.sweepMs, .integer("ms"), bounds: .atLeast(50), unit: .milliseconds, section: .presence,
            help: "How often sessions of dead nodes (expired registrations) are swept from docs."),
        .node(
            "reconcile-ms", \.reconcileMs, .integer("ms"), bounds: .atLeast(100), unit: .milliseconds,
            section: .presence, help: "How often each doc's presence is checked against Redis."),
    ]

    static let connections: [ConfigOption] = [
        .launch(
            "event-loops", \.eventLoops, .optionalInteger(), bounds: .within(1...256), unit: .count, section: .connections,
            default: "one per CPU core (a cgroup CPU quota counts)",
            help: "Event-loop threads serving client connections and docs (a doc lives on one of them). Fewer than the cores leaves CPU to a Redis or load on the same machine, and saves the hop between loops when a doc's members sit on another loop."),
        .node(
            "max-messages-per-sec", \.maxMessagesPerSecond, .integer(), bounds: .atLeast(1), unit: .perSecond,
            section: .connections, featured: true,
            help: "Messages per second a client may sustain; 5 s in a row over it closes the connection with 1008."),
        .node(
            "max-message-bytes", \.limits.maxMessageBytes, .byteCount, bounds: .atLeast(1024), unit: .bytes,
            section: .connections, featured: true,
            help: "Largest client message (larger: too_large; frames above 4 × this close with 1009)."),
        .node(
            "max-state-bytes", \.limits.maxStateBytes, .byteCount, bounds: .atLeast(2), unit: .bytes,
            section: .connections, help: "Largest presence state."),
        .node(
            "max-bad-frames", \.maxBadFrames, .integer(), bounds: .atLeast(1), unit: .count, section: .connections,
            help: "More than this many malformed frames from a client within 10 s close it with 1008."),
        .node(
            "ping-interval-ms", \.pingIntervalMs, .integer("ms"), bounds: .atLeast(100), unit: .milliseconds,
            section: .connections, help: "Server WebSocket pings; a client that misses two is closed."),
        .node(
            "max-outbound-bytes", \.maxOutboundBytes, .byteCount, unit: .bytes, section: .connections, featured: true,
            help: "Bytes queued for one client before it is closed with 1013."),
        .node(
            "outbound-high-water-bytes", \.outboundHighWaterBytes, .byteCount, bounds: .atLeast(1), unit: .bytes,
            section: .connections,
            help: "Above this many bytes queued for a client its presence is coalesced instead of written."),
        .node(
            "outbound-low-water-bytes", \.outboundLowWaterBytes, .byteCount, bounds: .atLeast(0), unit: .bytes,
            section: .connections, help: "Below this many bytes queued, presence is written to the client again."),
        .node(
            "max-docs-per-connection", \.maxDocsPerConnection, .integer(), bounds: .atLeast(1), unit: .count,
            section: .connections, featured: true, help: "Docs one connection may be in (beyond: too_many_docs)."),
        .node(
            "max-doc-joins-per-sec", \.maxDocJoinsPerSecond, .number(), bounds: .within(0.1...10_000), unit: .perSecond,
            section: .connections,
            help: "Joins per second of docs a connection is not in, after a burst of --max-docs-per-connection (beyond: rate_limited with retryAfterMs)."),
        .node(
            "max-pending-requests", \.maxPendingRequests, .integer(), bounds: .atLeast(1), unit: .count,
            section: .connections,
            help: "Pushes, syncs and acks of one connection waiting for its join of a doc (beyond: unavailable)."),
    ]

    static let admission: [ConfigOption] = [
        .node(
            "max-new-connections-per-sec", \.maxNewConnectionsPerSecond, .integer(), bounds: .atLeast(1),
            unit: .perSecond, section: .admission, featured: true,
            help: "Authenticated WebSocket handshakes admitted per node per second (excess: 503 with Retry-After)."),
        .node(
            "max-connections", \.maxConnections, .integer(), bounds: .atLeast(1), unit: .count, section: .admission,
            featured: true, help: "Open client connections per node."),
        .node(
            "max-connections-per-user", \.maxConnectionsPerUser, .integer(), bounds: .atLeast(1), unit: .count,
            section: .admission, featured: true, help: "Open client connections per user on a node."),
        .node(
            "storm-threshold", \.stormThreshold, .number(), bounds: .atLeast(0.1), unit: .perSecond, section: .admission,
            help: "Reconnects per second (10 s average) that count as a reconnect storm."),
        .node(
            "storm-resume-grace-ms", \.stormResumeGraceMs, .integer("ms"), bounds: .within(0...86_400_000), unit: .milliseconds, section: .admission,
            help: "While handshakes are refused or a storm is on, lost sessions stay resumable this long."),
        .node(
            "handshake-timeout-ms", \.handshakeTimeoutMs, .integer("ms"), bounds: .atLeast(100), unit: .milliseconds,
            section: .admission,
            help: "A socket not upgraded to WebSocket by then is closed (idle or slow requests)."),
        .node(
            "max-pending-handshakes", \.maxPendingHandshakes, .integer(), bounds: .atLeast(1), unit: .count,
            section: .admission,
            help: "Sockets mid-handshake at once (beyond: the oldest is closed for the newcomer); not counted in --max-connections."),
        .node(
            "max-handshake-attempts-per-sec", \.maxHandshakeAttemptsPerSecond, .integer(), bounds: .atLeast(1),
            unit: .perSecond, section: .admission,
            help: "Handshakes whose token is checked per second, valid or not (beyond: 503 before the check); never below --max-new-connections-per-sec."),
    ]

    static let sync: [ConfigOption] = [
        .node(
            "schema-dir", \.schemaDir, .optionalText("path"), section: .sync, default: "none (records are not checked)",
            help: "Directory of record-schema files (*.json, docs/schemas.md); reloaded on SIGHUP."),
        .node(
            "log-retention", \.logRetention, .integer(), bounds: .atLeast(1), unit: .count, section: .sync,
            help: "Log entries and tombstones kept per doc."),
        .node(
            "max-record-bytes", \.maxRecordBytes, .byteCount, bounds: .within(16...(64 << 20)), unit: .bytes, section: .sync, help: "Largest record."),
        .node(
            "max-push-bytes", \.maxPushBytes, .byteCount, bounds: .within(64...(256 << 20)), unit: .bytes, section: .sync, help: "Largest push (its ops)."),
        .node("max-push-ops", \.maxPushOps, .integer(), bounds: .within(1...1_000_000), unit: .count, section: .sync, help: "Most ops in one push."),
        .node(
            "max-doc-records", \.maxDocRecords, .integer(), bounds: .within(1...100_000_000), unit: .count, section: .sync,
            help: "Most records in one doc."),
        .node(
            "max-push-wait-ms", \.maxPushWaitMs, .integer("ms"), bounds: .within(1...60_000), unit: .milliseconds,
            section: .sync, featured: true,
            help: "A push that would wait longer than this for its commit, counting its time in the node before its doc saw it, is refused at once: unavailable with retryAfterMs (a busy doc or node)."),
        .node(
            "max-loop-lag-ms", \.maxLoopLagMs, .integer("ms"), bounds: .within(1...60_000), unit: .milliseconds,
            section: .sync, featured: true,
            help: "While a shard's event loop runs this much behind (smoothed), pushes on it are refused at once: unavailable with retryAfterMs (a saturated node)."),
        .node(
            "max-push-wait-margin-ms", \.maxPushWaitMarginMs, .integer("ms"), bounds: .within(0...60_000), unit: .milliseconds,
            section: .sync,
            help: "Most of --max-push-wait-ms admission keeps free for what the wait estimates miss: each shard learns how much longer than estimated accepted pushes took (their p99, over 100 ms windows) and refuses what would not fit in the rest (0, the default: estimates alone; try 100–200 on a saturated node)."),
        .node(
            "max-queued-pushes", \.maxQueuedPushes, .integer(), bounds: .within(1...10_000_000), unit: .count, section: .sync,
            featured: true,
            help: "Pushes waiting in one doc before new ones get unavailable with retryAfterMs: a memory bound (--max-push-wait-ms normally refuses sooner)."),
        .node(
            "max-batch-pushes", \.maxBatchPushes, .integer(), bounds: .within(1...1_000), unit: .count, section: .sync,
            help: "Most pushes of one doc committed together (one Redis script call, which holds Redis for its duration)."),
        .node(
            "max-batches-in-flight", \.maxBatchesInFlight, .integer(), bounds: .within(1...8), unit: .count, section: .sync,
            help: "Group commits of one doc in Redis at once: the next is decided against the state the ones ahead will leave and runs only if they left it (1: one at a time; 2 or more pays off when Redis is a network round trip away)."),
        .node(
            "commit-linger-ms", \.commitLingerMs, .integer("ms"), bounds: .within(0...1_000), unit: .milliseconds, section: .sync,
            help: "On a busy node (see --commit-linger-min-lag-ms), a busy doc's first queued push waits up to this long for others to join its group commit: fewer, larger script calls for the CPU they cost, for some latency (0: never; docs/operations.md)."),
        .node(
            "commit-linger-pushes", \.commitLingerPushes, .integer(), bounds: .within(2...1_000), unit: .count, section: .sync,
            help: "A commit linger ends as soon as this many pushes of the doc wait."),
        .node(
            "commit-linger-min-lag-ms", \.commitLingerMinLagMs, .integer("ms"), bounds: .within(0...60_000), unit: .milliseconds,
            section: .sync,
            help: "Docs linger (--commit-linger-ms) only while their shard's event loop runs at least this much behind, smoothed: a loaded node (0: whenever the doc is busy)."),
        .node(
            "commit-round-max-docs", \.commitRoundMaxDocs, .integer(), bounds: .within(1...1_000), unit: .count, section: .sync,
            help: "On a single Redis (not a Cluster), the group commits of up to this many docs that a shard forms in one pass of its event loop go to Redis as one script call, a commit round (each doc still committed and answered on its own; a round also stops taking batches once it carries --max-batch-bytes); 1: one call per doc."),
        .node(
            "max-batch-bytes", \.maxBatchBytes, .byteCount, bounds: .within(1024...(64 << 20)), unit: .bytes,
            section: .sync, help: "Most bytes of ops and record values in one group commit (a single larger push goes alone)."),
        .node(
            "sync-log-mode", \.syncLogMode, .choice("mode"), bounds: .anyCase, section: .sync,
            help: "batch, or per-commit while nodes from before group commit still serve docs (a rolling upgrade: docs/protocol.md)."),
        .node(
            "doc-ttl", \.docTTLMs, .duration, unit: .duration, section: .sync, featured: true,
            help: "A doc's Redis keys expire this long after its last write while no node holds it open (0: never)."),
        .node(
            "checksum-check-ms", \.checksumCheckMs, .integer("ms"), bounds: .within(0...3_600_000), unit: .milliseconds,
            section: .sync,
            help: "How often each node compares the checksum of every doc it holds with Redis's, and reloads a doc that differs (0: never; docs/protocol.md, checksums)."),
        .node(
            "diverged-report-ms", \.divergedReportMs, .integer("ms"), bounds: .within(0...3_600_000), unit: .milliseconds,
            section: .sync,
            help: "A connection's diverged reports count in tandem_sync_divergence_total at most once per this long (0: every one)."),
        .node(
            "checkpoint-every", \.checkpointEvery, .integer(), bounds: .within(1...10_000_000), unit: .count, section: .sync,
            help: "Version history: a checkpoint (the doc's whole state) at least every this many commits; reading a past state replays at most about this many (docs/history.md)."),
        .node(
            "checkpoint-interval", \.checkpointIntervalMs, .duration, bounds: .within(1_000...(30 * 86_400_000)), unit: .duration,
            section: .sync,
            help: "Version history: a checkpoint at least this often while a doc changes (the versions a history browser lists), and commits older than this are sealed into history."),
        .node(
            "history-retention", \.historyRetentionMs, .duration, unit: .duration, section: .sync,
            help: "Version history older than this is dropped (kept from the newest checkpoint before it; 0: keep everything while the doc lives, --doc-ttl)."),
        .node(
            "history-format", \.historyFormat, .choice("version"), bounds: .anyCase, section: .sync,
            help: "Version history layout this node writes: 5, or 4 / 3 while nodes of a release that reads only that one still serve docs (a rolling upgrade: docs/operations.md)."),
    ]

    static let yjs: [ConfigOption] = [
        .node(
            "yjs-max-message-bytes", \.yjsMaxMessageBytes, .byteCount, bounds: .within(1024...(256 << 20)), unit: .bytes,
            section: .yjs, featured: true,
            help: "Largest y-protocols message from a Yjs client (an update, a step 2); larger closes it with 1009 (so do frames over 4 × --max-message-bytes)."),
        .node(
            "yjs-max-room-bytes", \.yjsMaxRoomBytes, .byteCount, bounds: .within(1024...(1 << 40)), unit: .bytes, section: .yjs,
            featured: true,
            help: "Bytes one Yjs room may hold in Redis (snapshot plus log); an update beyond closes its sender with 4413."),
        .node(
            "yjs-update-rate", \.yjsUpdateRate, .integer(), bounds: .within(1...100_000), unit: .perSecond, section: .yjs,
            help: "Updates one Yjs connection may send per second (bursts of 2 s worth); faster closes it with 1008."),
        .node(
            "yjs-relay-ms", \.yjsRelayMs, .integer("ms"), bounds: .within(0...100), unit: .milliseconds, section: .yjs,
            help: "A Yjs room relays at once after this long without relaying; updates arriving sooner go to each client together, merged into one update (one frame). 0: each update as its own message."),
        .node(
            "yjs-max-pending-updates", \.yjsMaxPendingUpdates, .integer(), bounds: .within(0...100_000), unit: .count, section: .yjs,
            help: "Updates with missing dependencies (structs past a gap in their client's clocks, waiting for the update that fills it) one Yjs room may hold; one more closes its sender with 4429 and is not stored."),
    ]

    static let redis: [ConfigOption] = [
        .launch(
            "redis", \.redis, .optionalText("url"), section: .redis, featured: true,
            default: "an embedded redis-server",
            help: "redis://HOST:PORT[/DB] or unix:///PATH; for a Redis Cluster, one or more of its nodes, comma-separated (detected by itself). Without it, Tandem runs its own redis-server and stops it on exit."),
        .node(
            "redis-wait-replicas", \.redisWaitReplicas, .integer("n"), bounds: .within(0...16), unit: .count, section: .redis,
            help: "Answer a commit only once this many replicas of its Redis primary have it (WAIT); 0: once the primary has it. See docs/operations.md, durability."),
        .node(
            "redis-wait-timeout-ms", \.redisWaitTimeoutMs, .integer("ms"), bounds: .within(1...2_000), unit: .milliseconds,
            section: .redis,
            help: "How long a commit waits for --redis-wait-replicas; then the pusher gets unavailable (retrying the push is safe). WAIT holds the connection to that primary meanwhile, so this stays well below the 5 s Redis command timeout."),
        .launch(
            "data-dir", \.dataDirectory, .text("path"), section: .redis,
            help: "Where the embedded redis-server keeps its data (AOF on), under redis/."),
        .launch(
            "redis-server", \.redisServer, .text("program"), section: .redis,
            help: "The redis-server program for the embedded Redis."),
        .launch(
            "appendfsync", \.appendFsync, .text("policy"), bounds: .oneOf(["everysec", "always"]), section: .redis,
            help: "Embedded Redis AOF fsync policy."),
        .launch(
            "redis-maxmemory", \.redisMaxMemory, .size, unit: .size, section: .redis, featured: true,
            default: "a quarter of the memory (at least 64 MiB)",
            help: "Embedded Redis maxmemory, with noeviction: when full, pushes get unavailable (0: no limit)."),
    ]

    static let ops: [ConfigOption] = [
        .node(
            "ops-allowed-hosts", \.opsAllowedHosts, .list("hosts"), section: .ops,
            help: "Host names the ops port answers besides IP addresses and localhost, comma-separated; other Hosts get 421 (DNS rebinding); * for any."),
        .launch(
            "ops-token", \.opsToken, .optionalText("token"), section: .ops,
            help: "Bearer token /api/docs/… require (document content, user names). ps shows flags: prefer --ops-token-file or TANDEM_OPS_TOKEN."),
        .launch(
            "ops-token-file", \.opsTokenFile, .optionalText("path"), section: .ops, featured: true,
            help: "File holding the ops token (its first line)."),
        .node(
            "ops-max-connections", \.opsMaxConnections, .integer(), bounds: .within(1...1_000_000), unit: .count,
            section: .ops, help: "Ops-port connections; at the limit a new one closes the one idle longest."),
        .node(
            "ops-max-connections-per-ip", \.opsMaxConnectionsPerIP, .integer(), unit: .count, section: .ops,
            help: "Ops-port connections from one address (IPv6: one /64); beyond it a new one closes that address's connection idle longest (refused if all are mid-request)."),
        .node(
            "ops-idle-timeout-ms", \.opsIdleTimeoutMs, .integer("ms"), bounds: .within(1000...86_400_000),
            unit: .milliseconds, section: .ops, help: "An ops connection without traffic this long is closed (whole seconds)."),
        .node(
            "ops-threads", \.opsThreads, .integer(), bounds: .within(1...64), unit: .count, section: .ops,
            help: "Ops-plane polling threads, shared by every ops connection."),
        .node(
            "ops-max-pending-requests", \.opsMaxPendingRequests, .integer(), bounds: .within(1...100_000), unit: .count,
            section: .ops, help: "Ops requests waiting for Redis at once; more get 503 busy."),
        .node(
            "ops-request-timeout-ms", \.opsRequestTimeoutMs, .integer("ms"), bounds: .within(10...600_000),
            unit: .milliseconds, section: .ops, help: "How long an ops request may wait for Redis before 503 timeout."),
        .node(
            "ops-max-list-items", \.opsMaxListItems, .integer(), bounds: .within(1...1_000_000), unit: .count,
            section: .ops, help: "Docs listed by /api/status, members by /api/docs/{id} (totals always given)."),
        .launch(
            "web-root", \.webRoot, .optionalText("path"), section: .ops, default: "Web if present",
            help: "Files served on the ops port: the Web/ tree (status page at /, demo at /demo/) or one directory served at /."),
    ]

    static let logging: [ConfigOption] = [
        .launch(
            "log-level", \.logLevel, .text("level"),
            bounds: .oneOf(["trace", "debug", "info", "notice", "warning", "error", "critical"]), section: .logging,
            help: "Lowest level logged (to standard error)."),
    ]

    /// Options that name the same thing: one given on the command line means none of the others is taken
    /// from the environment (the command line wins, as for every option).
    static let exclusiveInEnvironment: [Set<String>] = [["jwt-secret", "jwt-secret-file"]]
}

extension ConfigFormat where Value == Int {
    /// A whole number of bytes, shown with its binary size (`8388608 (8.0 MiB)`).
    public static var byteCount: Self {
        Self(
            valueName: "bytes", expectation: "a whole number of bytes", parse: { Int($0) },
            describe: { $0 >= 1024 ? "\($0) (\(OptionValues.describe(bytes: UInt64($0))))" : "\($0)" })
    }
}
