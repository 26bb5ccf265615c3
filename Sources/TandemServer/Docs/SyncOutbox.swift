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

    /// One event loop's part of the round: each item once, and what goes to whom as pairs of indices.
    ///
    /// A hot doc's round is a patch per commit for every member: tens of commits times tens of members.
    /// Stored as an `(any DocMember, Item)` per member per commit, each entry was an existential and an
    /// enum copied in (`add`), grouped by member with two more copies and an array per member on the
    /// members' loop, and copied again there — ~1,200 instructions per frame and member besides writing it
    /// (callgrind, issue 8 stop 27). A shared patch (`share`, `addShared`) is stored once per loop; each of
    /// its recipients costs a pair of 32-bit indices, and the members' loop sorts the pairs by member
    /// (counting, stable: each member's items stay in the order added).
    struct LoopRound: Sendable {
        let loop: any EventLoop
        /// The members, in the order of their first item.
        var members: [any DocMember] = []
        var ids: [ObjectIdentifier] = []
        /// `ids`' positions by identity, once there are more than `linearGroups` members.
        var index: [ObjectIdentifier: Int32]?
        /// The member of the last pair: a round of k commits is k passes over the doc's members in the same
        /// order, so the one after it is tried first (issue 8 stop 25: one comparison for almost every pair).
        var previous = -1
        var items: [Item] = []
        /// (member, item) in the order added.
        var sends: [(member: Int32, item: Int32)] = []
        /// The `items` index of the shared item with tag `sharedTag` (see `share`).
        var sharedItem: Int32 = -1
        var sharedTag: UInt64 = 0

        init(loop: any EventLoop) { self.loop = loop }

        mutating func member(_ connection: any DocMember) -> Int32 {
            let id = ObjectIdentifier(connection)
            let next = previous + 1 < ids.count ? previous + 1 : 0
            let found: Int?
            if next < ids.count, ids[next] == id {
                found = next
            } else if let index {
                found = index[id].map(Int.init)
            } else {
                // Up to `linearGroups` members by comparing identities (a dictionary's hashing and storage
                // cost more than a few comparisons, issue 8 stop 24); past that, by a dictionary built then.
                found = ids.firstIndex(of: id)
            }
            if let found {
                previous = found
                return Int32(truncatingIfNeeded: found)
            }
            let new = ids.count
            members.append(connection)
            ids.append(id)
            if index == nil && ids.count > SyncOutbox.linearGroups {
                var built: [ObjectIdentifier: Int32] = [:]
                built.reserveCapacity(2 * ids.count)
                for (i, id) in ids.enumerated() { built[id] = Int32(truncatingIfNeeded: i) }
                index = built
            } else {
                index?[id] = Int32(truncatingIfNeeded: new)
            }
            previous = new
            return Int32(truncatingIfNeeded: new)
        }

        /// Whether each pair's member is the previous pair's or the next one (see `perMember`).
        var isGrouped: Bool {
            var last: Int32 = 0
            for send in sends where send.member != last {
                guard send.member == last + 1 else { return false }
                last = send.member
            }
            return true
        }

        /// Each member's items, in the order added (members in the order of their first item).
        func perMember(_ body: (any DocMember, [Item]) -> Void) {
            if members.count == 1 {
                body(members[0], sends.map { items[Int($0.item)] })
                return
            }
            // Members are numbered in the order of their first pair, so the pairs are already grouped by
            // member when each pair's member is the one before or the next: a round of one commit (a patch
            // to each member, then the pusher's result), most rounds below a doc's capacity. Then each
            // member's items are a run of `sends`, and the counting sort's three arrays are not needed.
            if isGrouped {
                var k = 0
                for (m, member) in members.enumerated() {
                    var end = k
                    while end < sends.count && Int(sends[end].member) == m { end += 1 }
                    var own: [Item] = []
                    own.reserveCapacity(end - k)
                    for j in k..<end { own.append(items[Int(sends[j].item)]) }
                    body(member, own)
                    k = end
                }
                return
            }
            var start = [Int](repeating: 0, count: members.count + 1)
            for send in sends { start[Int(send.member) + 1] += 1 }
            for i in 0..<members.count { start[i + 1] += start[i] }
            var next = start
            var order = [Int32](repeating: 0, count: sends.count)
            for send in sends {
                let m = Int(send.member)
                order[next[m]] = send.item
                next[m] += 1
            }
            for (m, member) in members.enumerated() {
                var own: [Item] = []
                own.reserveCapacity(start[m + 1] - start[m])
                for k in start[m]..<start[m + 1] { own.append(items[Int(order[k])]) }
                body(member, own)
            }
        }
    }

    /// By the event loop of the connections (loops in order of first use, as many as cores). Grouped by
    /// connection only on the connections' loops (`deliver`): the doc's own loop is the one a hot doc
    /// saturates first (issue 8).
    private(set) var byLoop: [LoopRound] = []
    /// The item `addShared` adds, and its tag (a new one per `share`).
    private var shared: Item?
    private var sharedTag: UInt64 = 0
    /// What each loop's round is sized for when it is made (see `init`).
    private var expectedItems = 0
    private var expectedSends = 0

    var isEmpty: Bool { byLoop.isEmpty }

    init() {}

    /// An outbox whose loop rounds are sized for `items` items and `sends` (member, item) pairs at once,
    /// at most `maxReserved` each: grown pair by pair, a round of a group commit of 9 in a doc of 5
    /// members (45 pairs) was reallocated six times, ~400 instructions each (callgrind, issue 8 stop 28).
    init(expectedItems items: Int, expectedSends sends: Int) {
        expectedItems = min(max(items, 0), Self.maxReserved)
        expectedSends = min(max(sends, 0), Self.maxReserved)
    }

    /// The most items or pairs a round reserves room for in advance (a larger round grows as before).
    static let maxReserved = 4_096

    /// `item` for `connection`, after everything added for it before.
    mutating func add(_ connection: any DocMember, _ item: Item) {
        let r = round(for: connection.eventLoop)
        byLoop[r].items.append(item)
        let m = byLoop[r].member(connection)
        byLoop[r].sends.append((m, Int32(truncatingIfNeeded: byLoop[r].items.count - 1)))
    }

    /// The item the next `addShared` calls add: stored once per loop, however many members get it.
    mutating func share(_ item: Item) {
        shared = item
        sharedTag &+= 1
    }

    /// The item of the last `share` for `connection` (as `add` would, without a copy per member).
    mutating func addShared(_ connection: any DocMember) {
        let r = round(for: connection.eventLoop)
        if byLoop[r].sharedTag != sharedTag || byLoop[r].sharedItem < 0 {
            // Copied out once per loop, not per member (an `Item?` copy is a switch and a retain).
            guard let shared else {
                // Nothing shared since the last flush: a caller's bug (the member would silently miss a
                // frame of its ordered stream). Loud in debug builds and tests; a release node keeps serving.
                assertionFailure("SyncOutbox.addShared without a share since the last flush")
                return
            }
            byLoop[r].items.append(shared)
            byLoop[r].sharedItem = Int32(truncatingIfNeeded: byLoop[r].items.count - 1)
            byLoop[r].sharedTag = sharedTag
        }
        let m = byLoop[r].member(connection)
        byLoop[r].sends.append((m, byLoop[r].sharedItem))
    }

    private mutating func round(for loop: any EventLoop) -> Int {
        // A linear search: there are as many loops as cores.
        if let i = byLoop.firstIndex(where: { $0.loop === loop }) { return i }
        var round = LoopRound(loop: loop)
        round.items.reserveCapacity(expectedItems)
        round.sends.reserveCapacity(expectedSends)
        byLoop.append(round)
        return byLoop.count - 1
    }

    /// Hands everything to the connections' loops (one `execute` per loop, loops in order of first use)
    /// and empties the outbox.
    mutating func flush() {
        guard !byLoop.isEmpty else { return }
        let byLoop = self.byLoop
        self.byLoop.removeAll()
        shared = nil
        for round in byLoop {
            round.loop.execute { Self.deliver(round) }
        }
    }

    /// On the connections' loop: each connection gets its items in one `deliverSync`, in the order they
    /// were added (connections in the order of their first item).
    static func deliver(_ round: LoopRound) {
        round.perMember { member, items in member.deliverSync(items) }
    }

    /// Connections per hop grouped by a linear search before a dictionary takes over.
    static let linearGroups = 8
}
