@testable import TandemCore
import Testing

/// The node-message fast path (issue 11 item 4) must decode exactly what the parser decodes: every
/// generated message is decoded both ways, and both ways must have been taken often.
struct NodeMessageFastPathTests {
    typealias Generator = PresenceFastPathTests.Generator

    // Each field is usually one a node writes (so whole messages take the fast path often), else odd.
    static let names = ["alice", "c12", "", "a b", "\u{7F}", "node-1"]
    static let oddNames = ["é", "a\\\"b", "\\u0041", "日本", "\\n"]
    static let sids = ["Qm9vb0JhckJhekZvb0Jhcg", "s1", ""]
    static let oddSids = ["a\\\"b", "sid é", "\\/"]
    static let versions = ["1", "42", "0", "9007199254740991"]
    static let oddVersions = ["9007199254740992", "01", "1.0", "-1", "1e2", "18446744073709551616", "\"3\"", "2 "]

    static func quoted(_ s: String) -> String { "\"" + s + "\"" }

    static func field(_ g: inout Generator, _ usual: [String], _ odd: [String]) -> String {
        g.chance(85) ? g.pick(usual) : g.pick(odd)
    }

    static func state(_ g: inout Generator) -> String {
        if g.chance(60) { return "{\"x\":\(g.int(2000)),\"y\":\(g.int(2000))}" }
        return g.chance(95) ? PresenceFastPathTests.object(&g, depth: 4) : g.pick(["null", "[]", "1"])
    }

    static func entry(_ g: inout Generator, node: String) -> String {
        var fields = [
            ("name", quoted(field(&g, names, oddNames))),
            ("node", g.chance(85) ? quoted(node) : quoted(field(&g, names, oddNames))),
            ("role", quoted(field(&g, ["editor", "viewer"], ["admin", "Editor", ""]))),
            ("sid", quoted(field(&g, sids, oddSids))),
            ("state", state(&g)),
            ("user", quoted(field(&g, names, oddNames))),
            ("v", field(&g, versions, oddVersions)),
        ]
        if g.chance(3) { fields.swapAt(g.int(fields.count), g.int(fields.count)) }
        if g.chance(2) { fields.remove(at: g.int(fields.count)) }
        if g.chance(2) { fields.append(("extra", "1")) }
        return "{" + fields.map { quoted($0.0) + (g.chance(98) ? ":" : " : ") + $0.1 }.joined(separator: ",") + "}"
    }

    static func message(_ g: inout Generator) -> String {
        let node = field(&g, ["node-a", "node-b", ""], ["n é", "a\\\"b"])
        var fields: [(String, String)] = [("k", quoted(g.chance(95) ? "p" : g.pick(["c", "g", "q"]))), ("n", quoted(node))]
        if g.chance(15) { fields.append(("full", g.pick(["true", "true", "false", "1"]))) }
        fields.append(("u", "[" + (0..<g.int(4)).map { _ in entry(&g, node: node) }.joined(separator: ",") + "]"))
        fields.append(("r", "[" + (0..<g.int(3)).map { _ in g.chance(97) ? quoted(field(&g, sids, oddSids)) : "7" }.joined(separator: ",") + "]"))
        if g.chance(4) { fields.swapAt(g.int(fields.count), g.int(fields.count)) }
        if g.chance(3) { fields.append(("x", "null")) }
        let text = "{" + fields.map { quoted($0.0) + ":" + $0.1 }.joined(separator: g.chance(97) ? "," : ", ") + "}"
        return g.chance(2) ? text + " " : text
    }

    @Test func decodesWhatTheParserDecodes() {
        var g = Generator(state: 0x11_04)
        var fast = 0
        var parsed = 0
        var valid = 0
        for _ in 0..<20_000 {
            let bytes = Array(Self.message(&g).utf8)
            let expected = NodeMessage.parsed(bytes)
            #expect(NodeMessage.decode(bytes) == expected, "\(String(decoding: bytes, as: UTF8.self))")
            let direct = bytes.withUnsafeBufferPointer { NodeMessageFastPath.presence($0, maxDepth: NodeMessage.maxDepth) }
            if let direct {
                fast += 1
                #expect(direct == expected)
            } else {
                parsed += 1
            }
            if expected != nil { valid += 1 }
        }
        // Both paths taken many times, and many generated messages valid but left to the parser.
        #expect(fast > 2_000)
        #expect(parsed > 2_000)
        #expect(valid > fast + 500)
    }

