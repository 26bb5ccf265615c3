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

        /// The frame, if this is one (`ClientConnection.deliverSync` writes runs of them as one buffer).
        var frame: (buffer: ByteBuffer, committedAtMs: UInt64?)? {
            if case .frame(let buffer, let committedAtMs) = self { return (buffer, committedAtMs) }
            return nil
        }
    }

    /// What was added, by the event loop of its connection (loops in order of first use, as many as cores),
    /// each loop's in the order added. Grouped by connection only on the connections' loops (`deliver`): a
    /// busy doc adds a patch for every member for every commit, and a dictionary entry and an array per
    /// member were the largest per-member cost on the doc's own loop (callgrind, issue 8) — the loop a hot
    /// doc saturates first. Grouped by loop as added rather than in `flush`: a hot doc's round is over a
    /// thousand entries, each copied once less (issue 8 stop 25).
    private var byLoop: [(loop: any EventLoop, entries: [(member: any DocMember, item: Item)])] = []

    var isEmpty: Bool { byLoop.isEmpty }

    mutating func add(_ connection: any DocMember, _ item: Item) {
        let loop = connection.eventLoop
        // A linear search: there are as many loops as cores.
        if let i = byLoop.firstIndex(where: { $0.loop === loop }) {
            byLoop[i].entries.append((connection, item))
        } else {
            byLoop.append((loop, [(connection, item)]))
        }
    }

    /// Hands everything to the connections' loops (one `execute` per loop, loops in order of first use)
    /// and empties the outbox.
    mutating func flush() {
        guard !byLoop.isEmpty else { return }
        let byLoop = self.byLoop
        self.byLoop.removeAll()
        for (loop, deliveries) in byLoop {
            loop.execute { Self.deliver(deliveries) }
        }
    }

    /// On the connections' loop: each connection gets its items in one `deliverSync`, in the order they
    /// were added (connections in the order of their first item).
    private static func deliver(_ entries: [(member: any DocMember, item: Item)]) {
        if entries.count == 1 {
            entries[0].member.deliverSync([entries[0].item])
            return
        }
        var batches: [(member: any DocMember, items: [Item])] = []
        batches.reserveCapacity(min(entries.count, 64))
        // Up to `linearGroups` connections they are found by comparing identities (a doc's members on one
        // loop, the common case: a dictionary's hashing and storage cost more than a few comparisons, about
        // 2,800 instructions per commit of scripts/profile-sync.sh's batches of one, issue 8 stop 24); past
        // that, by a dictionary built then (a hot doc's fan-out).
        //
        // Before either, the connection after the previous entry's (cyclically) is tried: a round of k
        // commits is k passes over the doc's members in the same order (each commit's patch to every
        // member but its pusher, and the pusher's result), so that guess finds almost every entry of a hot
        // doc's round with one comparison and no hashing (issue 8 stop 25).
        var index: [ObjectIdentifier: Int]?
        var previous = -1
        for (member, item) in entries {
            let id = ObjectIdentifier(member)
            let next = previous + 1 < batches.count ? previous + 1 : 0
            let found: Int?
            if next < batches.count, ObjectIdentifier(batches[next].member) == id {
                found = next
            } else if let index {
                found = index[id]
            } else {
                found = batches.firstIndex { ObjectIdentifier($0.member) == id }
            }
            if let i = found {
                batches[i].items.append(item)
                previous = i
                continue
            }
            if index == nil && batches.count == Self.linearGroups {
                var built: [ObjectIdentifier: Int] = [:]
                built.reserveCapacity(2 * Self.linearGroups)
                for (i, batch) in batches.enumerated() { built[ObjectIdentifier(batch.member)] = i }
                index = built
            }
            index?[id] = batches.count
            previous = batches.count
            batches.append((member, [item]))
        }
        for (member, items) in batches { member.deliverSync(items) }
    }

    /// Connections per hop grouped by a linear search before a dictionary takes over.
    static let linearGroups = 8
}
