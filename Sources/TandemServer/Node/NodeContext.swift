import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
import TandemRedis

/// What the node's servers (WebSocket, ops, housekeeping) share: configuration, metrics, Redis, the shards.
/// Immutable after start-up. Shards and connections do not hold it: they get their collaborators explicitly.
final class NodeContext: Sendable {
    let config: ServerConfiguration
    let metrics: TandemMetrics
    let logger: Logger
    let clock: NodeClock
    let registry = SessionRegistry()
    let redis: any RedisCommandClient
    let subscriber: any RedisChannelSubscriber
    let presenceStore: PresenceStore
    let syncStore: SyncStore
    let storm: ReconnectStormMonitor
    let directory: NodeDirectory
    let sessions: SessionOwnership
    let sampler = StatusSampler()
    let redisMemory: RedisMemoryMonitor
    let startedAt = Date()
    /// Bound ports, set once listening (for the node directory).
    let ports = NIOLockedValueBox((ws: 0, ops: 0))
    /// The doc shards, made here with their collaborators (they hold no reference back to the node).
    let shards: DocShards
    let detachedHold: DetachedSessionHold
    /// The record schemas in force (`--schema-dir`, replaced on reload).
    let schemas: SchemaStore
    /// The Yjs rooms (`/yjs/{room}`): a separate world from the protocol-v1 docs of the same ids.
    let yjsRooms: YjsRooms
    /// Version history (issue 15): reads, and the sealer that fills it from the live log.
    let history: HistoryStore
    let sealer: HistorySealer
    let historyService: HistoryService

    init(
        config: ServerConfiguration, metrics: TandemMetrics, logger: Logger, redis: any RedisCommandClient,
        subscriber: any RedisChannelSubscriber, schemas: SchemaStore, loops: [EventLoop]
    ) {
        self.schemas = schemas
        self.config = config
        self.clock = NodeClock()
        self.metrics = metrics
        self.logger = logger
        self.redis = redis
        self.subscriber = subscriber
        self.presenceStore = PresenceStore(redis: redis, nodeID: config.nodeID, ttlMs: config.presenceTTLMs)
        self.syncStore = SyncStore(
            redis: redis, nodeID: config.nodeID, retention: config.logRetention, maxDocRecords: config.maxDocRecords,
            docTTLMs: config.docTTLMs, logMode: config.syncLogMode == .perCommit ? .perCommit : .batch,
            replicaAcknowledgement: config.redisWaitReplicas > 0
                ? ReplicaAcknowledgement(replicas: config.redisWaitReplicas, timeoutMs: config.redisWaitTimeoutMs, metrics: metrics)
                : nil)
        self.history = HistoryStore(
            redis: redis,
            policy: HistoryStore.policy(
                HistoryPolicy(
                    checkpointEvery: UInt64(config.checkpointEvery), checkpointIntervalMs: UInt64(config.checkpointIntervalMs),
                    retention: UInt64(config.logRetention)),
                format: config.historyFormat),
            retentionMs: UInt64(max(config.historyRetentionMs, 0)), metrics: HistoryMetrics(registry: metrics.registry),
            format: config.historyFormat)
        self.sealer = HistorySealer(store: history, logger: logger)
        self.historyService = HistoryService(store: history, syncStore: syncStore, redis: redis, config: config)
        self.storm = ReconnectStormMonitor(threshold: config.stormThreshold, metrics: metrics, logger: logger)
        self.directory = NodeDirectory(redis: redis)
        self.sessions = SessionOwnership(redis: redis)
        self.redisMemory = RedisMemoryMonitor(
            redis: redis, database: config.redisSeedURLs.first.flatMap { try? RedisEndpoint(url: $0) }?.database ?? 0,
            metrics: metrics, logger: logger)
        metrics.docTTLSeconds.set(to: Double(config.docTTLMs) / 1000)
        self.detachedHold = DetachedSessionHold(graceMs: config.stormResumeGraceMs)
        self.shards = DocShards(
            loops: loops,
            dependencies: DocShardDependencies(
                settings: .init(config), metrics: metrics, clock: clock, logger: logger, presenceStore: presenceStore,
                syncStore: syncStore, redis: redis, subscriber: subscriber, detachedHold: detachedHold,
                schemas: schemas))
        self.yjsRooms = YjsRooms(
            loops: loops,
            dependencies: .init(
                store: YjsStore(redis: redis, maxRoomBytes: config.yjsMaxRoomBytes, ttlMs: config.docTTLMs),
                awarenessStore: YjsAwarenessStore(redis: redis, nodeID: config.nodeID, ttlMs: config.presenceTTLMs),
                nodeID: config.nodeID, presence: config.presenceSettings, tickMs: config.tickMs, sweepMs: config.sweepMs, relayMs: config.yjsRelayMs,
                maxPendingUpdates: config.yjsMaxPendingUpdates,
                subscriber: subscriber, metrics: metrics, clock: clock, logger: logger))
    }

    /// The shard that owns `doc`.
    func shard(for doc: String) -> DocShard { shards.shard(for: doc) }

    var redisIsUp: Bool { redis.isConnected }

    /// This node's entry in the node directory.
    func directoryEntry(docs: Int, sessions: Int, state: String = "serving") -> NodeDirectory.Entry {
        local.directoryEntry(docs: docs, sessions: sessions, state: state)
    }

    /// This node as the directory and the status page describe it.
    var local: LocalNode {
        LocalNode(
            nodeID: config.nodeID, startedAt: startedAt, ports: ports, registry: registry, yjsRooms: yjsRooms,
            redis: redis, subscriber: subscriber, storm: storm)
    }

    /// What the ops routes get (explicitly: they hold no `NodeContext`).
    var opsDependencies: OpsRoutes.Dependencies {
        OpsRoutes.Dependencies(
            settings: .init(config), nodeMetrics: metrics, redis: redis, subscriber: subscriber,
            stores: .init(sync: syncStore, presence: presenceStore, history: history, historyService: historyService,
                           sealer: sealer),
            status: .init(
                local: local, clock: clock, shards: shards, yjsRooms: yjsRooms, sampler: sampler, directory: directory,
                schemas: schemas))
    }

    /// A storm started: keep every lost session resumable for the storm grace (see `DocShards`).
    func holdDetachedSessions() { shards.holdDetachedSessions(nowMs: clock.nowMs()) }

    /// What the WebSocket server gets (explicitly: it holds no `NodeContext`).
    var webSocketDependencies: WebSocketServerDependencies {
        let (metrics, storm) = (self.metrics, self.storm)
        return WebSocketServerDependencies(
            config: config, metrics: metrics, clock: clock, registry: registry, sessions: sessions, shards: shards,
            connection: ConnectionDependencies(
                settings: .init(config), metrics: metrics, clock: clock, logger: logger, registry: registry,
                shard: { [shards] in shards.shard(for: $0) },
                schemaVersion: { [schemas] in schemas.schema(for: $0)?.version },
                reconnectObserved: {
                    metrics.reconnects.increment()
                    storm.record()
                }, history: historyService),
            yjsRooms: yjsRooms, yjsSettings: .init(config), logger: logger)
    }
}
