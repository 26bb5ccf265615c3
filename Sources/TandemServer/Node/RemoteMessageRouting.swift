import TandemCore

extension DocShard {
    /// Another node's message for one of this shard's docs, decoded off the pub/sub connection.
    struct RemoteMessage: Sendable {
        var message: NodeMessage
        var doc: String
        /// When it came off the pub/sub connection (`NodeClock.nowNanos`).
        var arrivedNanos: UInt64
    }

    /// Applies `messages` in order on the shard's loop, in one hop.
    func received(_ messages: [RemoteMessage]) {
        onLoop {
            // On the loop now: each `received` runs inline (its own `onLoop` does not hop again).
            for index in messages.indices {
                self.received(messages[index].message, doc: messages[index].doc, arrivedNanos: messages[index].arrivedNanos)
            }
        }
    }
}

/// The messages of one pub/sub read grouped by the shard of their doc, in arrival order within each shard
/// (the order that matters: a doc's messages all go to its one shard).
struct RemoteMessageRouting {
    /// A node has a few shards (one per event loop): a list searched by identity beats a dictionary.
    private var groups: [(shard: DocShard, messages: [DocShard.RemoteMessage])] = []

    mutating func append(_ message: DocShard.RemoteMessage, to shard: DocShard) {
        if let index = groups.firstIndex(where: { $0.shard === shard }) {
            groups[index].messages.append(message)
        } else {
            groups.append((shard, [message]))
        }
    }

    /// One hop per shard.
    func send() {
        for group in groups { group.shard.received(group.messages) }
    }
}
