extension Yjs {
    /// Yjs `diffUpdate` (updates.js `diffUpdateV2` with the v1 coders): what of `update` a peer at
    /// `stateVector` lacks. For each client, from its first struct that reaches past the peer's
    /// clock on, everything of that client is written, the first struct cut at the peer's clock.
    /// A client's leading Skips are dropped. The delete set is copied whole (a peer may lack any
    /// deletion), clients in descending order.
    public static func diffUpdate(_ update: YUpdate, stateVector: YStateVector) -> YUpdate {
        let known = stateVector.clocks
        let structs = Array(update.structs)
        var writer = YUpdateWriter()
        var index = 0
        while index < structs.count {
            let current = structs[index]
            let client = current.id.client
            let knownClock = known[client] ?? 0
            if current.isSkip {
                index += 1
                continue
            }
            if current.endClock > knownClock {
                writer.write(current, offset: max(knownClock - current.id.clock, 0))
                index += 1
                while index < structs.count && structs[index].id.client == client {
                    writer.write(structs[index])
                    index += 1
                }
            } else {
                while index < structs.count && structs[index].id.client == client && structs[index].endClock <= knownClock {
                    index += 1
                }
            }
        }
        return writer.finish(deleteSet: update.deleteSet.rewrittenAsYjs())
    }

    /// Yjs `diffUpdate` on an encoded v1 update and an encoded state vector.
    public static func diffUpdate(
        _ update: [UInt8], stateVector: [UInt8], limits: YDecodingLimits = YDecodingLimits()
    ) throws(YDecodingError) -> [UInt8] {
        let decoded = try YUpdate(decoding: update, limits: limits)
        return self.diffUpdate(decoded, stateVector: try YStateVector(decoding: stateVector)).encoded()
    }
}
