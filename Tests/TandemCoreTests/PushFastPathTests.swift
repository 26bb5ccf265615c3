@testable import TandemCore
import Testing

/// The push fast path (issue 8) must decode exactly what the parser decodes, and leave to it everything
/// else (so the errors are the parser's): every generated message is decoded both ways.
struct PushFastPathTests {
    typealias Generator = PresenceFastPathTests.Generator

    static let docs = [
        "\"d1\"", "\"board:42\"", "\"bench-abc-p12\"", "\"bad doc\"", "\"\"", "7", "\"d\\u0031\"", "null",
        "\"" + String(repeating: "x", count: 129) + "\"",
    ]
    static let ids = [
        "1", "42", "-3", "12.5", "1e3", "0", "01", "\"a\"", "\"p-17\"", "\"é\"", "\"a\\\"b\"", "null", "true", "[1]", "{}",
        String(repeating: "9", count: 32), String(repeating: "9", count: 33), "\"" + String(repeating: "i", count: 64) + "\"",
        "\"" + String(repeating: "i", count: 65) + "\"", "-", "1.", "\"\"",
    ]
    static let bases = [
        "0", "1", "17", "123456789", "9007199254740991", "9007199254740992", "18446744073709551616", "-1", "-0", "1.0", "1e2",
        "01", "00", "\"3\"", "null", "", String(repeating: "9", count: 19), String(repeating: "1", count: 18),
    ]

    static func ops(_ g: inout Generator) -> String {
        switch g.int(20) {
        case 0: return "[]"
        case 1: return "\"ops\""
        case 2: return "null"
        case 3: return "{"  // unterminated
        case 4: return #"{"a":"}"#  // a string left open
        case 5: return #"{"a\"":["put",1]}"#
        case 6: return #"{"a":["put","x\\"]}"#
        case 7: return #"{"a":[[[[1]]]]}"#
        case 8: return #"{"a": ["put", 1]}"#
        default:
            // Valid or not inside: only delimited here (parsed once the push is admitted).
            return "{" + (0..<g.int(3)).map { _ in PresenceFastPathTests.string(&g) + ":" + PresenceFastPathTests.value(&g, depth: 2) }
                .joined(separator: ",") + "}"
        }
    }

    static func message(_ g: inout Generator) -> String {
        let types = ["\"push\"", "\"push\"", "\"push\"", "\"sync\"", "\"pus\"", "1"]
        var fields: [String] = []
        fields.append("\"t\":" + g.pick(types))
        // Mostly valid fields (the first few of each list), so that the fast path is reached often.
        if g.chance(97) { fields.append("\"doc\":" + (g.chance(80) ? g.pick(Array(docs.prefix(3))) : g.pick(docs))) }
        if g.chance(97) { fields.append("\"id\":" + (g.chance(80) ? g.pick(Array(ids.prefix(3))) : g.pick(ids))) }
        if g.chance(97) { fields.append("\"base\":" + (g.chance(80) ? g.pick(Array(bases.prefix(5))) : g.pick(bases))) }
        if g.chance(97) { fields.append("\"ops\":" + ops(&g)) }
        if g.chance(4) { fields.append("\"extra\":1") }
        if g.chance(3) { fields.append(g.pick(["\"t\":\"push\"", "\"ops\":{}", "\"base\":1", "\"id\":2", "\"doc\":\"d1\""])) }
        if g.chance(40) { fields.shuffle(using: &g) }
        return "{" + fields.joined(separator: g.chance(97) ? "," : ", ") + (g.chance(97) ? "}" : "} ")
    }

    @Test func generatedMessagesDecodeAsTheParserDecodesThem() {
        var g = Generator(state: 8)
        var limits = ProtocolLimits()
        var fast = 0
        for i in 0..<20_000 {
            limits.maxJSONDepth = g.pick([64, 64, 5, 3, 2, 1])
            let text = Self.message(&g)
            let bytes = Array(text.utf8)
            let decoded = Result { () throws(ProtocolError) in try ClientMessage.decode(bytes, limits: limits) }
            let parsed = Result { () throws(ProtocolError) in try ClientMessage.decodeParsed(bytes, limits: limits) }
            #expect(decoded == parsed, "message \(i) (depth \(limits.maxJSONDepth)): \(text)")
            if let message = bytes.withUnsafeBufferPointer({ PushFastPath.decode($0, limits: limits) }) {
                fast += 1
                // Taken only for what the parser accepts, with the same ops bytes and depth.
                #expect(.success(message) == parsed, "message \(i): \(text)")
            }
        }
        // The generator reaches the fast path often (else this test would prove nothing about it).
        #expect(fast > 2_000, "fast path taken \(fast) times")
    }

    @Test func theClientsPushesTakeTheFastPath() throws {
        let limits = ProtocolLimits()
        for text in [
            #"{"t":"push","doc":"bench-r1-d7","id":12,"base":3051,"ops":{"ed3":["patch",{"f":["put",12]}]}}"#,  // tandem-bench
            #"{"t":"push","doc":"d","id":"p-1","base":0,"ops":{"r":["put",{"x":"a\"b"}]}}"#,
            #"{"base":9,"doc":"board:42","id":7,"ops":{"a":["delete"]},"t":"push"}"#,  // sorted keys
        ] {
            let fast = Array(text.utf8).withUnsafeBufferPointer { PushFastPath.decode($0, limits: limits) }
            let message = try #require(fast, "\(text)")
            #expect(message == (try ClientMessage.decodeParsed(Array(text.utf8), limits: limits)))
        }
        // Whitespace, escapes, a fraction, a missing field: the parser decides.
        for text in [
            #"{"t":"push", "doc":"d","id":1,"base":0,"ops":{}}"#, #"{"t":"push","doc":"d\u0031","id":1,"base":0,"ops":{}}"#,
            #"{"t":"push","doc":"d","id":1,"base":1.0,"ops":{}}"#, #"{"t":"push","doc":"d","id":1,"ops":{}}"#,
        ] {
            #expect(Array(text.utf8).withUnsafeBufferPointer { PushFastPath.decode($0, limits: limits) } == nil, "\(text)")
        }
    }
}
