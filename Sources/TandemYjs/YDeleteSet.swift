/// A range of deleted clocks of one client.
public struct YDeleteRange: Equatable, Hashable, Sendable {
    public var clock: Int
    public var length: Int

    public init(clock: Int, length: Int) {
        self.clock = clock
        self.length = length
    }

    public var endClock: Int { self.clock + self.length }
}

/// The delete set that ends every update (yjs src/utils/DeleteSet.js), as written: clients in wire
/// order, each with its ranges in wire order. Update v1: varUint client count, then per client
/// varUint client, varUint range count, then (varUint clock, varUint length) pairs.
public struct YDeleteSet: Equatable, Sendable {
    public struct ClientRanges: Equatable, Sendable {
        public var client: UInt64
        public var ranges: [YDeleteRange]

        public init(client: UInt64, ranges: [YDeleteRange]) {
            self.client = client
            self.ranges = ranges
        }
    }

    public var clients: [ClientRanges]

    public init(clients: [ClientRanges] = []) {
        self.clients = clients
    }

    public var isEmpty: Bool { self.clients.allSatisfy { $0.ranges.isEmpty } }

    static func decode(from decoder: inout Lib0Decoder) throws(YDecodingError) -> YDeleteSet {
        // A client entry is at least two bytes (client, count); a range too (clock, length).
        let clientCount = try decoder.readCount(minimumBytesEach: 2)
        var clients: [ClientRanges] = []
        clients.reserveCapacity(clientCount)
        for _ in 0..<clientCount {
            let client = try decoder.readVarUInt()
            let rangeCount = try decoder.readCount(minimumBytesEach: 2)
            var ranges: [YDeleteRange] = []
            ranges.reserveCapacity(rangeCount)
            for _ in 0..<rangeCount {
                let offset = decoder.position
                let clock = try decoder.readVarLength()
                let range = YDeleteRange(clock: clock, length: try decoder.readVarLength())
                guard range.endClock <= Int(Lib0Decoder.maxSafeInteger) else {
                    throw YDecodingError(.clockOutOfRange, at: offset)
                }
                ranges.append(range)
            }
            clients.append(ClientRanges(client: client, ranges: ranges))
        }
        return YDeleteSet(clients: clients)
    }

    func encode(to encoder: inout Lib0Encoder) {
        encoder.writeVarUInt(self.clients.count)
        for entry in self.clients {
            encoder.writeVarUInt(entry.client)
            encoder.writeVarUInt(entry.ranges.count)
            for range in entry.ranges {
                encoder.writeVarUInt(range.clock)
                encoder.writeVarUInt(range.length)
            }
        }
    }

    /// Clients with at least one range, in order of first appearance, each with all its ranges
    /// concatenated in wire order (Yjs `readDeleteSet`: a client listed twice collects into one
    /// entry; a client with no ranges gets none).
    private func collectedByClient() -> [ClientRanges] {
        var position: [UInt64: Int] = [:]
        var collected: [ClientRanges] = []
        for entry in self.clients where !entry.ranges.isEmpty {
            if let index = position[entry.client] {
                collected[index].ranges.append(contentsOf: entry.ranges)
            } else {
                position[entry.client] = collected.count
                collected.append(entry)
            }
        }
        return collected
    }

    /// What Yjs's `writeDeleteSet(readDeleteSet(…))` writes: ranges as read, clients in
    /// descending order (diffUpdate copies an update's delete set this way).
    func rewrittenAsYjs() -> YDeleteSet {
        YDeleteSet(clients: self.collectedByClient().sorted { $0.client > $1.client })
    }

    /// Yjs `mergeDeleteSets` then `writeDeleteSet`: per client, the ranges of every set, sorted by
    /// clock and merged where they overlap or touch; clients in descending order.
    static func merged(_ sets: [YDeleteSet]) -> YDeleteSet {
        var byClient: [UInt64: [YDeleteRange]] = [:]
        for set in sets {
            for entry in set.collectedByClient() {
                byClient[entry.client, default: []].append(contentsOf: entry.ranges)
            }
        }
        var clients: [ClientRanges] = []
        clients.reserveCapacity(byClient.count)
        for (client, ranges) in byClient {
            clients.append(ClientRanges(client: client, ranges: Self.sortedAndMerged(ranges)))
        }
        clients.sort { $0.client > $1.client }
        return YDeleteSet(clients: clients)
    }

    /// Yjs `sortAndMergeDeleteSet` for one client. The order among ranges with equal clocks does
    /// not change the result (a merge keeps the furthest end), so any sort will do.
    static func sortedAndMerged(_ ranges: [YDeleteRange]) -> [YDeleteRange] {
        guard ranges.count > 1 else { return ranges }
        let sorted = ranges.sorted { $0.clock < $1.clock }
        var merged: [YDeleteRange] = [sorted[0]]
        merged.reserveCapacity(sorted.count)
        for range in sorted.dropFirst() {
            let last = merged[merged.count - 1]
            if last.endClock >= range.clock {
                merged[merged.count - 1].length = max(last.length, range.endClock - last.clock)
            } else {
                merged.append(range)
            }
        }
        return merged
    }
}
