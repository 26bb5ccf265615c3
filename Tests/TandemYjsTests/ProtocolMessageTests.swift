import Testing

@testable import TandemYjs

@Suite struct ProtocolMessageTests {
    @Test func everyMessageTypeRoundTrips() throws {
        let awareness = YAwarenessUpdate(entries: [
            .init(clientID: 3_000_000_007, clock: 4, stateJSON: #"{"user":{"name":"ä"},"cursor":null}"#),
            .init(clientID: 12, clock: 9, stateJSON: "null"),
        ])
        let messages: [(YProtocolMessage, [UInt8])] = [
            (.syncStep1(stateVector: [0]), [0, 0, 1, 0]),
            (.syncStep2(update: [0, 0]), [0, 1, 2, 0, 0]),
            (.update([0, 0]), [0, 2, 2, 0, 0]),
            (.queryAwareness, [3]),
            (.permissionDenied(reason: "no"), [2, 0, 2, 0x6E, 0x6F]),
            (.awareness(awareness), [1] + { var e = Lib0Encoder(); e.writeVarBytes(awareness.encoded()); return e.bytes }()),
        ]
        for (message, bytes) in messages {
            #expect(message.encoded() == bytes)
            #expect(try YProtocolMessage(decoding: bytes) == message)
        }
        #expect(awareness.entries.map(\.isRemoval) == [false, true])
    }

    @Test(arguments: [
        ("unknown message type", [UInt8(4)], YDecodingError(.unknownMessageType(4), at: 0)),
        ("unknown sync type", [0, 3, 0], YDecodingError(.unknownMessageType(3), at: 1)),
        ("unknown auth type", [2, 1, 0], YDecodingError(.unknownMessageType(1), at: 1)),
        ("payload past the end", [0, 2, 5, 0, 0], YDecodingError(.lengthExceedsInput, at: 2)),
        ("trailing bytes", [0, 0, 1, 0, 9], YDecodingError(.trailingBytes, at: 4)),
        ("query with a payload", [3, 0], YDecodingError(.trailingBytes, at: 1)),
        ("awareness count past the payload", [1, 2, 0x7F, 0x01], YDecodingError(.lengthExceedsInput, at: 2)),
        ("awareness state not JSON", [1, 5, 1, 1, 1, 1, 0x7B], YDecodingError(.invalidJSON, at: 5)),
        ("awareness bytes after the entries", [1, 2, 0, 0], YDecodingError(.trailingBytes, at: 3)),
        ("awareness state not UTF-8", [1, 5, 1, 1, 1, 1, 0xFF], YDecodingError(.invalidUTF8, at: 5)),
        ("empty", [], YDecodingError(.unexpectedEnd, at: 0)),
    ] as [(String, [UInt8], YDecodingError)])
    func hostileMessagesAreRefused(name: String, bytes: [UInt8], error: YDecodingError) {
        #expect(throws: error, "\(name)") { try YProtocolMessage(decoding: bytes) }
    }
}
