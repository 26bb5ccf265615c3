import Testing

@testable import TandemCore

/// A push's ops are delimited when its message is decoded and parsed only once the push is admitted
/// (issue 8: a push refused for overload must not cost the parse of its ops).
@Suite struct DeferredOpsTests {
    let limits = ProtocolLimits()

    func rawOps(_ text: String) throws -> RawJSON {
        guard case .push(_, _, _, let ops) = try ClientMessage.decode(Array(text.utf8), limits: limits) else {
            throw ProtocolError(.badMessage, "not a push")
        }
        return ops
    }

    @Test func opsAreDelimitedExactlyAndParseToWhatTheWholeMessageHeld() throws {
        let ops = #"{"r":["put",{"s":"a}]\"{[","n":[1,{"x":"\\"}],"e":"\u00e9😀"}]}"#
        for text in [
            #"{"t":"push","doc":"d","id":1,"base":0,"ops":\#(ops)}"#,
            #"{"ops":\#(ops),"t":"push","doc":"d","id":1,"base":0}"#,
            #"{ "t" : "push", "doc":"d", "id":1, "base":0, "ops" :  \#(ops)  }"#,
        ] {
            let raw = try rawOps(text)
            #expect(raw.bytes == Array(ops.utf8))
            let whole = try JSONParser.parse(text)
            #expect(try raw.parse() == whole.objectValue?["ops"])
        }
    }

    @Test func malformedOpsPassTheEnvelopeAndFailTheirParse() throws {
        // Balanced but invalid inside: the envelope decodes (a refusal can answer it), the parse does not.
        for ops in [#"{"r":["put",{"a":tru}]}"#, #"{"r" ["put"]}"#, #"{"r":["put",{}],"r":["remove"]}"#, "{\"r\":\"\u{1}\"}"] {
            let raw = try rawOps(#"{"t":"push","doc":"d","id":1,"base":0,"ops":\#(ops)}"#)
            #expect(throws: JSONParseError.self) { try raw.parse() }
        }
    }

    @Test func theEnvelopeIsStillHeldToEveryRule() {
        func code(_ text: String) -> ErrorCode? {
            do {
                _ = try ClientMessage.decode(Array(text.utf8), limits: limits)
                return nil
            } catch {
                return error.code
            }
        }
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":{"r":["put",{}]}"#) == .badMessage)  // unterminated
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":{"a":"}"}"#) == .badMessage)  // the } is in a string
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":{},"ops":{}}"#) == .badMessage)  // duplicate
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":[]}"#) == .badMessage)  // not an object
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":"{}"}"#) == .badMessage)
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":}"#) == .badMessage)
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":{}} x"#) == .badMessage)
        #expect(code(#"{"t":"push","doc":"d","id":1,"base":0,"ops":{} "x":1}"#) == .badMessage)
        // Nesting counts from the message: as deep as the whole message may be, and no deeper.
        let depth = limits.maxJSONDepth
        func nested(_ levels: Int) -> String {
            #"{"t":"push","doc":"d","id":1,"base":0,"ops":{"r":["put",{"a":"#
                + String(repeating: "[", count: levels) + String(repeating: "]", count: levels) + "}]}}"
        }
        // The message, ops, the op's array and the record are 4 levels; the arrays add the rest.
        #expect(code(nested(depth - 4)) == nil)
        #expect(code(nested(depth - 3)) == .badMessage)
        #expect((try? JSONParser.parse(nested(depth - 4), maxDepth: depth)) != nil)
        #expect((try? JSONParser.parse(nested(depth - 3), maxDepth: depth)) == nil)
    }

    @Test func deferredParsingAcceptsExactlyWhatTheWholeMessageParseAccepts() throws {
        // Ops that parse on their own parse within the message (same depth budget), and vice versa.
        let depth = limits.maxJSONDepth
        for levels in [depth - 5, depth - 4, depth - 3] {
            let ops = #"{"r":["put",{"a":"# + String(repeating: "[", count: levels) + String(repeating: "]", count: levels) + "}]}"
            let text = #"{"t":"push","doc":"d","id":1,"base":0,"ops":\#(ops)}"#
            let whole = (try? JSONParser.parse(text, maxDepth: depth)) != nil
            let deferred = (try? rawOps(text)).flatMap { try? $0.parse(maxDepth: depth) } != nil
            #expect(whole == deferred, "\(levels) levels")
        }
    }

    @Test func otherMessagesIgnoreAnOpsField() throws {
        #expect(try ClientMessage.decode(Array(#"{"t":"ping","ops":{"x":nope}}"#.utf8), limits: limits) == .ping)
    }
}
