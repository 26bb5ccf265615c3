import Logging
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
import TandemRedis

/// Everything a `DocShard` works with besides its docs, handed over explicitly when it is made: the
/// slice of configuration it reads, its Redis stores and channel subscriptions, metrics, clock, logger
/// and the node-wide hold on detached sessions. No back-reference to the node.
struct DocShardDependencies: Sendable {
    /// The configuration a shard reads (a slice of `ServerConfiguration`).
    struct Settings: Sendable {
        var nodeID: String
        var tickMs: Int
        var tickPhases: Int
        var presenceStretchLagMs: Int
        var presenceAlwaysPublish: Bool
        var presenceHandoffBatches: Int
        var sweepMs: Int
        var reconcileMs: Int
        var checksumCheckMs: Int
        var presenceTTLMs: Int
        var stormResumeGraceMs: Int
        var maxPendingRequests: Int
        var maxPushBytes: Int
        var maxLoopLagMs: Int
        var maxPushWaitMarginMs: Int
        /// A push's ops are parsed on the shard, once admitted, to the message's depth limit.
        var maxJSONDepth: Int
        var presenceSettings: PresenceSettings
        var pushPipelineSettings: PushPipelineSettings
        /// --commit-round-max-docs: most docs' group commits in one commit round (1: one call per doc).
        var commitRoundMaxDocs: Int
        /// Loop lag from which commits decided in a commit's reply wait for the doorbell (`CommitRound`).
        var commitRoundDoorbellMinLagNanos: Double

        init(_ config: ServerConfiguration) {
            nodeID = config.nodeID
            tickMs = config.tickMs
            tickPhases = config.tickPhases
            presenceStretchLagMs = config.presenceStretchLagMs
            presenceAlwaysPublish = config.presenceAlwaysPublish
            presenceHandoffBatches = config.presenceHandoffBatches
            sweepMs = config.sweepMs
            reconcileMs = config.reconcileMs
            checksumCheckMs = config.checksumCheckMs
            presenceTTLMs = config.presenceTTLMs
            stormResumeGraceMs = config.stormResumeGraceMs
            maxPendingRequests = config.maxPendingRequests
            maxPushBytes = config.maxPushBytes
            maxLoopLagMs = config.maxLoopLagMs
            maxPushWaitMarginMs = config.maxPushWaitMarginMs
            maxJSONDepth = config.limits.maxJSONDepth
            presenceSettings = config.presenceSettings
            pushPipelineSettings = config.pushPipelineSettings
            commitRoundMaxDocs = config.commitRoundMaxDocs
            commitRoundDoorbellMinLagNanos = config.commitRoundDoorbellMinLagNanos
        }
    }

    var settings: Settings
    var metrics: TandemMetrics
    var clock: NodeClock
    var logger: Logger
    var presenceStore: PresenceStore
    var syncStore: SyncStore
    /// The command connection (only asked whether it is up: writes are skipped while it is not).
    var redis: any RedisCommandClient
    /// The pub/sub connection the shard subscribes its docs' channels on.
    var subscriber: any RedisChannelSubscriber
    /// Whether detached sessions currently get the storm grace (node-wide, see `DetachedSessionHold`).
    var detachedHold: DetachedSessionHold
    /// The record schemas: a doc's pipeline decides every push against its schema.
    var schemas: SchemaStore
}

/// Until when detached sessions are kept resumable for the storm grace instead of the presence TTL:
/// node-wide (handshake refusals and storms set it, every shard reads it), so it is a lock, not loop state.
final class DetachedSessionHold: Sendable {
    /// A hold is renewed only once it has this much less than the full grace left: refused handshakes
    /// arrive by the thousand, the shards need hearing about it at most twice a second.
    static let renewalMs: UInt64 = 500

    let graceMs: UInt64
    private let untilMs = NIOLockedValueBox<UInt64>(0)

    init(graceMs: Int) { self.graceMs = UInt64(graceMs) }

    /// True while detached sessions get the longer storm grace.
    func isHolding(nowMs: UInt64) -> Bool { nowMs < untilMs.withLockedValue { $0 } }

    /// Extends the hold to `nowMs + graceMs`; returns the new end when it moved by more than
    /// `renewalMs` (the shards are told), nil when nothing needs telling.
    func renew(nowMs: UInt64) -> UInt64? {
        let until = nowMs + graceMs
        return untilMs.withLockedValue { current -> UInt64? in
            guard current + Self.renewalMs < until else { return nil }
            current = until
            return until
        }
    }
}

/// The node's doc shards, one per event loop, and which one owns a doc.
final class DocShards: Sendable {
    let all: [DocShard]
    private let detachedHold: DetachedSessionHold

    /// - Parameter peerLoops: the loops whose connections hand presence to the shards (nil: the shards' own).
    init(loops: [EventLoop], peerLoops: [EventLoop]? = nil, dependencies: DocShardDependencies) {
        all = loops.enumerated().map {
            DocShard(index: $0.offset, eventLoop: $0.element, peerLoops: peerLoops ?? loops, dependencies: dependencies)
        }
        detachedHold = dependencies.detachedHold
    }

    /// Handshakes are being refused (or a storm started): keep every lost session resumable for the
    /// storm grace. The shards hear of it at most twice a second, whatever the refusal rate.
    func holdDetachedSessions(nowMs: UInt64) {
        guard let until = detachedHold.renew(nowMs: nowMs) else { return }
        for shard in all { shard.holdDetached(untilMs: until) }
    }

    /// The record schemas were reloaded: every loaded doc decides its next pushes against its new schema.
    /// Completes once every shard's docs use the new schemas.
    func schemasChanged(_ schemas: SchemaStore) async {
        for shard in all { try? await shard.schemasChanged(schemas).get() }
    }

    /// The shard that owns `doc` (FNV-1a of the id, so every connection agrees without coordination).
    func shard(for doc: String) -> DocShard {
        var hash = Self.fnvOffsetBasis
        for byte in doc.utf8 {
            hash ^= UInt64(byte)
            hash &*= Self.fnvPrime
        }
        return all[Int(hash % UInt64(all.count))]
    }

    /// 64-bit FNV-1a parameters (the placement of docs on shards depends on them: never change them).
    static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x100_0000_01b3
}
