import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
import TandemRedis

/// What connections and shards share on a node: configuration, metrics, Redis, the shards themselves.
/// Immutable after start-up (the shards are created here so they can point back to it).
final class NodeContext: Sendable {
    let config: ServerConfiguration
    let metrics: TandemMetrics
    let logger: Logger
    let clock = NodeClock()
    let registry = SessionRegistry()
    let redis: RedisClient
    let subscriber: RedisSubscriber
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
    private let shardsBox: SetOnceShards

    init(
        config: ServerConfiguration, metrics: TandemMetrics, logger: Logger, redis: RedisClient,
        subscriber: RedisSubscriber, loops: [EventLoop]
    ) {
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.redis = redis
        self.subscriber = subscriber
        self.presenceStore = PresenceStore(redis: redis, nodeID: config.nodeID, ttlMs: config.presenceTTLMs)
        self.syncStore = SyncStore(
            redis: redis, nodeID: config.nodeID, retention: config.logRetention, maxDocRecords: config.maxDocRecords,
            docTTLMs: config.docTTLMs)
        self.storm = ReconnectStormMonitor(threshold: config.stormThreshold, metrics: metrics, logger: logger)
        self.directory = NodeDirectory(redis: redis)
        self.sessions = SessionOwnership(redis: redis)
        self.redisMemory = RedisMemoryMonitor(redis: redis, metrics: metrics, logger: logger)
        self.shardsBox = SetOnceShards()
        shardsBox.set(loops.enumerated().map { DocShard(index: $0.offset, eventLoop: $0.element, node: self) })
    }

    var shards: [DocShard] { shardsBox.shards }

    /// Breaks the context ↔ shards cycle once the node has stopped, so that a stopped node is freed. Only
    /// after every component that reaches the shards (connections, event loops, Redis callbacks, the ops
    /// server, housekeeping) has stopped: `shard(for:)` needs at least one shard.
    func releaseShards() { shardsBox.release() }

    /// The shard that owns `doc` (FNV-1a of the id, so every connection agrees without coordination).
    func shard(for doc: String) -> DocShard {
        var hash = Self.fnvOffsetBasis
        for byte in doc.utf8 {
            hash ^= UInt64(byte)
            hash &*= Self.fnvPrime
        }
        let shards = self.shards
        return shards[Int(hash % UInt64(shards.count))]
    }

    /// 64-bit FNV-1a parameters (the placement of docs on shards depends on them: never change them).
    static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x100_0000_01b3

    var redisIsUp: Bool { redis.isConnected }

    func subscribe(doc: String) { subscriber.subscribe(RedisKeys.channel(doc)) }
    func unsubscribe(doc: String) { subscriber.unsubscribe(RedisKeys.channel(doc)) }

    /// This node's entry in the node directory.
    func directoryEntry(docs: Int, sessions: Int, state: String = "serving") -> NodeDirectory.Entry {
        let ports = self.ports.withLockedValue { $0 }
        let storm = self.storm.snapshot()
        return NodeDirectory.Entry(
            node: config.nodeID, wsPort: ports.ws, opsPort: ports.ops, connections: registry.count, docs: docs,
            presenceSessions: sessions, redisUp: redis.isConnected, ready: redis.isConnected && subscriber.isConnected,
            storm: storm.inStorm, reconnectsPerSecond: storm.rate, startedAt: startedAt, state: state)
    }

    /// A hold is renewed only once it has this much less than the full grace left: refused handshakes
    /// arrive by the thousand, the shards need hearing about it at most twice a second.
    static let holdRenewalMs: UInt64 = 500

    /// Until when detached sessions are being held (ms of the node clock); see `holdDetachedSessions`.
    private let holdUntilMs = NIOLockedValueBox<UInt64>(0)

    /// True while detached sessions get the longer storm grace (housekeeping renews the hold every
    /// second of a storm, and every refused handshake renews it too).
    var holdingDetached: Bool { clock.nowMs() < holdUntilMs.withLockedValue { $0 } }

    /// Handshakes are being refused (or a storm started): keep every lost session resumable for the
    /// storm grace. At most twice a second, whatever the refusal rate.
    func holdDetachedSessions() {
        let now = clock.nowMs()
        let grace = UInt64(config.stormResumeGraceMs)
        let renew = holdUntilMs.withLockedValue { until -> Bool in
            guard until < now + grace - Self.holdRenewalMs else { return false }
            until = now + grace
            return true
        }
        guard renew else { return }
        for shard in shards { shard.holdDetached(untilMs: now + grace) }
    }

    func reconnectObserved() {
        metrics.reconnects.increment()
        storm.record()
    }
}

/// Holder for the shards (they need the context, the context owns them).
///
/// Written in NodeContext.init before the context is shared, and emptied by `release()` once the node has
/// stopped; read without a lock on every message in between. `@unchecked` because both writes are ordered
/// by something Swift cannot see: the first before any other thread has the context, the second after
/// every thread that reads it (event loops, Redis and ops threads) has been joined.
final class SetOnceShards: @unchecked Sendable {
    private(set) var shards: [DocShard] = []
    func set(_ shards: [DocShard]) { self.shards = shards }
    /// Drops the shards, which point back to the context: without this the two keep each other, and
    /// everything the node holds, alive after it stops (LeakSanitizer reported every stopped node).
    func release() { shards = [] }
}
