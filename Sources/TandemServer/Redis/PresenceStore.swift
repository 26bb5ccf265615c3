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
        self.write(keys: keys(doc: doc), write, ownSubscribers: -1, on: loop).map { _ in }
    }

    /// - Parameter ownSubscribers: how many of the channel's subscribers are this node (1 while its
    ///   subscription of the doc's channel is confirmed, 0 while it is not): the publish is skipped unless
    ///   Redis counts more (`PresenceScripts.docWrite`). −1: always publish (`--presence-always-publish`;
    ///   and in a cluster, where `PUBSUB NUMSUB` counts only the subscribers of the node it runs on).
    /// - Returns: whether the write published its message (true too when it had none to publish).
    func write(keys: Keys, _ write: PresenceWrite, ownSubscribers: Int, on loop: EventLoop) -> EventLoopFuture<Bool> {
        // `send` of a command carrying its script is `evalScript` (EVALSHA, loaded first, EVAL on NOSCRIPT;
        // in a cluster routed by its keys).
        let own = redis.isClusterMode ? -1 : ownSubscribers
        let script = redis.publishing(PresenceScripts.docWrite, sharded: ShardedPublishing.presenceDocWrite)
        return redis.send(Self.command(script, keys: keys, node: nodeID, ttlMs: ttlMs, ownSubscribers: own, write), on: loop)
            .map { $0.int != 0 }
    }

    /// The write's `EVALSHA` (see `PresenceScripts.write` for what it reads), written straight into the
    /// command: no `[any RedisArgument]` (an existential box per argument, two per entry) and no argument
    /// encoded into a scratch array first (about 24,000 instructions per tick's write in the callgrind
    /// profile of issue 14, most of `DocShard.tick`).
    static func command(
        _ script: RedisScript, keys: Keys, node: String, ttlMs: Int, ownSubscribers: Int, _ write: PresenceWrite
    ) -> RedisCommand {
        var ranges: [Range<Int>]?
        let message = write.publish?.encode(upsertRanges: &ranges) ?? []
        // The message publishes the same entries (`PresenceDoc.takeWrite`): each is spliced from its bytes
        // there rather than encoded once more. Checked, since the bytes must be exactly the entry's.
        let spliced: [Range<Int>]?
        if let ranges, ranges.count == write.upserts.count, case .presence(_, let upserts, _, _) = write.publish,
            upserts == write.upserts
        {
            spliced = ranges
        } else {
            spliced = nil
        }
        // Spliced entries (at least one, one comma between each two) are not sent a second time inside the
        // message: the script puts the message together again from its head, the hash's entries and its
        // tail, and only when it publishes (`PresenceScripts.docWrite`).
        let split: (head: Range<Int>, tail: Range<Int>)?
        if let spliced, let firstRange = spliced.first, let lastRange = spliced.last,
            Self.commaSeparated(spliced, in: message)
        {
            split = (0..<firstRange.lowerBound, lastRange.upperBound..<message.count)
        } else {
            split = nil
        }
        // About what the arguments take (the encoder grows past it if need be): the message, each entry
        // once more (spliced or encoded), the sids, the keys and the small arguments.
        var capacity = 128 + keys.hash.utf8.count + keys.nodes.utf8.count + keys.channel.utf8.count + node.utf8.count
            + (split.map { $0.head.count + $0.tail.count } ?? message.count)
        for index in write.upserts.indices {
            let entry = write.upserts[index]
            capacity += entry.sid.utf8.count + (spliced?[index].count ?? entry.encodedCapacity) + 16
        }
        for index in write.deletes.indices { capacity += write.deletes[index].utf8.count + 8 }
        return RedisCommand(evalSHA: script, capacity: capacity) { out in
            out.write(2)
            out.write(keys.hash)
            out.write(keys.nodes)
            out.write(node)
            out.write(ttlMs)
            out.write(write.full ? "1" : "0")
            out.write(write.refresh ? "1" : "0")
            out.write(keys.channel)
            message.withUnsafeBufferPointer { message in
                if let split {
                    out.appendBulkString(UnsafeBufferPointer(rebasing: message[split.head]))
                } else {
                    out.appendBulkString(message)
                }
                out.write(write.upserts.count)
                out.write(ownSubscribers)
                out.appendBulkString(UnsafeBufferPointer(rebasing: message[split?.tail ?? 0..<0]))
                for index in write.upserts.indices {
                    out.write(write.upserts[index].sid)
                    if let spliced {
                        out.appendBulkString(UnsafeBufferPointer(rebasing: message[spliced[index]]))
                    } else {
                        out.write(write.upserts[index])
                    }
                }
            }
            for index in write.deletes.indices { out.write(write.deletes[index]) }
        }
    }

    /// Whether exactly one comma lies between each two of `ranges` in `message` (how `JSONWriter.array`
    /// separates a message's entries), so the script's `table.concat(entries, ',')` gives those bytes back.
    static func commaSeparated(_ ranges: [Range<Int>], in message: [UInt8]) -> Bool {
        for index in ranges.indices.dropFirst() {
            let gap = ranges[index - 1].upperBound..<ranges[index].lowerBound
            guard gap.count == 1, message[gap.lowerBound] == UInt8(ascii: ",") else { return false }
        }
        return true
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
