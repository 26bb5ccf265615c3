/// An awareness update (y-protocols awareness.js `encodeAwarenessUpdate`): varUint entry count,
/// then per entry varUint clientID, varUint clock and varString JSON state, where `null` means the
/// client is gone. States are checked to be JSON, since every receiving client parses them.
public struct YAwarenessUpdate: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var clientID: UInt64
        public var clock: UInt64
        /// The state as JSON text, exactly as received; `null` for a removed client.
        public var stateJSON: String

        public init(clientID: UInt64, clock: UInt64, stateJSON: String) {
            self.clientID = clientID
            self.clock = clock
            self.stateJSON = stateJSON
        }

        /// Whether this entry removes the client (its state is JSON `null`).
        public var isRemoval: Bool { self.stateJSON == "null" }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    public init(decoding bytes: [UInt8], limits: YDecodingLimits = YDecodingLimits()) throws(YDecodingError) {
        var decoder = Lib0Decoder(bytes)
        self = try Self.decode(from: &decoder, limits: limits)
        try decoder.expectEnd()
    }

    static func decode(from decoder: inout Lib0Decoder, limits: YDecodingLimits) throws(YDecodingError) -> YAwarenessUpdate {
        // An entry is at least client, clock and a string length: three bytes.
        let count = try decoder.readCount(minimumBytesEach: 3)
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let clientID = try decoder.readVarUInt()
            let clock = try decoder.readVarUInt()
            let stateOffset = decoder.position
            let state = try decoder.readVarString()
            guard JSONSyntax.isValid(state, maxDepth: limits.maxNestingDepth) else {
                throw YDecodingError(.invalidJSON, at: stateOffset)
            }
            entries.append(Entry(clientID: clientID, clock: clock, stateJSON: state))
        }
        return YAwarenessUpdate(entries: entries)
    }

    public func encoded() -> [UInt8] {
        var encoder = Lib0Encoder()
        self.encode(to: &encoder)
        return encoder.bytes
    }

    func encode(to encoder: inout Lib0Encoder) {
        encoder.writeVarUInt(self.entries.count)
        for entry in self.entries {
            encoder.writeVarUInt(entry.clientID)
            encoder.writeVarUInt(entry.clock)
            encoder.writeVarString(entry.stateJSON)
        }
    }
}
