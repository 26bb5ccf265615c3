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

    /// The names a doc's presence writes use, made once per doc (`DocState.presenceKeys`): each tick's
    /// write built three strings of the doc id, heap strings unless the id is tiny (issue 14).
    struct Keys: Sendable {
        /// The doc's channel (node-to-node messages; also the key `RedisCommandClient.isAvailable` hashes).
        let channel: String
        /// This node's hash of the doc's entries.
        let hash: String
        /// The doc's registry of nodes.
        let nodes: String
    }

    func keys(doc: String) -> Keys {
        Keys(channel: RedisKeys.channel(doc), hash: RedisKeys.presence(doc, node: nodeID), nodes: RedisKeys.nodes(doc))
    }

    func write(doc: String, _ write: PresenceWrite, on loop: EventLoop) -> EventLoopFuture<Void> {
        self.write(keys: keys(doc: doc), write, on: loop)
    }

    func write(keys: Keys, _ write: PresenceWrite, on loop: EventLoop) -> EventLoopFuture<Void> {
        var args: [any RedisArgument] = []
        // Sized once (an array literal followed by `reserveCapacity` was allocated twice).
        args.reserveCapacity(7 + write.upserts.count * 2 + write.deletes.count)
        args.append(nodeID)
        args.append(ttlMs)
        args.append(write.full ? "1" : "0")
        args.append(write.refresh ? "1" : "0")
        args.append(keys.channel)
        var ranges: [Range<Int>]?
        let message = write.publish?.encode(upsertRanges: &ranges) ?? []
        args.append(message)
        args.append(write.upserts.count)
        // The message publishes the same entries (`PresenceDoc.takeWrite`): each is spliced from its bytes
        // there rather than encoded once more. Checked, since the bytes must be exactly the entry's.
        var published: [PresenceEntry] = []
        if case .presence(_, let upserts, _, _) = write.publish { published = upserts }
        let spliced = ranges?.count == write.upserts.count && published == write.upserts
        for index in write.upserts.indices {
            args.append(write.upserts[index].sid)
            if spliced, let range = ranges?[index] {
                args.append(EncodedBytes(bytes: message, range: range))
            } else {
                args.append(write.upserts[index])
            }
        }
        for sid in write.deletes { args.append(sid) }
        return redis.evalScript(
            redis.publishing(PresenceScripts.write, sharded: ShardedPublishing.presenceWrite), keys: [keys.hash, keys.nodes], args: args,
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

/// Bytes of an argument that lie in a larger array (an entry inside the node message the same write publishes).
private struct EncodedBytes: RedisArgument {
    let bytes: [UInt8]
    let range: Range<Int>

    func appendRedisArgument(to buffer: inout [UInt8]) {
        bytes.withUnsafeBufferPointer { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: $0[range])) }
    }
}

/// An entry goes into the Redis write as its encoding, spliced straight into the command's buffer.
extension PresenceEntry: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { appendEncoded(to: &buffer) }
}
