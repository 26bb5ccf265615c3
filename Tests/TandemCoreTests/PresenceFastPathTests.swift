@testable import TandemCore
import Testing

/// The presence fast path (issue 14) must decode exactly what the parser decodes, and refuse exactly what
/// it refuses (with the parser's error): every generated message is decoded both ways.
struct PresenceFastPathTests {
    /// A small deterministic generator (SplitMix64), so a failure is reproducible from its seed.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func chance(_ percent: Int) -> Bool { int(100) < percent }
        mutating func pick<T>(_ items: [T]) -> T { items[int(items.count)] }
    }

    static let strings = [
        "a", "b", "x", "y", "cursor", "sel", "", " ", "A", "Z", "é", "a\\\"b", "\\n", "\\u0041", "\\/", "~", "\u{7F}", "a b",
        "\\u2028", "日本", "ab", "aa", "b1", "\u{1}",
    ]
    static let numbers = ["0", "-0", "1", "12.5", "-3", "1e3", "1E+2", "2.50", "01", "-", "1.", ".5", "1e", "9007199254740993", "-0.0e-0"]

    static func string(_ g: inout Generator) -> String { "\"" + g.pick(strings) + "\"" }

    static func value(_ g: inout Generator, depth: Int) -> String {
        switch g.int(depth > 4 ? 5 : 7) {
        case 0: return g.pick(numbers)
        case 1: return string(&g)
        case 2: return g.pick(["true", "false", "null", "nul", "tru"])
        case 3: return g.pick(numbers)
        case 4: return string(&g)
        case 5: return object(&g, depth: depth + 1)
        default: return "[" + (0..<g.int(4)).map { _ in value(&g, depth: depth + 1) }.joined(separator: g.chance(90) ? "," : " , ") + "]"
        }
    }

    static func object(_ g: inout Generator, depth: Int) -> String {
        var keys = (0..<g.int(5)).map { _ in g.pick(strings) }
        if g.chance(70) { keys.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) } }
        let members = keys.map { "\"" + $0 + "\"" + (g.chance(95) ? ":" : " : ") + value(&g, depth: depth) }
        return "{" + members.joined(separator: g.chance(95) ? "," : ", ") + (g.chance(98) ? "}" : "")
    }

    static func message(_ g: inout Generator) -> String {
        let types = ["\"presence\"", "\"presence\"", "\"presence\"", "\"join\"", "\"presenc\"", "1"]
        let docs = ["\"d1\"", "\"board:42\"", "\"bench-abc-p12\"", "\"bad doc\"", "\"\"", "7", "\"d\\u0031\""]
        let states = ["null", "1", "[]", "\"s\""]
        var fields: [String] = []
        fields.append("\"t\":" + g.pick(types))
        fields.append("\"doc\":" + g.pick(docs))
        if g.chance(95) {
            let state = g.chance(90) ? object(&g, depth: 2) : g.pick(states)
            fields.append("\"state\":" + state)
        }
        if g.chance(5) { fields.append("\"extra\":1") }
        if g.chance(3) { fields.append("\"t\":\"presence\"") }
        if g.chance(40) { fields.shuffle(using: &g) }
        return "{" + fields.joined(separator: ",") + (g.chance(97) ? "}" : "} ")
    }

    func both(
        _ text: String, limits: ProtocolLimits, knownDoc: String? = nil
    ) -> (Result<ClientMessage, ProtocolError>, Result<ClientMessage, ProtocolError>) {
        let bytes = Array(text.utf8)
        let decoded = Result { () throws(ProtocolError) in try ClientMessage.decode(bytes, limits: limits, knownDoc: knownDoc) }
        let parsed = Result { () throws(ProtocolError) in try ClientMessage.decodeParsed(bytes, limits: limits) }
        return (decoded, parsed)
    }

    @Test func generatedMessagesDecodeAsTheParserDecodesThem() {
        var g = Generator(state: 14)
        var limits = ProtocolLimits()
        var fast = 0
        for i in 0..<20_000 {
            limits.maxStateBytes = g.pick([1024, 1024, 40, 2])
            limits.maxJSONDepth = g.pick([64, 64, 3, 2, 1])
            let text = Self.message(&g)
            // The doc the connection decoded last (valid, as any it passes), the same as the message's or not.
            let knownDoc = g.pick([nil, "d1", "board:42", "bench-abc-p12", "d1x"])
            let (decoded, parsed) = both(text, limits: limits, knownDoc: knownDoc)
            #expect(decoded == parsed, "message \(i) (known doc \(knownDoc ?? "none")): \(text)")
            if Array(text.utf8).withUnsafeBufferPointer({ PresenceFastPath.decode($0, limits: limits) }) != nil { fast += 1 }
        }
        // The generator reaches the fast path often (else this test would prove nothing about it).
        #expect(fast > 500, "fast path taken \(fast) times")
    }

    @Test func theClientsMessagesTakeTheFastPath() throws {
        let limits = ProtocolLimits()
        for text in [
            #"{"t":"presence","doc":"d1","state":{"b":1,"n":7,"ts":123456789,"x":12.5,"y":-3}}"#,
            #"{"doc":"board:42","state":{"cursor":[10,20],"sel":null},"t":"presence"}"#,  // TandemKit (sorted keys)
            #"{"t":"presence","doc":"d","state":{}}"#,
        ] {
            let fast = Array(text.utf8).withUnsafeBufferPointer { PresenceFastPath.decode($0, limits: limits) }
            let message = try #require(fast, "\(text)")
            #expect(message == (try ClientMessage.decodeParsed(Array(text.utf8), limits: limits)))
        }
        // Not canonical: the parser decides (and re-serializes).
        for text in [
            #"{"t":"presence","doc":"d","state":{"y":1,"x":2}}"#, #"{"t":"presence","doc":"d","state":{"x": 1}}"#,
            #"{"t":"presence","doc":"d","state":{"x":"é"}}"#, #"{"t":"presence","doc":"d","state":{"x":1,"x":1}}"#,
        ] {
            #expect(Array(text.utf8).withUnsafeBufferPointer { PresenceFastPath.decode($0, limits: limits) } == nil, "\(text)")
        }
    }
}

extension Result where Failure == ProtocolError {
    init(_ body: () throws(ProtocolError) -> Success) {
        do { self = .success(try body()) } catch { self = .failure(error) }
    }
}