    @Test func encodedPresenceRoundTripsMostlyThroughTheFastPath() {
        var g = Generator(state: 7)
        var fast = 0
        for round in 0..<500 {
            let upserts = (0..<g.int(6)).compactMap { i -> PresenceEntry? in
                // States as nodes hold them: canonical (non-ASCII ones are left to the parser).
                guard let value = try? JSONParser.parse(Array(Self.state(&g).utf8)), let state = PresenceState(object: value) else {
                    return nil
                }
                return PresenceEntry(
                    sid: "S\(round)x\(i)abcdefghijklmnopq", user: "u\(i)", name: g.pick(["c\(i)", "Ann Lee", ""]),
                    role: g.chance(50) ? .editor : .viewer, node: g.chance(90) ? "node-b" : "node-c", version: UInt64(g.int(1 << 20)),
                    state: state)
            }
            let message = NodeMessage.presence(node: "node-b", upserts: upserts, removals: (0..<g.int(3)).map { "r\($0)" }, full: g.chance(20))
            let bytes = message.encode()
            #expect(NodeMessage.decode(bytes) == message)
            if let direct = bytes.withUnsafeBufferPointer({ NodeMessageFastPath.presence($0, maxDepth: NodeMessage.maxDepth) }) {
                fast += 1
                #expect(direct == message)
            }
        }
        #expect(fast > 200)
    }

    /// A decoder that remembers sessions gives what `decode` gives, message after message, whatever changes
    /// between a session's entries: the generated sids come from a small set, so each one comes back with
    /// other names, users, roles, nodes, states and versions, and with the same ones.
    @Test func decoderRememberingSessionsDecodesWhatDecodeDoes() {
        var g = Generator(state: 0x11_05)
        var decoder = NodeMessageDecoder()
        for _ in 0..<20_000 {
            let bytes = Array(Self.message(&g).utf8)
            #expect(decoder.decode(bytes) == NodeMessage.decode(bytes), "\(String(decoding: bytes, as: UTF8.self))")
        }
        #expect(decoder.rememberedSessions > 0)
    }

