import NIOCore
import TandemRedis

/// `--redis-wait-replicas`: a commit is answered only once that many replicas of the doc's Redis primary
/// acknowledged it (Redis `WAIT`).
///
/// Redis replicates asynchronously: a primary answers a write before its replicas have it, and a primary
/// that dies before they do takes the write with it when a replica is promoted. `WAIT n timeout` blocks
/// the connection that sent the writes until `n` replicas have everything it wrote, or the timeout ends;
/// it answers how many replicas did. Run on the same connection right after the commit script (the
/// client keeps one connection per primary, and a batch keyed by the doc goes to the doc's primary),
/// it covers that commit and every write before it.
///
/// What it does not promise (Redis's own limits, see docs/operations.md): replicas acknowledge receipt,
/// not an fsync; and a failover can still promote a replica that had not acknowledged.
struct ReplicaAcknowledgement: Sendable {
    let replicas: Int
    let timeoutMs: Int
    let metrics: TandemMetrics

    /// Waits until `replicas` replicas of `doc`'s primary have what this node's connection to it wrote.
    /// Fails with `SyncStoreError.notReplicated` when fewer acknowledged within the timeout.
    func acknowledge(doc: String, redis: any RedisCommandClient, on loop: EventLoop) -> EventLoopFuture<Void> {
        let started = NodeClock().nowNanos()
        // The GET routes the batch to the doc's primary (WAIT has no key); it is the doc's clock, unused.
        let batch = [RedisCommand("GET", GroupCommitScript.keys(doc)[0]), RedisCommand("WAIT", replicas, timeoutMs)]
        let (metrics, wanted, timeoutMs) = (self.metrics, replicas, self.timeoutMs)
        return redis.send(batch, on: loop).flatMapThrowing { replies in
            metrics.redisWaitSeconds.record(Double(NodeClock().nowNanos() - started) / 1e9)
            guard replies.count == 2 else { throw SyncStoreError.unexpectedReply("\(replies)") }
            if case .error(let message) = replies[1] { throw RedisError.server(message) }
            let acknowledged = Int(clamping: replies[1].int ?? 0)
            guard acknowledged >= wanted else {
                metrics.redisWaitTimeouts.increment()
                throw SyncStoreError.notReplicated(acknowledged: acknowledged, wanted: wanted, timeoutMs: timeoutMs)
            }
        }
    }
}
