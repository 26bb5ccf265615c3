import Prometheus
import TandemCore

/// Every metric Tandem exports, created once at start-up with fixed label values (never doc or user
/// ids). All Prometheus metric types are thread-safe, so any event loop or libmicrohttpd thread may use
/// them.
public final class TandemMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    // Connections
    // The status page's metrics (`SampledCounter` and friends: their values are read by `statusSnapshot()`).
    public let connections: SampledGauge
    public let connectionsOpened: SampledCounter
    private let connectionsClosed: [CloseReason: SampledCounter]
    public let reconnects: SampledCounter
    public let admissionRejected: [AdmissionRejection: Counter]
    public let reconnectStorm: SampledGauge
    public let handshakesPending: Gauge
    public let handshakeTimeouts: Counter

    // Presence
    public let presenceSessions: Gauge
    /// Local members of docs by presence mode (the join's `"presence"`), created once per mode.
    public let presenceMembers: [PresenceMode: Gauge]
    public let docsActive: Gauge
    private let presenceUpdates: [PresenceUpdateOutcome: SampledCounter]
    public let fanoutMessages: SampledCounter
    /// Other nodes' presence messages, by result: when their changes reached members: `forwarded` at once, `at_tick`
    /// with this node's next tick (over the per-node budget of two per tick, or the doc still loading).
    public let remotePresenceForwarded: Counter
    public let remotePresenceAtTick: Counter
    /// From another node's presence message arriving on the pub/sub connection to its forward written to
    /// this node's members: the hop that crossing nodes adds (issue 11).
    public let remotePresenceForwardDelay: ValueHistogram
    /// The first part of that hop: from the pub/sub connection to the doc's shard running the message.
    public let remotePresenceShardHop: ValueHistogram
    /// The sender's side of a cross-node cursor: from the start of a tick to the reply of the doc's Redis
    /// write, whose script publishes the tick's delta to the other nodes (issue 11).
    public let presencePublish: ValueHistogram
    /// Where a local cursor waits (issue 14): from its read on the connection's loop to the doc's shard
    /// applying it, one in `presenceInboundHopSampleEvery` cross-loop hops…
    public let presenceInboundHop: ValueHistogram
    /// …and from the start of the tick that carries it to the delta flushed to the members on each loop.
    public let presenceDelivery: ValueHistogram
    public let presencePublishSkipped: Counter
    /// Hand-overs of gathered presence batches to a shard on another loop: at the round's end, or once
    /// `--presence-handoff-batches` were gathered.
    public let presenceHandoffsAtRoundEnd: Counter
    public let presenceHandoffsFull: Counter
    public let presenceWritesDeferred: Counter
    public let presenceTicksStretched: Counter
    public let fanoutBytes: Counter
    public let presenceExpired: Counter
    public let presenceTick: ValueHistogram
    public let protocolErrors: [ErrorCode: Counter]

    // Queues
    public let outboundQueueBytes: SampledGauge
    public let redisQueueDepth: SampledGauge
    public let pushQueueDepth: SampledGauge
    public let slowConsumerCoalesced: Counter
    public let earlyRequestsDepth: Gauge
    public let pendingJoinsDepth: Gauge
    public let pongsCoalesced: Counter
    public let catchUpsReplaced: Counter
    private let limitRejections: [ClientLimit: Counter]

    // Redis
    public let redisUp: Gauge
    public let redisCommandSeconds: ValueHistogram
    /// Redis Cluster commands, errors and redirections by shard (made when a shard is first seen).
    let redisShards: RedisShardMetrics
    /// --redis-wait-replicas: time commits waited for replicas, and waits that ended short of them.
    public let redisWaitSeconds: ValueHistogram
    public let redisWaitTimeouts: Counter

    // Sync
    private let syncPushes: [String: SampledCounter]
    public let syncConflicts: SampledCounter
    public let syncConcurrentPushes: Counter
    public let syncLagSeconds: SampledHistogram
    public let syncLagClocks: ValueHistogram
    public let syncPushSeconds: ValueHistogram
    // Group commit and admission (issue 8)
    public let syncBatches: Counter
    public let syncBatchSize: ValueHistogram
    public let syncLostRaces: Counter
    /// Pipelining (`--max-batches-in-flight`): batches sent behind another of their doc, and batches taken
    /// back because one ahead did not leave the state they were decided against.
    public let syncPipelinedBatches: Counter
    public let syncPipelineBreaks: Counter
    /// Commit lingers (`--commit-linger-ms`) by how they ended, and the time they held their docs' queues.
    public let syncCommitLingers: [LingerEnd: Counter]
    public let syncCommitLingerSeconds: Counter
    /// By reason: the push's estimated wait (`--max-push-wait-ms`) or the queue bound (`--max-queued-pushes`).
    public let syncOverloadRefusals: [OverloadRefusal: Counter]
    public let syncRetryAfterSeconds: ValueHistogram
    public let syncPushWaitEstimate: ValueHistogram
    /// From reading an editor's push off its connection to its doc's admission (the hop to the shard's loop).
    public let syncPushReadDelay: ValueHistogram
    /// `sync_push_stage_seconds{stage}`: where a committed push's time in its doc went.
    public let syncPushStageSeconds: [PushStage: ValueHistogram]
    /// `syncPushStageSeconds[.queue]` and `[.commit]`, and `syncPushes` of the decided actions, held
    /// directly: looked up for every result, they were two hashes of an enum and one of a string per commit
    /// (~1,100 instructions; callgrind, issue 8 stop 28).
    public let syncPushQueueStage: ValueHistogram
    public let syncPushCommitStage: ValueHistogram
    /// Admission's whole-path view of each push this node committed (`LoopLoad.answered`), in buckets fine
    /// around --max-push-wait-ms: its time in the node (read → result, plus the loop's lag for its time in
    /// the socket), how much longer than estimated it spent in its doc, and the shards' margins.
    public let syncPushSojourn: ValueHistogram
    public let syncPushOverrun: ValueHistogram
    public let syncAdmissionMargin: ValueHistogram
    private let syncPushesByAction: (commit: SampledCounter, rebase: SampledCounter, discard: SampledCounter)
    public let eventLoopLag: ValueHistogram
    public let syncLogReads: Counter
    public let syncPublishSkipped: Counter
    /// Docs per commit round (`CommitRound`, --commit-round-max-docs): one script call each round.
    public let syncCommitRoundDocs: ValueHistogram
    /// Commit calls (rounds, or one doc's alone) sent at the loop's next tick because they were decided while
    /// a commit's reply was handled on a lagging loop, or behind such calls (`CommitRound`, `LoopDoorbell`).
    public let syncCommitCallsAtDoorbell: Counter
    /// Docs found with a lower head in Redis than the node had seen (commits lost by Redis), reloaded.
    public let syncClockRegressions: Counter
    // Record schemas (issue 13)
    /// Pushes discarded because a record they write would break the doc's schema (`invalid`).
    public let syncInvalidPushes: Counter
    /// Joins refused because the client was built for another schema version (`schema_mismatch`).
    public let schemaMismatches: Counter
    /// Schema files in force (`--schema-dir`).
    public let schemasLoaded: Gauge
    /// `--schema-dir` reloads (SIGHUP), by outcome: a failed one keeps the schemas in force.
    public let schemaReloads: [SchemaReloadOutcome: Counter]
    // Integrity checksums (issue 13)
    /// Divergences found, by who found them: a client's state after a commit did not match the commit's
    /// checksum (`diverged` messages, rate-limited per connection), or a node's replica did not match
    /// Redis's (after a commit, at the periodic check, or Redis's records did not match its own checksum).
    public let syncDivergences: [DivergenceSource: Counter]
    /// Periodic checksum comparisons of a replica with Redis (`--checksum-check-ms`).
    public let syncChecksumChecks: Counter

    // Redis memory and keys (issue 7), read from INFO every 5 s
    public let redisMemoryUsedBytes: Gauge
    public let redisMemoryMaxBytes: Gauge
    public let redisKeys: Gauge
    public let redisKeysWithoutTTL: Gauge
    /// Redis's own work (INFO stats / cpu, every 5 s), as counters from when the node started sampling: with
    /// the commit counters they give Redis commands and Redis CPU per commit.
    public let redisCommandsProcessed: Counter
    public let redisCPUSeconds: Counter
    /// --doc-ttl, set once by the node: with 0 (docs never expire) keys without a TTL are expected, and
    /// TandemRedisKeysWithoutTTL stays quiet (Grafana/alerts.yml).
    public let docTTLSeconds: Gauge

    // Yjs rooms (/yjs/{room}); their updates count in the sync_* metrics, their connections in connections.
    public let yjsRooms: Gauge
    /// Yjs updates sent to Redis and not answered yet (`queue_depth{queue="yjs_appends"}`).
    public let yjsAppendsInFlight: Gauge
    public let yjsCompactions: Counter
    public let yjsRoomReloads: Counter
    /// Yjs updates relayed merged with others of their room (--yjs-relay-ms), and the merged updates sent.
    public let yjsCoalescedUpdates: Counter
    public let yjsCoalescedRelays: Counter
    /// Yjs updates this node's rooms hold while their dependencies are missing (the sum of each room's
    /// `YjsDocument.pendingUpdates`; per room bounded by --yjs-max-pending-updates).
    public let yjsPendingUpdates: Gauge

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), nodeID: String) {
        self.registry = registry
        func name(_ metric: String, _ unit: String = "", _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "tandem", metricName: metric, unitName: unit, helpText: help)
        }
        let latencyBuckets: [Double] = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
        ]

        registry.makeGauge(descriptor: name("node", "info", "Always 1; labels identify the node."), labels: [("node", nodeID)])
            .set(to: 1)

        connections = SampledGauge(registry.makeGauge(descriptor: name("connections", "", "Open client WebSocket connections.")))
        connectionsOpened = SampledCounter(registry.makeCounter(
            descriptor: name("connections_opened", "total", "Client WebSocket connections accepted.")))
        connectionsClosed = Self.sampledCounters(
            registry, name("connections_closed", "total", "Client connections closed, by reason."),
            label: "reason", values: CloseReason.allCases) { $0.rawValue }
        reconnects = SampledCounter(registry.makeCounter(
            descriptor: name(
                "reconnects", "total",
                "Connections that resumed a session or came from a user seen in the same doc within 60 s.")))
        admissionRejected = Self.labeledCounters(
            registry, name("admission_rejected", "total", "WebSocket handshakes refused before the upgrade."),
            label: "reason", values: AdmissionRejection.allCases) { $0.rawValue }
        reconnectStorm = SampledGauge(registry.makeGauge(
            descriptor: name("reconnect_storm", "", "1 while the reconnect rate over 10 s exceeds --storm-threshold.")))
        handshakesPending = registry.makeGauge(
            descriptor: name(
                "handshakes_pending", "", "Client sockets accepted but not upgraded to WebSocket yet (--max-pending-handshakes)."))
        handshakeTimeouts = registry.makeCounter(
            descriptor: name(
                "handshake_timeouts", "total", "Client sockets closed for not completing the upgrade within --handshake-timeout-ms."))

        presenceSessions = registry.makeGauge(
            descriptor: name("presence_sessions", "", "Presence entries (session in a doc) served by this node."))
        let members = name(
            "presence_members", "",
            "Members of docs on this node by presence mode (join \"presence\": full, hidden, none); hidden and none members have no presence entry.")
        presenceMembers = Dictionary(
            uniqueKeysWithValues: PresenceMode.allCases.map { ($0, registry.makeGauge(descriptor: members, labels: [("mode", $0.rawValue)])) })
        docsActive = registry.makeGauge(descriptor: name("docs_active", "", "Docs with members on this node."))
        presenceUpdates = Self.sampledCounters(
            registry, name("presence_updates", "total", "Presence updates received from clients, by result."),
            label: "result", values: [PresenceUpdateOutcome.accepted, .rateLimited, .suppressed, .notJoined, .disabled]) { $0.rawValue }
        let remoteDeltas = name(
            "presence_remote_deltas", "total",
            "Presence messages from other nodes, by result: forwarded to members at once, or at this node's tick.")
        remotePresenceForwarded = registry.makeCounter(descriptor: remoteDeltas, labels: [("result", "forwarded")])
        remotePresenceAtTick = registry.makeCounter(descriptor: remoteDeltas, labels: [("result", "at_tick")])
        remotePresenceForwardDelay = registry.makeValueHistogram(
            descriptor: name(
                "presence_remote_forward", "seconds",
                "Time from another node's presence message arriving on the pub/sub connection to its forward written to this node's members (one per forwarded delta and event loop)."),
            buckets: latencyBuckets)
        remotePresenceShardHop = registry.makeValueHistogram(
            descriptor: name(
                "presence_remote_shard_hop", "seconds",
                "Time from another node's presence message arriving on the pub/sub connection to the doc's shard running it (the first part of tandem_presence_remote_forward_seconds)."),
            buckets: latencyBuckets)
        presenceInboundHop = registry.makeValueHistogram(
            descriptor: name(
                "presence_inbound_hop", "seconds",
                "Time from a presence update read on its connection's event loop to the doc's shard applying it, for updates whose shard is on another loop (one in 16 read bursts)."),
            buckets: latencyBuckets)
        presenceDelivery = registry.makeValueHistogram(
            descriptor: name(
                "presence_delivery", "seconds",
                "Time from the start of a presence tick to its delta written and flushed to the doc's members on one event loop (one per doc, tick and loop)."),
            buckets: latencyBuckets)
        presencePublish = registry.makeValueHistogram(
            descriptor: name(
                "presence_publish", "seconds",
                "Time from the start of a presence tick to the reply of a doc's Redis write that publishes the tick's delta to the other nodes (one per write)."),
            buckets: latencyBuckets)
        let handoffs = name(
            "presence_inbound_handoffs", "total",
            "Hand-overs of the presence batches one event loop gathered for a doc shard on another loop, by reason: round_end (the loop's reads were done) or batches (--presence-handoff-batches were gathered first).")
        presenceHandoffsAtRoundEnd = registry.makeCounter(descriptor: handoffs, labels: [("reason", "round_end")])
        presenceHandoffsFull = registry.makeCounter(descriptor: handoffs, labels: [("reason", "batches")])
        presencePublishSkipped = registry.makeCounter(
            descriptor: name(
                "presence_publish_skipped", "total",
                "Presence writes with a message for other nodes that Redis did not publish because no other node subscribed to the doc's channel (see --presence-always-publish)."))
        presenceWritesDeferred = registry.makeCounter(
            descriptor: name(
                "presence_writes_deferred", "total",
                "Doc ticks whose changed presence states were left for a later Redis write because no other node serves the doc (see --presence-alone-write-ms)."))
        presenceTicksStretched = registry.makeCounter(
            descriptor: name(
                "presence_ticks_stretched", "total",
                "Presence tick phases that started more than --presence-stretch-lag-ms late, so the next phase was scheduled two phase intervals after their work instead of at the fixed rate (the node is behind: fewer, fresher deltas)."))
        fanoutMessages = SampledCounter(registry.makeCounter(
            descriptor: name("presence_fanout_messages", "total", "Presence delta messages written to clients.")))
        fanoutBytes = registry.makeCounter(
            descriptor: name("presence_fanout_bytes", "total", "Bytes of presence delta messages written to clients."))
        presenceExpired = registry.makeCounter(
            descriptor: name("presence_expired", "total", "Presence entries removed because their TTL ran out."))
        presenceTick = registry.makeValueHistogram(
            descriptor: name("presence_tick", "seconds", "Time to run one phase of a shard's presence tick (--tick-phases per tick)."),
            buckets: latencyBuckets)
        protocolErrors = Self.labeledCounters(
            registry, name("protocol_errors", "total", "Error messages sent to clients, by code."),
            label: "code", values: ErrorCode.allCases) { $0.rawValue }

        let depth = name("queue_depth", "", "Work waiting: outbound bytes to clients, Redis commands, pushes.")
        outboundQueueBytes = SampledGauge(registry.makeGauge(descriptor: depth, labels: [("queue", "outbound")]))
        redisQueueDepth = SampledGauge(registry.makeGauge(descriptor: depth, labels: [("queue", "redis")]))
        pushQueueDepth = SampledGauge(registry.makeGauge(descriptor: depth, labels: [("queue", "push")]))
        slowConsumerCoalesced = registry.makeCounter(
            descriptor: name(
                "slow_consumer_coalesced", "total",
                "Presence deltas merged instead of queued because a client's socket was backed up."))
        earlyRequestsDepth = registry.makeGauge(descriptor: depth, labels: [("queue", "early_requests")])
        pendingJoinsDepth = registry.makeGauge(descriptor: depth, labels: [("queue", "pending_joins")])
        pongsCoalesced = registry.makeCounter(
            descriptor: name(
                "pongs_coalesced", "total",
                "Client pings left unanswered because a newer ping was answered instead (RFC 6455 §5.5.3)."))
        catchUpsReplaced = registry.makeCounter(
            descriptor: name(
                "catchups_replaced", "total", "Queued join catch-ups dropped because the client joined the doc again."))
        limitRejections = Self.labeledCounters(
            registry, name("limit_rejections", "total", "Client requests refused for a per-connection bound, by bound."),
            label: "reason", values: ClientLimit.allCases) { $0.rawValue }

        redisUp = registry.makeGauge(
            descriptor: name("redis_up", "", "1 when the Redis command connection is up (in a cluster: every slot's primary)."))
        redisShards = RedisShardMetrics(registry: registry)
        redisCommandSeconds = registry.makeValueHistogram(
            descriptor: name("redis_command", "seconds", "Redis command round-trip time."), buckets: latencyBuckets)
        redisWaitSeconds = registry.makeValueHistogram(
            descriptor: name("redis_wait", "seconds", "Time a commit waited for its replicas' acknowledgement (--redis-wait-replicas)."),
            buckets: latencyBuckets)
        redisWaitTimeouts = registry.makeCounter(
            descriptor: name(
                "redis_wait_timeouts", "total",
                "Commits answered unavailable because fewer than --redis-wait-replicas replicas acknowledged them in --redis-wait-timeout-ms."))

        syncPushes = Self.sampledCounters(
            registry, name("sync_pushes", "total", "Document pushes, by outcome."),
            label: "action", values: ["commit", "rebase", "discard", "error"]) { $0 }
        syncConflicts = SampledCounter(registry.makeCounter(
            descriptor: name("sync_conflicts", "total", "Rebases and discards caused by concurrent changes.")))
        syncInvalidPushes = registry.makeCounter(
            descriptor: name(
                "sync_invalid_pushes", "total", "Pushes discarded because a record they write would break the doc's schema."))
        schemaMismatches = registry.makeCounter(
            descriptor: name("schema_mismatches", "total", "Joins refused because the client stated another schema version."))
        schemasLoaded = registry.makeGauge(descriptor: name("schemas", "", "Record schema files in force (--schema-dir)."))
        syncDivergences = Self.labeledCounters(
            registry,
            name(
                "sync_divergence", "total",
                "Doc states found to differ from their checksum, by who found it: client (a diverged report) or node (a replica or Redis's records)."),
            label: "source", values: DivergenceSource.allCases) { $0.rawValue }
        syncChecksumChecks = registry.makeCounter(
            descriptor: name("sync_checksum_checks", "total", "Periodic comparisons of a doc replica's checksum with Redis's (--checksum-check-ms)."))
        schemaReloads = Self.labeledCounters(
            registry, name("schema_reloads", "total", "Reloads of --schema-dir (SIGHUP), by outcome."),
            label: "result", values: SchemaReloadOutcome.allCases) { $0.rawValue }
        syncConcurrentPushes = registry.makeCounter(
            descriptor: name("sync_concurrent_pushes", "total", "Pushes whose base was behind the head on arrival."))
        // Rendered by the node (`exposition()`), not the registry: see `SampledHistogram`.
        syncLagSeconds = SampledHistogram(
            name("sync_lag", "seconds", "Commit to handed to each subscriber's socket (once it takes writes)."), buckets: latencyBuckets)
        syncLagClocks = registry.makeValueHistogram(
            descriptor: name("sync_lag_clocks", "", "Head clock minus each client's last ack."),
            buckets: [0, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 10000])
        syncPushSeconds = registry.makeValueHistogram(
            descriptor: name("sync_push", "seconds", "Push received to result sent."), buckets: latencyBuckets)
        syncBatches = registry.makeCounter(
            descriptor: name("sync_batches", "total", "Group commits sent to Redis (one script call each)."))
        syncBatchSize = registry.makeValueHistogram(
            descriptor: name("sync_batch_size", "", "Commits per group commit."),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000])
        syncLostRaces = registry.makeCounter(
            descriptor: name(
                "sync_lost_races", "total",
                "Group commits that wrote nothing (another node changed their records first, the doc limit, a re-push) and were decided again."))
        syncPipelinedBatches = registry.makeCounter(
            descriptor: name(
                "sync_pipelined_batches", "total",
                "Group commits sent while another of the same doc was still in Redis (--max-batches-in-flight)."))
        syncPipelineBreaks = registry.makeCounter(
            descriptor: name(
                "sync_pipeline_breaks", "total",
                "Pipelined group commits taken back unanswered because the one ahead lost its race, failed or landed after another node's commit (decided again)."))
        syncCommitLingers = Self.labeledCounters(
            registry,
            name(
                "sync_commit_lingers", "total",
                "Group commits held back on a busy node so that more pushes join them (--commit-linger-ms), by why the linger ended: its deadline passed (deadline) or --commit-linger-pushes waited (pushes)."),
            label: "reason", values: LingerEnd.allCases) { $0.rawValue }
        syncCommitLingerSeconds = registry.makeCounter(
            descriptor: name(
                "sync_commit_linger_seconds", "total",
                "Time docs' first queued pushes lingered for others to join their group commit (--commit-linger-ms), summed."))
        syncOverloadRefusals = Self.labeledCounters(
            registry,
            name(
                "sync_overload_refusals", "total",
                "Pushes refused unavailable with retryAfterMs, by reason: their wait would pass --max-push-wait-ms (wait), --max-queued-pushes were queued (queue_full), the shard's event loop was more than --max-loop-lag-ms behind (loop_lag), the push's time in the node before its doc saw it, added to its wait, passed --max-push-wait-ms (delayed), or it arrived before the retryAfterMs its connection was given for the doc passed (early: refused at the connection; in_flight: at the doc, handed on before the connection heard), or its wait fitted --max-push-wait-ms but not with the shard's admission margin (margin, --max-push-wait-margin-ms)."),
            label: "reason", values: OverloadRefusal.allCases) { $0.rawValue }
        syncRetryAfterSeconds = registry.makeValueHistogram(
            descriptor: name("sync_retry_after", "seconds", "The retryAfterMs hints sent with refused pushes."),
            buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        syncPushWaitEstimate = registry.makeValueHistogram(
            descriptor: name("sync_push_wait_estimate", "seconds", "Estimated wait before its commit of each editor's push, at admission."),
            buckets: latencyBuckets)
        syncPushReadDelay = registry.makeValueHistogram(
            descriptor: name(
                "sync_push_read_delay", "seconds",
                "Time from reading each editor's push off its connection to its doc's admission (counted against --max-push-wait-ms)."),
            buckets: [0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        let stageName = name(
            "sync_push_stage", "seconds",
            "Time of each push committed by this node in its doc, by stage: queued until its group commit was sent to Redis (queue), then until its result was sent in clock order (commit: Redis's round trip and the doc loop's turn). Before: sync_push_read_delay_seconds.")
        syncPushStageSeconds = Dictionary(
            uniqueKeysWithValues: PushStage.allCases.map {
                ($0, registry.makeValueHistogram(descriptor: stageName, labels: [("stage", $0.rawValue)], buckets: latencyBuckets))
            })
        syncPushQueueStage = syncPushStageSeconds[.queue]!
        syncPushCommitStage = syncPushStageSeconds[.commit]!
        let admissionBuckets: [Double] = [
            0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275, 0.3, 0.35, 0.4, 0.5,
            0.75, 1, 2.5,
        ]
        syncPushSojourn = registry.makeValueHistogram(
            descriptor: name(
                "sync_push_sojourn", "seconds",
                "Each push this node committed: read off its connection to its result sent, plus the shard loop's smoothed lag (its time in the socket) — what admission bounds with --max-push-wait-ms."),
            buckets: admissionBuckets)
        syncPushOverrun = registry.makeValueHistogram(
            descriptor: name(
                "sync_push_overrun", "seconds",
                "Each push this node committed: how much longer it spent in its doc (admission to result) than admission estimated (0 if less)."),
            buckets: admissionBuckets)
        syncAdmissionMargin = registry.makeValueHistogram(
            descriptor: name(
                "sync_admission_margin", "seconds",
                "Each shard's admission margin at its loop probes: the p99 overrun kept free of --max-push-wait-ms (at most --max-push-wait-margin-ms)."),
            buckets: admissionBuckets)
        syncPushesByAction = (syncPushes["commit"]!, syncPushes["rebase"]!, syncPushes["discard"]!)
        eventLoopLag = registry.makeValueHistogram(
            descriptor: name(
                "event_loop_lag", "seconds",
                "How late a shard's periodic probe task ran on its event loop (pushes are refused while the smoothed lag passes --max-loop-lag-ms)."),
            buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])
        syncLogReads = registry.makeCounter(
            descriptor: name("sync_log_reads", "total", "Reads of a doc's Redis log to fill a gap or catch up with Redis's head."))
        syncPublishSkipped = registry.makeCounter(
            descriptor: name(
                "sync_publish_skipped", "total",
                "Group commits whose message for other nodes Redis did not publish because no other node subscribed to the doc's channel (always published with a Redis Cluster)."))
        syncCommitRoundDocs = registry.makeValueHistogram(
            descriptor: name(
                "sync_commit_round_docs", "",
                "Docs whose group commits went to Redis in one commit round, one script call (--commit-round-max-docs; a single Redis only)."),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000])
        syncCommitCallsAtDoorbell = registry.makeCounter(
            descriptor: name(
                "sync_commit_calls_at_doorbell", "total",
                "Commit calls to Redis (a round, or one doc's group commit) held for the event loop's next tick because they were decided while a commit's reply was handled on a loop running behind (or, with --max-batches-in-flight above 1, while such calls waited): the loop reads its sockets before it sends them."
            ))
        syncClockRegressions = registry.makeCounter(
            descriptor: name(
                "sync_clock_regressions", "total",
                "Docs whose clock went back in Redis (acknowledged commits lost by a failover or a restore): reloaded, members restarted from a snapshot."
            ))

        redisMemoryUsedBytes = registry.makeGauge(
            descriptor: name("redis_memory_used", "bytes", "Redis used_memory (INFO memory, every 5 s)."))
        redisMemoryMaxBytes = registry.makeGauge(
            descriptor: name(
                "redis_memory_max", "bytes", "Redis maxmemory (0: no limit); at it, writes are refused and pushes get unavailable."))
        redisKeys = registry.makeGauge(descriptor: name("redis_keys", "", "Keys in Tandem's Redis database (INFO keyspace)."))
        redisKeysWithoutTTL = registry.makeGauge(
            descriptor: name(
                "redis_keys_without_ttl", "", "Keys in Tandem's Redis database without an expiry (every key Tandem writes has one)."))
        redisCommandsProcessed = registry.makeCounter(
            descriptor: name(
                "redis_commands_processed", "total",
                "Commands Redis ran, by anyone, those inside scripts included (INFO stats total_commands_processed, every 5 s, since this node started)."))
        redisCPUSeconds = registry.makeCounter(
            descriptor: name(
                "redis_cpu_seconds", "total",
                "CPU time of the Redis server, system and user (INFO cpu, every 5 s, since this node started)."))
        docTTLSeconds = registry.makeGauge(
            descriptor: name("doc_ttl", "seconds", "--doc-ttl: a doc's Redis keys expire this long after its last write (0: never)."))
        yjsRooms = registry.makeGauge(descriptor: name("yjs_rooms", "", "Yjs rooms with clients on this node."))
        yjsAppendsInFlight = registry.makeGauge(descriptor: depth, labels: [("queue", "yjs_appends")])
        yjsCompactions = registry.makeCounter(
            descriptor: name("yjs_compactions", "total", "Yjs room logs merged into their snapshot by this node."))
        yjsRoomReloads = registry.makeCounter(
            descriptor: name(
                "yjs_room_reloads", "total", "Yjs rooms read again from Redis after a gap in their updates (lost pub/sub messages)."))
        yjsCoalescedUpdates = registry.makeCounter(
            descriptor: name(
                "yjs_coalesced_updates", "total", "Yjs updates relayed merged with others of their room (--yjs-relay-ms), one frame per member."))
        yjsCoalescedRelays = registry.makeCounter(
            descriptor: name("yjs_coalesced_relays", "total", "Merged Yjs updates relayed (each stands for several updates)."))
        yjsPendingUpdates = registry.makeGauge(
            descriptor: name(
                "yjs_pending_updates", "",
                "Yjs updates held by this node's rooms while their dependencies are missing (each room at most --yjs-max-pending-updates)."))
    }

    /// One counter per label value, all created now: the label stays bounded to `values`.
    private static func labeledCounters<Key: Hashable>(
        _ registry: PrometheusCollectorRegistry, _ descriptor: MetricNameDescriptor, label: String, values: [Key],
        _ labelValue: (Key) -> String
    ) -> [Key: Counter] {
        Dictionary(uniqueKeysWithValues: values.map { ($0, registry.makeCounter(descriptor: descriptor, labels: [(label, labelValue($0))])) })
    }

    /// `labeledCounters` whose values the node can read (`statusSnapshot()`).
    private static func sampledCounters<Key: Hashable>(
        _ registry: PrometheusCollectorRegistry, _ descriptor: MetricNameDescriptor, label: String, values: [Key],
        _ labelValue: (Key) -> String
    ) -> [Key: SampledCounter] {
        labeledCounters(registry, descriptor, label: label, values: values, labelValue).mapValues(SampledCounter.init)
    }

    /// The status page's metrics, read directly (rendering the exposition for them cost 19 M instructions/s).
    func statusSnapshot() -> MetricsSnapshot {
        func sum<Key>(_ counters: [Key: SampledCounter]) -> Double { counters.values.reduce(0) { $0 + Double($1.value) } }
        return MetricsSnapshot(
            connections: connections.value,
            connectionsOpened: Double(connectionsOpened.value),
            connectionsClosed: sum(connectionsClosed),
            reconnects: Double(reconnects.value),
            presenceUpdates: sum(presenceUpdates),
            presenceFanoutMessages: Double(fanoutMessages.value),
            syncPushes: sum(syncPushes),
            syncConflicts: Double(syncConflicts.value),
            syncLag: syncLagSeconds.buckets,
            outboundQueueBytes: outboundQueueBytes.value,
            redisQueue: redisQueueDepth.value,
            pushQueue: pushQueueDepth.value,
            reconnectStorm: reconnectStorm.value)
    }

    public func connectionClosed(_ reason: CloseReason) { connectionsClosed[reason]!.increment() }
    public func presenceUpdate(_ outcome: PresenceUpdateOutcome, count: Int64 = 1) { presenceUpdates[outcome]!.increment(by: count) }
    public func protocolError(_ code: ErrorCode) { protocolErrors[code]!.increment() }
    public func syncPush(_ action: String) { syncPushes[action]?.increment() }
    public func syncPush(_ action: PushDecision.Action) {
        switch action {
        case .commit: syncPushesByAction.commit.increment()
        case .rebase: syncPushesByAction.rebase.increment()
        case .discard: syncPushesByAction.discard.increment()
        }
    }
    public func clientLimitReached(_ limit: ClientLimit) { limitRejections[limit]!.increment() }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] {
        var bytes = registry.emitToBuffer()
        syncLagSeconds.emit(into: &bytes)
        return bytes
    }
}

