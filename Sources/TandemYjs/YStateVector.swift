/// A state vector (yjs `encodeStateVector`, `decodeStateVector`): for each client, the clock its
/// next struct will have — everything below it is known. v1: varUint entry count, then
/// (varUint client, varUint clock) pairs. Entries keep their wire order, so encoding a decoded
/// state vector gives back its bytes.
public struct YStateVector: Equatable, Sendable {
    public struct Entry: Equatable, Hashable, Sendable {
        public var client: UInt64
        public var clock: Int

        public init(client: UInt64, clock: Int) {
            self.client = client
            self.clock = clock
        }
    }

    public internal(set) var entries: [Entry]

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// The clock known for `client`: 0 when absent; the last entry wins when a client is listed
    /// twice (Yjs reads entries into a Map).
    public subscript(client: UInt64) -> Int {
        self.entries.last { $0.client == client }?.clock ?? 0
    }

    /// Entries as a dictionary, the last entry winning for a repeated client.
    public var clocks: [UInt64: Int] {
        Dictionary(self.entries.map { ($0.client, $0.clock) }, uniquingKeysWith: { _, last in last })
    }

    public init(decoding bytes: [UInt8]) throws(YDecodingError) {
        var decoder = Lib0Decoder(bytes)
        // An entry is at least two bytes.
        let count = try decoder.readCount(minimumBytesEach: 2)
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let client = try decoder.readVarUInt()
            entries.append(Entry(client: client, clock: try decoder.readVarLength()))
        }
        try decoder.expectEnd()
        self.entries = entries
    }

    public func encoded() -> [UInt8] {
        var encoder = Lib0Encoder(reservingCapacity: 1 + self.entries.count * 10)
        encoder.writeVarUInt(self.entries.count)
        for entry in self.entries {
            encoder.writeVarUInt(entry.client)
            encoder.writeVarUInt(entry.clock)
        }
        return encoder.bytes
    }

    /// Yjs `encodeStateVectorFromUpdate`: per client, in the update's order, the end of its
    /// structs counted from clock 0 up to the first gap (a Skip). A client whose structs do not
    /// start at clock 0 gets no entry: the update does not say what precedes them.
    ///
    /// One deliberate difference: when the update's very first struct is a Skip at clock 0, Yjs
    /// counts that Skip as known (its first struct is measured before the Skip check); Tandem,
    /// like yrs, gives that client no entry, since it knows none of those clocks.
    public init(fromUpdate update: YUpdate) {
        var entries: [Entry] = []
        var currentClient: UInt64?
        var currentClock = 0
        var stopCounting = false
        for block in update.structs {
            if block.id.client != currentClient {
                if let client = currentClient, currentClock != 0 {
                    entries.append(Entry(client: client, clock: currentClock))
                }
                currentClient = block.id.client
                currentClock = 0
                stopCounting = block.id.clock != 0
            }
            if block.isSkip { stopCounting = true }
            if !stopCounting { currentClock = block.endClock }
        }
        if let client = currentClient, currentClock != 0 {
            entries.append(Entry(client: client, clock: currentClock))
        }
        self.entries = entries
    }
}
