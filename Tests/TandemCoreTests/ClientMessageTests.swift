import Testing
@testable import TandemCore

@Suite struct ClientMessageTests {
    let limits = ProtocolLimits()

    func decode(_ text: String) throws(ProtocolError) -> ClientMessage {
        try ClientMessage.decode(Array(text.utf8), limits: limits)
    }

    func code(_ text: String) -> ErrorCode? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func decodesEveryType() throws {
        #expect(try decode(#"{"t":"join","doc":"d1"}"#) == .join(doc: "d1", state: nil, since: nil))
        #expect(
            try decode(#"{"t":"join","doc":"a.b:c-d_e","state":{"x":1},"since":7}"#)
                == .join(doc: "a.b:c-d_e", state: .object(["x": .number("1")]), since: 7))
        #expect(try decode(#"{"t":"presence","doc":"d","state":{}}"#) == .presence(doc: "d", state: .object([:])))
        #expect(try decode(#"{"t":"leave","doc":"d"}"#) == .leave(doc: "d"))
        #expect(try decode(#"{"t":"ping","extra":true}"#) == .ping)
        #expect(
            try decode(#"{"t":"push","doc":"d","id":3,"base":0,"ops":{}}"#)
                == .push(doc: "d", id: .number("3"), base: 0, ops: RawJSON("{}", depth: 1)))
        #expect(try decode(#"{"t":"sync","doc":"d","from":5,"limit":10}"#) == .sync(doc: "d", from: 5, limit: 10))
        #expect(try decode(#"{"t":"ack","doc":"d","clock":9}"#) == .ack(doc: "d", clock: 9))
    }

    @Test func refusesBadMessages() {
        #expect(code("not json") == .badMessage)
        #expect(code("[1]") == .badMessage)
        #expect(code(#"{"doc":"d"}"#) == .badMessage)
        #expect(code(#"{"t":5}"#) == .badMessage)
        #expect(code(#"{"t":"dance"}"#) == .unknownType)
        #expect(code(#"{"t":"join"}"#) == .badMessage)
        #expect(code(#"{"t":"join","doc":""}"#) == .badMessage)
        #expect(code(#"{"t":"join","doc":"has space"}"#) == .badMessage)
        #expect(code(#"{"t":"join","doc":"{tag}"}"#) == .badMessage)
        #expect(code("{\"t\":\"join\",\"doc\":\"" + String(repeating: "a", count: 129) + "\"}") == .badMessage)
        #expect(code("{\"t\":\"join\",\"doc\":\"" + String(repeating: "a", count: 128) + "\"}") == nil)
        #expect(code(#"{"t":"presence","doc":"d"}"#) == .badMessage)
        #expect(code(#"{"t":"presence","doc":"d","state":[1]}"#) == .badMessage)
        #expect(code(#"{"t":"join","doc":"d","since":-1}"#) == .badMessage)
        #expect(code(#"{"t":"push","doc":"d","id":[1],"base":0,"ops":{}}"#) == .badMessage)
        #expect(code(#"{"t":"push","doc":"d","id":1,"ops":{}}"#) == .badMessage)
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":[]}"#) == .badMessage)
    }

    @Test func refusesOversizedState() {
        let big = String(repeating: "x", count: 1020)
        #expect(code(#"{"t":"presence","doc":"d","state":{"k":"\#(big)"}}"#) == .tooLarge)
        let fits = String(repeating: "x", count: 1016)
        #expect(code(#"{"t":"presence","doc":"d","state":{"k":"\#(fits)"}}"#) == nil)
    }

    @Test func errorsCarryDocAndPushID() throws {
        do {
            _ = try decode(#"{"t":"push","doc":"d","id":"p1","base":"x","ops":{}}"#)
            Issue.record("expected an error")
        } catch {
            #expect(error.doc == "d")
            #expect(error.pushID == .string("p1"))
            let frame = String(decoding: ServerMessage.error(error), as: UTF8.self)
            #expect(frame.contains(#""code":"bad_message""#))
            #expect(frame.contains(#""id":"p1""#))
        }
    }
}

@Suite struct ProtocolVersionNegotiationTests {
    @Test func pathsNameAVersionOfOneToFourDigits() {
        #expect(ProtocolVersion.requested(inPath: "/v1/ws") == 1)
        #expect(ProtocolVersion.requested(inPath: "/v42/ws") == 42)
        #expect(ProtocolVersion.requested(inPath: "/v9999/ws") == 9999)
        for path in ["/v0/ws", "/v01/ws", "/v/ws", "/v10000/ws", "/v1/ws/", "/V1/ws", "/v1/WS", "v1/ws", "/v-1/ws", "/v1x/ws", ""] {
            #expect(ProtocolVersion.requested(inPath: path) == nil, "\(path)")
        }
    }

    @Test func versionsOutsideTheRangeGetTheirCloseCode() {
        #expect(ProtocolVersion.negotiate(1) == .speak(1))
        #expect(ProtocolVersion.negotiate(2).refusal?.code == 4401)
        #expect(ProtocolVersion.negotiate(2).refusal?.reason.hasPrefix("server_too_old") == true)
        #expect(ProtocolVersion.negotiate(0).refusal?.code == 4400)
        #expect(ProtocolVersion.negotiate(1).refusal == nil)
        #expect((ProtocolVersion.negotiate(9999).refusal?.reason.utf8.count ?? 999) <= 123)
    }
}
