import NIOCore
import TandemCore

/// Everything a shard holds for one document. Confined to the shard's event loop like the shard itself
/// (futures completing there capture it, hence `@unchecked Sendable`).
final class DocState: @unchecked Sendable {
    /// A local connection in the doc.
    struct Member {
        let connection: ClientConnection
        let role: Role
    }

    /// A join waiting for the doc's first Redis read.
    struct PendingJoin {
        let connection: ClientConnection
        let role: Role
        let state: JSONValue?
        let since: UInt64?
    }

    var presence: PresenceDoc
    /// Document sync: ordered delivery, the replica and the push pipeline (`PushPipeline`); the shard
    /// carries out its actions and nothing else decides pushes.
    var sync: PushPipeline<ObjectIdentifier>
    var members: [ObjectIdentifier: Member] = [:]
    /// Which connection currently owns each local session id (a resumed session may briefly have two).
    var owners: [String: ObjectIdentifier] = [:]
    var loading = true
    var waiting: [PendingJoin] = []
    /// Members that joined before the replica could be read (Redis down), with their `since`.
    var awaitingSync: [ObjectIdentifier: UInt64?] = [:]
    /// The first read of the replica (or a retry after it failed) is in flight. Reloads the pipeline asks
    /// for are its own business (`PushAction.reload`).
    var syncLoadInFlight = false
    /// Sync requests (push, sync, ack) of connections that are not live members yet (the doc is loading,
    /// the joiner's presence is being written, or its catch-up is being read from the Redis log), handled
    /// once they are. At most `--max-pending-requests` per connection; beyond: `unavailable`.
    var earlyRequests: [ObjectIdentifier: [(message: ClientMessage, role: Role, bytes: Int)]] = [:]
    /// The catch-up each member is being sent (a counter per attach): a Redis log read that completes
    /// after a re-join started a newer catch-up is dropped instead of being sent as well.
    var catchUpGeneration: [ObjectIdentifier: UInt64] = [:]
    var nextCatchUpGeneration: UInt64 = 0
    /// The one timer of the doc's pipeline, set for `sync.nextDeadline` (see `DocShard.scheduleSyncTimer`).
    var syncTimer: Scheduled<Void>?
    var syncTimerDeadline: UInt64?
    /// Redis held re-push records of nodes from before group commit when the doc was read: commits check
    /// them (a client may re-push what such a node committed). New nodes never write them.
    var legacyRePushes = true
    /// The pipeline's counters as last turned into metric increments.
    var reportedCounters = PushPipelineCounters()
    var reconcileInFlight = false
    var sweepInFlight = false
    var nextReconcileMs: UInt64 = 0
    /// Until then reconcile does not drop other nodes' sessions missing from Redis: set when the Redis
    /// connection comes back, since Redis may have restarted empty and the other nodes need up to a
    /// presence TTL to re-register theirs (dropping them meanwhile showed every remote session as
    /// `left`, then `joined` again).
    var keepRemoteUntilMs: UInt64 = 0
    /// Users whose session in this doc ended recently (reconnect counting), by end time.
    var recentDepartures: [String: UInt64] = [:]
    /// Members grouped by event loop, rebuilt when membership changes.
    var deliveryGroups: [(EventLoop, editors: [ClientConnection], viewers: [ClientConnection])]?
    var stats = DocStats()

    init(presence: PresenceDoc, sync: PushPipeline<ObjectIdentifier>) {
        self.presence = presence
        self.sync = sync
    }
}

/// Per-doc activity counters for the status page (rates are computed from two readings).
struct DocStats {
    var presenceUpdates: UInt64 = 0
    var pushes: UInt64 = 0
    var conflicts: UInt64 = 0
    /// Recent commit → socket lags of this doc (the last 512, a ring), for its p95 on the status page.
    var lagSamplesMs: [Double] = []
    private var nextLagSample = 0

    mutating func recordLag(_ ms: Double) {
        if lagSamplesMs.count < 512 {
            lagSamplesMs.append(ms)
        } else {
            lagSamplesMs[nextLagSample] = ms
            nextLagSample = (nextLagSample + 1) % 512
        }
    }

    var lagP95Ms: Double? {
        guard !lagSamplesMs.isEmpty else { return nil }
        let sorted = lagSamplesMs.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.95))]
    }
}