/// Why a busy doc refused a push (the `reason` label of tandem_sync_overload_refusals_total).
/// Who found a doc whose state did not match its checksum (`tandem_sync_divergence_total{source}`).
public enum DivergenceSource: String, Sendable, CaseIterable {
    /// A client reported `{"t":"diverged"}`.
    case client
    /// A node: its replica after a commit or at the periodic check, or Redis's records at a load.
    case node
}

/// The stages of `sync_push_stage_seconds`.
public enum PushStage: String, Sendable, CaseIterable {
    /// From the push's admission in its doc to its group commit's send.
    case queue
    /// From the send to Redis to the push's result (in clock order).
    case commit
}

public enum OverloadRefusal: String, Sendable, CaseIterable {
    /// Its estimated wait before its commit was over --max-push-wait-ms.
    case wait
    /// --max-queued-pushes were waiting in the doc.
    case queueFull = "queue_full"
    /// The shard's event loop was more than --max-loop-lag-ms behind (the node is saturated).
    case loopLag = "loop_lag"
    /// The time since its message was read, before its doc saw it, plus its estimated wait in the doc,
    /// was over --max-push-wait-ms (the doc's estimate alone was within it).
    case delayed
    /// Sent before the retryAfterMs its connection was given for the doc passed: refused at the connection
    /// (`PushBackoff`), without reaching the doc.
    case early
    /// Reached the doc before the retryAfterMs the doc had given its member passed — handed on by its
    /// connection before the refusal's answer reached it: refused before admission (`MemberPushBackoff`).
    case inFlight = "in_flight"
    /// Its wait was within --max-push-wait-ms, but not within it less the shard's admission margin
    /// (--max-push-wait-margin-ms: how much longer than estimated accepted pushes lately took).
    case margin
}

/// Why a commit linger ended (the `reason` label of tandem_sync_commit_lingers_total).
public enum LingerEnd: String, Sendable, CaseIterable {
    /// `--commit-linger-ms` passed (or less, what the push's admission bound left).
    case deadline
    /// `--commit-linger-pushes` pushes waited: the batch was worth sending.
    case pushes
}

/// How a reload of `--schema-dir` ended (the `result` label of tandem_schema_reloads_total).
public enum SchemaReloadOutcome: String, Sendable, CaseIterable {
    /// Every file parsed: the new set is in force.
    case ok
    /// A file failed to parse: the schemas in force stay, the error is logged.
    case failed
}
