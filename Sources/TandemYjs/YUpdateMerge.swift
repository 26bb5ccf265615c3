extension Yjs {
    /// Yjs `mergeUpdates` (updates.js `mergeUpdatesV2` with the v1 coders) on decoded updates.
    ///
    /// Structs from every update are written in (client descending, clock ascending) order;
    /// a struct that overlaps what was already written is cut at the overlap, one that is covered
    /// entirely is dropped, and a gap in a client's clocks becomes a Skip, so the result holds
    /// everything any input holds, once. Skips in the inputs are ignored. Adjacent GCs are joined
    /// into one; items are never joined (Yjs's `Item.mergeWith` needs the items to be linked in a
    /// document, which lazily read items are not). Delete sets are merged per client: sorted,
    /// overlapping and touching ranges joined, clients in descending order.
    ///
    /// A single update is returned as it is, as Yjs does.
    ///
    /// Where two inputs hold the same clock as different kinds (an item in one, a GC in another:
    /// a client that has garbage-collected a deleted item sends it as a GC), Yjs's comparator says
    /// each comes first, so which one Yjs writes is whatever V8's sort makes of that. Tandem takes
    /// the one a stable sort would (the earlier input, or the reader that moved last). Either way
    /// the document is the same: a GC's range is always in a delete set, so the item is deleted.
    public static func mergeUpdates(_ updates: [YUpdate]) -> YUpdate {
        if updates.count == 1 { return updates[0] }
        // Yjs's LazyStructReader with filterSkips = true, one per update.
        var readers = updates.map { Reader(structs: $0.structs.filter { !$0.isSkip }) }
        var heap = YStructHeap()
        for (index, reader) in readers.enumerated() {
            if let current = reader.current { heap.insertInitial(reader: index, id: current.id) }
        }
        var writer = YUpdateWriter()
        var pending: YStruct?  // Yjs's `currWrite`

        while let index = heap.popFirst() {
            defer {
                if let current = readers[index].current { heap.reinsert(reader: index, id: current.id) }
            }
            // Every reader in the heap has a current struct.
            let firstClient = readers[index].current!.id.client
            if var written = pending {
                var current = readers[index].current
                var iterated = false
                // Skip what was written already (higher clients come first).
                while let struct_ = current, struct_.endClock <= written.endClock, struct_.id.client >= written.id.client {
                    current = readers[index].advance()
                    iterated = true
                }
                guard var next = current, next.id.client == firstClient,
                    !(iterated && next.id.clock > written.endClock)
                else {
                    // This reader is done, moved on to another client, or jumped past a gap that
                    // another reader may fill: sort again.
                    continue
                }
                if firstClient != written.id.client {
                    writer.write(written)
                    pending = next
                    readers[index].advance()
                } else if written.endClock < next.id.clock {
                    // A gap before `next`.
                    if case .skip(let id, _) = written {
                        pending = .skip(id, length: next.endClock - id.clock)
                    } else {
                        writer.write(written)
                        pending = .skip(YID(client: firstClient, clock: written.endClock), length: next.id.clock - written.endClock)
                    }
                } else {
                    let overlap = written.endClock - next.id.clock
                    if overlap > 0 {
                        if case .skip(let id, let length) = written {
                            // Prefer cutting the Skip: the other struct holds content.
                            written = .skip(id, length: length - overlap)
                            pending = written
                        } else {
                            next = next.suffix(from: overlap)
                        }
                    }
                    if case .gc(let id, let length) = written, case .gc(_, let nextLength) = next {
                        pending = .gc(id, length: length + nextLength)
                    } else {
                        writer.write(written)
                        pending = next
                        readers[index].advance()
                    }
                }
            } else {
                pending = readers[index].current
                readers[index].advance()
            }
            // Write on from this reader while its structs follow on without a gap.
            while let next = readers[index].current, next.id.client == firstClient,
                next.id.clock == pending!.endClock, !next.isSkip
            {
                writer.write(pending!)
                pending = next
                readers[index].advance()
            }
        }
        if let last = pending { writer.write(last) }
        return writer.finish(deleteSet: YDeleteSet.merged(updates.map(\.deleteSet)))
    }

    /// Yjs `mergeUpdates` on encoded v1 updates. Every input is decoded (and so validated) first;
    /// a single update comes back as it is.
    public static func mergeUpdates(_ updates: [[UInt8]], limits: YDecodingLimits = YDecodingLimits()) throws(YDecodingError) -> [UInt8] {
        var decoded: [YUpdate] = []
        decoded.reserveCapacity(updates.count)
        for update in updates { decoded.append(try YUpdate(decoding: update, limits: limits)) }
        if updates.count == 1 { return updates[0] }
        return self.mergeUpdates(decoded).encoded()
    }

    /// A forward-only cursor over one update's structs.
    struct Reader {
        let structs: [YStruct]
        var index = 0

        init(structs: [YStruct]) {
            self.structs = structs
        }

        var current: YStruct? { self.index < self.structs.count ? self.structs[self.index] : nil }

        @discardableResult
        mutating func advance() -> YStruct? {
            self.index += 1
            return self.current
        }
    }
}