    /// A session's entry made from the remembered one carries the new message's fields and state, and
    /// encodes to the bytes it arrived as.
    @Test func aRememberedSessionTakesEachMessagesFields() {
        var decoder = NodeMessageDecoder()
        let state = PresenceState(canonicalBytes: Array(#"{"x":1}"#.utf8))
        let first = PresenceEntry(sid: "s1", user: "u1", name: "Ann", role: .editor, node: "node-b", version: 1, state: state)
        let variants = [
            first.with(state: PresenceState(canonicalBytes: Array(#"{"x":2}"#.utf8))),
            PresenceEntry(sid: "s1", user: "u1", name: "Ann Lee", role: .editor, node: "node-b", version: 3, state: state),
            PresenceEntry(sid: "s1", user: "u2", name: "Ann Lee", role: .editor, node: "node-b", version: 4, state: state),
            PresenceEntry(sid: "s1", user: "u2", name: "Ann Lee", role: .viewer, node: "node-b", version: 5, state: state),
            PresenceEntry(sid: "s1", user: "u2", name: "Ann Lee", role: .viewer, node: "node-c", version: 6, state: state),
            PresenceEntry(sid: "s1", user: "u2", name: "Ann Lee", role: .viewer, node: "node-c", version: 7, state: state),
        ]
        for entry in [first] + variants {
            let message = NodeMessage.presence(node: "node-b", upserts: [entry], removals: [], full: false)
            let bytes = message.encode()
            let decoded = decoder.decode(bytes)
            #expect(decoded == message)
            guard case .presence(_, let upserts, _, _)? = decoded, let only = upserts.first else {
                Issue.record("not decoded: \(String(decoding: bytes, as: UTF8.self))")
                continue
            }
            #expect(only.encoded == entry.encoded)
            #expect((only.sid, only.user, only.name, only.role, only.node, only.version) == (entry.sid, entry.user, entry.name, entry.role, entry.node, entry.version))
        }
        #expect(decoder.rememberedSessions == 1)
    }

    /// An entry whose bytes up to its state are a remembered session's is still checked after them: its
    /// state, the user and version key, the version and the closing brace, each as `decode` would take them.
    @Test func aRememberedHeadIsFollowedByWhatDecodeChecks() {
        var decoder = NodeMessageDecoder()
        let head = #"{"k":"p","n":"node-b","u":[{"name":"Ann","node":"node-b","role":"editor","sid":"s1","state":"#
        let remembered = Array((head + #"{"x":1},"user":"u1","v":1}],"r":[]}"#).utf8)
        #expect(decoder.decode(remembered) == NodeMessage.decode(remembered))
        #expect(decoder.rememberedSessions == 1)
        let rests = [
            #"{"x":2},"user":"u1","v":2}],"r":[]}"#,  // the remembered path
            #"{"y":1,"x":2},"user":"u1","v":3}],"r":[]}"#,  // keys out of order: the parser sorts them
            #"{"x":"é"},"user":"u1","v":4}],"r":[]}"#,
            #"{"x":2},"user":"u2","v":5}],"r":[]}"#,  // another user: decoded afresh
            #"{"x":2},"user":"u1","v":01}],"r":[]}"#,
            #"{"x":2},"user":"u1","v":9007199254740992}],"r":[]}"#,
            #"{"x":2},"user":"u1","v":6,"w":1}],"r":[]}"#,
            #"{"x":2},"user":"u1","v":7}],"r":[]} "#,
            #"{"x":2},"user":"u1","v":8"#,
            #"{"x":2},"user":"u1""#,
            #"{"x":2}"#,
            #"[1],"user":"u1","v":9}],"r":[]}"#,
            #"{"x":2},"user":"u1","v":10},{"name":"Ann","node":"node-b","role":"editor","sid":"s1","state":{},"user":"u1","v":11}],"r":["s2"]}"#,
        ]
        for rest in rests {
            let bytes = Array((head + rest).utf8)
            #expect(decoder.decode(bytes) == NodeMessage.decode(bytes), "\(head + rest)")
        }
        // A head remembered but cut short, or running into the next field, is not taken for the session's.
        for text in [head, String(head.dropLast(3)), head.replacingOccurrences(of: #""state":"#, with: #""stat":{},"user":"u1","v":1}],"r":[]}"#)] {
            let bytes = Array(text.utf8)
            #expect(decoder.decode(bytes) == NodeMessage.decode(bytes), "\(text)")
        }
        // One session: its bytes with user u2 replaced those with u1 (the same head), and back.
        #expect(decoder.rememberedSessions == 1)
    }

    /// The word-at-a-time comparison the remembered path uses: every length up to 40, a difference at every
    /// position (in the words and in the bytes after them), and buffers at odd offsets.
    @Test func byteRunsCompareByEveryByte() {
        let pool = (0..<48).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        pool.withUnsafeBufferPointer { pool in
            for offset in 0..<3 {
                for length in 0...40 {
                    let a = Array(pool[offset..<(offset + length)])
                    a.withUnsafeBufferPointer { a in
                        let b = UnsafeBufferPointer(rebasing: pool[offset..<(offset + length)])
                        #expect(ByteRun.equal(a, b))
                        #expect(ByteRun.hash(a) == ByteRun.hash(b))
                        if length > 0 {
                            #expect(!ByteRun.equal(a, UnsafeBufferPointer(rebasing: pool[offset..<(offset + length - 1)])))
                        }
                    }
                    for position in 0..<length {
                        var changed = Array(pool[offset..<(offset + length)])
                        changed[position] ^= 0x20
                        changed.withUnsafeBufferPointer { changed in
                            #expect(!ByteRun.equal(changed, UnsafeBufferPointer(rebasing: pool[offset..<(offset + length)])), "length \(length), byte \(position)")
                        }
                    }
                }
            }
        }
        // Runs that differ only in a trailing zero byte, or only in length, hash apart.
        let short: [UInt8] = [1, 2, 3]
        let long: [UInt8] = [1, 2, 3, 0]
        #expect(short.withUnsafeBufferPointer { ByteRun.hash($0) } != long.withUnsafeBufferPointer { ByteRun.hash($0) })
    }

    /// At most `capacity` sessions are remembered.
    @Test func theDecoderRemembersAtMostItsCapacity() {
        var decoder = NodeMessageDecoder()
        for batch in 0..<(NodeMessageDecoder.capacity / 50 + 10) {
            let upserts = (0..<50).map { i in
                PresenceEntry(sid: "s\(batch)-\(i)", user: "u", name: "n", role: .editor, node: "node-b", version: 1, state: .empty)
            }
            let message = NodeMessage.presence(node: "node-b", upserts: upserts, removals: [], full: false)
            #expect(decoder.decode(message.encode()) == message)
            #expect(decoder.rememberedSessions <= NodeMessageDecoder.capacity)
        }
        #expect(decoder.rememberedSessions > 0)
    }

    @Test func stateDeeperThanTheLimitIsLeftToTheParser() {
        let state = String(repeating: "{\"a\":", count: 130) + "1" + String(repeating: "}", count: 130)
        let bytes = Array(
            ("{\"k\":\"p\",\"n\":\"b\",\"u\":[{\"name\":\"x\",\"node\":\"b\",\"role\":\"editor\",\"sid\":\"s\",\"state\":" + state
                + ",\"user\":\"u\",\"v\":1}],\"r\":[]}").utf8)
        #expect(bytes.withUnsafeBufferPointer { NodeMessageFastPath.presence($0, maxDepth: NodeMessage.maxDepth) } == nil)
        #expect(NodeMessage.decode(bytes) == nil)
    }
}
