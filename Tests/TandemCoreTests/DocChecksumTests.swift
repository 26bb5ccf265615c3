import Testing
@testable import TandemCore

/// Issue 13: the doc checksum. The vectors below were computed by `Web/client/tandem.js` (node 20,
/// `recordHash` / `canonicalJSON`): Swift must produce the same bytes and hashes, or every client would
/// see a divergence that is not there.
@Suite struct DocChecksumTests {
    static let vectors: [(id: String, json: String, canonical: String, hash: String)] = [
        ("r1", #"{"a":1}"#, #"["r1",{"a":1}]"#, "6beed841aa978141"),
        (
            "note:é",
            #"{"text":"héllo \u2028 😀","n":[1.5e300,-0.0,123456789012345678,1e-7,5e-324,1E2,0.000001,1e400],"nested":{"z":{},"a":[]},"s":"\"\\\/\b\f\n\r\t\u0001\u001f"}"#,
            "[\"note:é\",{\"n\":[1.5e+300,0,123456789012345680,1e-7,5e-324,100,0.000001,null],\"nested\":{\"a\":[],\"z\":{}},\"s\":\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\",\"text\":\"héllo \u{2028} 😀\"}]",
            "faa6c74130e7fa65"
        ),
        // UTF-16 order puts U+1F600 (D83D DE00) before U+E000; Unicode scalar order would not.
        ("k", #"{"\ue000":1,"😀":2,"a":true,"B":false}"#, "[\"k\",{\"B\":false,\"a\":true,\"😀\":2,\"\u{E000}\":1}]", "14b725c0be374543"),
    ]

    @Test(arguments: 0..<vectors.count)
    func matchesTheJavaScriptClient(_ index: Int) throws {
        let vector = Self.vectors[index]
        let value = try JSONParser.parse(vector.json)
        #expect(String(decoding: DocChecksum.canonicalBytes(id: vector.id, value: value), as: UTF8.self) == vector.canonical)
        #expect(DocChecksum.record(id: vector.id, value: value).hex == vector.hash)
    }

    @Test func murmurHash3ReferenceValues() {
        // MurmurHash3_x86_32 reference: "" seed 0 → 0, "hello" seed 0 → 0x248bfa47.
        #expect(DocChecksum.hash([]).lane0 == 0)
        #expect(DocChecksum.hash(Array("hello".utf8)).lane0 == 0x248b_fa47)
        #expect(DocChecksum.hash(Array("hello".utf8)).lane1 == 0x5d7f_56e8)
    }

    @Test func numbersAreWrittenAsECMAScriptDoes() {
        let cases: [(String, String)] = [
            ("0", "0"), ("-0", "0"), ("-0.0", "0"), ("1.0", "1"), ("1e2", "100"), ("1E+2", "100"), ("0.1", "0.1"),
            ("123456789012345", "123456789012345"), ("1234567890123456789", "1234567890123456800"),
            ("1e21", "1e+21"), ("1e20", "100000000000000000000"), ("1.5e-7", "1.5e-7"), ("0.000001", "0.000001"),
            ("-2.5e-10", "-2.5e-10"), ("1e400", "null"), ("-1e400", "null"), ("12.50", "12.5"),
        ]
        for (lexeme, expected) in cases {
            var out: [UInt8] = []
            DocChecksum.appendNumber(lexeme, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == expected, "\(lexeme)")
        }
    }

    @Test func hexRoundTripsAndRejectsOtherText() {
        let sum = DocChecksum(lane0: 0x0123_4567, lane1: 0x89ab_cdef)
        #expect(sum.hex == "0123456789abcdef")
        #expect(DocChecksum(hex: "0123456789ABCDEF") == sum)
        for bad in ["", "0123456789abcde", "0123456789abcdefa", "0123456789abcdeg", "-123456789abcdef"] {
            #expect(DocChecksum(hex: bad) == nil, "\(bad)")
        }
        #expect(DocChecksum.zero.hex == "0000000000000000")
    }

    /// The replica's checksum, kept commit by commit, is always the checksum of its records computed
    /// from scratch, whatever the order of the changes — and two orders of the same final state agree.
    @Test func replicaKeepsTheChecksumOfItsRecords() throws {
        var replica = DocReplica()
        #expect(replica.sum == .zero)
        let commits = [
            #"{"a":["put",{"x":1}],"b":["put",{"t":"hi"}]}"#,
            #"{"a":["patch",{"x":["put",2],"y":["put",[1,2]]}]}"#,
            #"{"b":["patch",{"t":["append","!",2]}]}"#,
            #"{"a":["remove"],"c":["put",{}]}"#,
            #"{"a":["put",{"x":1.0}]}"#,
            #"{"zz":["patch",{"q":["put",1]}]}"#,
        ]
        for (i, text) in commits.enumerated() {
            #expect(replica.apply(clock: UInt64(i + 1), ops: try Ops(json: try JSONParser.parse(text))))
            #expect(replica.sum == DocChecksum.of(replica.records), "after commit \(i + 1)")
        }
        let rebuilt = DocReplica(head: 6, records: replica.records)
        #expect(rebuilt.sum == replica.sum)
        var other = DocReplica()
        other.apply(clock: 1, ops: try Ops(json: try JSONParser.parse(#"{"c":["put",{}],"b":["put",{"t":"hi!"}]}"#)))
        other.apply(clock: 2, ops: try Ops(json: try JSONParser.parse(#"{"a":["put",{"x":1}]}"#)))
        #expect(other.sum == replica.sum)
        #expect(other.sum != DocReplica(head: 1, records: ["c": .object([:])]).sum)
    }

    /// An untracked copy (a client's optimistic view) hashes nothing and keeps no checksum; the original
    /// is untouched.
    @Test func anUntrackedCopyKeepsNoChecksum() throws {
        let tracked = DocReplica(head: 1, records: ["a": try JSONParser.parse(#"{"x":1}"#)])
        var view = tracked.untracked
        #expect(view.sum == .zero && view.hash(of: "a") == nil)
        view.apply(clock: 2, ops: try Ops(json: try JSONParser.parse(#"{"b":["put",{}]}"#)))
        #expect(view.sum == .zero && view.records.count == 2)
        #expect(tracked.sum == DocChecksum.of(tracked.records) && tracked.sum != .zero)
    }

    /// A record's value changing in any way changes the checksum (the divergence a client or node finds).
    @Test func anyChangeChangesTheChecksum() throws {
        let base: [String: JSONValue] = ["a": try JSONParser.parse(#"{"x":[1,2,3],"s":"abc"}"#)]
        let variants = [#"{"x":[1,2,4],"s":"abc"}"#, #"{"x":[1,2,3],"s":"abd"}"#, #"{"x":[1,2,3]}"#, #"{"x":[1,2,3],"s":"abc","t":null}"#]
        for text in variants {
            #expect(DocChecksum.of(["a": try JSONParser.parse(text)]) != DocChecksum.of(base), "\(text)")
        }
        #expect(DocChecksum.of(["b": base["a"]!]) != DocChecksum.of(base), "the id is hashed too")
    }
}
