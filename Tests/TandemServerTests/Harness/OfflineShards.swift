import Logging
import NIOCore
import TandemRedis
@testable import TandemServer

/// Doc shards on one in-memory loop whose Redis clients are never started: every command fails at once
/// (`notConnected`), as with Redis out of reach. For the connection- and handshake-layer tests, which run
/// without Redis or sockets.
struct OfflineShards {
    let redis: RedisClient
    let subscriber: RedisSubscriber
    let shards: DocShards

    /// - Parameter peerLoops: other loops whose connections use the shard (as a node's other event loops).
    init(config: ServerConfiguration, metrics: TandemMetrics, clock: NodeClock, logger: Logger, loop: EventLoop, peerLoops: [EventLoop] = []) throws {
        redis = try RedisClient(url: config.redisURL)
        subscriber = RedisSubscriber(
            configuration: RedisSubscriber.Configuration(endpoint: try RedisEndpoint(url: config.redisURL)) { _, _ in })
        shards = DocShards(
            loops: [loop], peerLoops: [loop] + peerLoops,
            dependencies: DocShardDependencies(
                settings: .init(config), metrics: metrics, clock: clock, logger: logger,
                presenceStore: PresenceStore(redis: redis, nodeID: config.nodeID, ttlMs: config.presenceTTLMs),
                syncStore: SyncStore(
                    redis: redis, nodeID: config.nodeID, retention: config.logRetention,
                    maxDocRecords: config.maxDocRecords, docTTLMs: config.docTTLMs, logMode: .batch),
                redis: redis, subscriber: subscriber,
                detachedHold: DetachedSessionHold(graceMs: config.stormResumeGraceMs),
                schemas: try SchemaStore(directory: nil, metrics: metrics)))
    }
}
