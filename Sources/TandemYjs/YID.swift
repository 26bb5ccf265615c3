/// A Yjs struct id: the client that created it and its clock (the index of its first element in
/// that client's sequence of inserted elements).
public struct YID: Hashable, Sendable, CustomStringConvertible {
    public var client: UInt64
    public var clock: Int

    public init(client: UInt64, clock: Int) {
        self.client = client
        self.clock = clock
    }

    public var description: String { "\(self.client):\(self.clock)" }

    /// Update v1 writes an id as varUint client, varUint clock.
    static func decode(from decoder: inout Lib0Decoder) throws(YDecodingError) -> YID {
        let client = try decoder.readVarUInt()
        return YID(client: client, clock: try decoder.readVarLength())
    }

    func encode(to encoder: inout Lib0Encoder) {
        encoder.writeVarUInt(self.client)
        encoder.writeVarUInt(self.clock)
    }
}
