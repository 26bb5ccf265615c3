import NIOCore
import TandemCore

/// What one round of a doc's sync actions sends, collected per connection and handed over with one hop
/// per event loop (`flush`).
///
/// A group commit of k pushes in a doc with m members is k × m messages; hopping to a connection's loop
/// once per message cost more than the messages themselves. Per connection the order is the order the
/// messages were added in, which is the pipeline's order: the ordering guarantee rests on it.
struct SyncOutbox {
    enum Item: Sendable {
        /// A result, patch or discard in the doc's ordered stream (`committedAtMs` for commits: lag metric).
        case frame(ByteBuffer, committedAtMs: UInt64?)
        /// A catch-up, produced chunk by chunk as the socket drains.
        case chunks(any CatchUpChunker, CatchUpInfo)
        /// An error answer (carries no clock, so it is written at once rather than queued in the stream).
        case error(ProtocolError)
    }

    private var connections: [ObjectIdentifier: (any DocMember, [Item])] = [:]
    /// Connections in the order they were first added (flushes are deterministic, for tests and logs).
    private var order: [ObjectIdentifier] = []

    var isEmpty: Bool { order.isEmpty }

    mutating func add(_ connection: any DocMember, _ item: Item) {
        let id = ObjectIdentifier(connection)
        if connections[id] == nil {
            connections[id] = (connection, [item])
            order.append(id)
        } else {
            connections[id]!.1.append(item)
        }
    }

    /// Hands everything to the connections' loops (one `execute` per loop) and empties the outbox.
    mutating func flush() {
        guard !order.isEmpty else { return }
        var byLoop: [ObjectIdentifier: (EventLoop, [(any DocMember, [Item])])] = [:]
        var loops: [ObjectIdentifier] = []
        for id in order {
            let entry = connections[id]!
            let loop = entry.0.eventLoop
            let key = ObjectIdentifier(loop)
            if byLoop[key] == nil {
                byLoop[key] = (loop, [entry])
                loops.append(key)
            } else {
                byLoop[key]!.1.append(entry)
            }
        }
        connections.removeAll()
        order.removeAll()
        for key in loops {
            let (loop, deliveries) = byLoop[key]!
            loop.execute {
                for (connection, items) in deliveries { connection.deliverSync(items) }
            }
        }
    }
}
