/// What the Yjs room state machine (`YjsRoomMachine`) gets from the room's storage (TandemServer's
/// `YjsStore`, Lua scripts over `tandem:yjs:{room}:*`).

/// What `YjsStore.load` read.
public struct YjsLoadedRoom: Sendable, Equatable {
    public var seq: Int64
    public var base: Int64
    public var snapshot: [UInt8]?
    /// Updates `base+1 … seq`.
    public var entries: [[UInt8]]

    public init(seq: Int64, base: Int64, snapshot: [UInt8]?, entries: [[UInt8]]) {
        self.seq = seq
        self.base = base
        self.snapshot = snapshot
        self.entries = entries
    }
}

/// One update as published on the room's channel.
public struct YjsPublishedUpdate: Sendable, Equatable {
    public var seq: Int64
    /// Redis's wall clock when it was appended (for the sync lag).
    public var appendedAtMs: UInt64?
    public var update: [UInt8]

    public init(seq: Int64, appendedAtMs: UInt64?, update: [UInt8]) {
        self.seq = seq
        self.appendedAtMs = appendedAtMs
        self.update = update
    }

    /// Parses a channel message, `SEQ WALLMS UPDATE`.
    public init?(payload: [UInt8]) {
        guard let first = payload.firstIndex(of: UInt8(ascii: " ")),
            let second = payload[(first + 1)...].firstIndex(of: UInt8(ascii: " ")),
            let seq = Int64(String(decoding: payload[..<first], as: UTF8.self)),
            let ms = UInt64(String(decoding: payload[(first + 1)..<second], as: UTF8.self))
        else { return nil }
        self.seq = seq
        self.appendedAtMs = ms
        self.update = Array(payload[(second + 1)...])
    }
}
