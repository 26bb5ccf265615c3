import NIOCore
import TandemCore
import TandemRedis

/// Presence in Redis: runs `PresenceScripts` and converts their replies. Futures complete on the loop
/// the caller names (the doc's shard).
final class PresenceStore: Sendable {
    private let redis: any RedisCommandClient
    private let nodeID: String
    private let ttlMs: Int

    init(redis: any RedisCommandClient, nodeID: String, ttlMs: Int) {
        self.redis = redis
        self.nodeID = nodeID
        self.ttlMs = ttlMs
    }

    func write(doc: String, _ write: PresenceWrite, on loop: EventLoop) -> EventLoopFuture<Void> {
        var args: [any RedisArgument] = [
            nodeID, ttlMs, write.full ? "1" : "0", write.refresh ? "1" : "0", RedisKeys.channel(doc),
            write.publish?.encode() ?? [], write.upserts.count,
        ]
        args.reserveCapacity(args.count + write.upserts.count * 2 + write.deletes.count)
        for entry in write.upserts {
            args.append(entry.sid)
            args.append(entry)
        }
        for sid in write.deletes { args.append(sid) }
        return redis.evalScript(
            redis.publishing(PresenceScripts.write, sharded: ShardedPublishing.presenceWrite), keys: [RedisKeys.presence(doc, node: nodeID), RedisKeys.nodes(doc)], args: args,
            on: loop
        ).map { _ in }
    }

    /// Every live entry of the doc, on every node.
    func snapshot(doc: String, on loop: EventLoop) -> EventLoopFuture<[PresenceEntry]> {
        redis.evalScript(PresenceScripts.snapshot, keys: [RedisKeys.nodes(doc)], args: [RedisKeys.presencePrefix(doc)], on: loop)
            .map { value in (value.array ?? []).compactMap { $0.bytes.flatMap(PresenceEntry.init(encoded:)) } }
    }

    /// Removes nodes whose registration expired; returns their names.
    func sweep(doc: String, on loop: EventLoop) -> EventLoopFuture<[String]> {
        redis.evalScript(
            redis.publishing(PresenceScripts.sweep, sharded: ShardedPublishing.presenceSweep), keys: [RedisKeys.nodes(doc)], args: [RedisKeys.presencePrefix(doc), RedisKeys.channel(doc)],
            on: loop
        ).map { value in (value.array ?? []).compactMap(\.string) }
    }
}

/// An entry goes into the Redis write as its encoding, spliced straight into the command's buffer.
extension PresenceEntry: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { appendEncoded(to: &buffer) }
}
