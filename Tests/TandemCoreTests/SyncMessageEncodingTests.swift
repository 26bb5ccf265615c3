import Testing

@testable import TandemCore

/// The per-commit encoders (`ServerMessage.patch`, `.result`) write their fixed parts as literals and numbers
/// and checksums without strings (issue 8 stop 28). What they write must stay byte for byte what the
/// key-by-key writer wrote (the reference below is the encoders as they were): clients compare, log and
/// checksum nothing differently.
@Suite struct SyncMessageEncodingTests {
    static let docs = ["d", "doc-1", "quote\"and\\back", "line\nbreak", "ünï\u{2028}", String(repeating: "x", count: 300)]
    static let ids: [JSONValue] = [.number("7"), .number("123456789012345"), .string("p-1"), .string("e\"s\\c")]
    static let sums: [DocChecksum?] = [nil, .zero, DocChecksum.record(id: "r", value: .object(["a": .number("1")]))]
    static let clocks: [UInt64] = [0, 1, 9, 10, 99, 100, 65_535, 1 << 32, UInt64(Int64.max), UInt64.max]

    @Test func patchesAreWrittenAsBefore() throws {
        let ops = try JSONParser.parse(Array(#"{"r1":["put",{"a":1,"t":"x\"y"}],"r2":["remove"]}"#.utf8))
        for doc in Self.docs {
            for (k, clock) in Self.clocks.enumerated() {
                let id: JSONValue? = k % 3 == 0 ? nil : Self.ids[k % Self.ids.count]
                let sum = Self.sums[k % Self.sums.count]
                var commit = CommitNotice(
                    clock: clock, ops: ops, by: k % 2 == 0 ? "s-1" : "sess\"ion", node: "n", pushID: id, committedAtMs: 5, sum: sum)
                #expect(ServerMessage.patch(doc: doc, commit: commit) == Self.referencePatch(doc: doc, commit: commit))
                commit.encodedOps = ops.serialized  // (own commits splice their bytes)
                #expect(ServerMessage.patch(doc: doc, commit: commit) == Self.referencePatch(doc: doc, commit: commit))
            }
        }
    }

    @Test func resultsAreWrittenAsBefore() throws {
        let applied = try JSONParser.parse(Array(#"{"r1":["patch",{"f":["put",2]}]}"#.utf8))
        let violation = RecordViolation(record: "r\"1", recordType: "Card", path: "/a/b", message: "must be a \"number\"")
        let actions: [PushDecision.Action] = [.commit, .rebase, .discard]
        var n = 0
        for doc in Self.docs {
            for id in Self.ids {
                for clock in Self.clocks {
                    n += 1
                    let action = actions[n % 3]
                    let reason: String? = n % 4 == 0 ? "void" : (n % 7 == 0 ? "invalid \"x\"" : nil)
                    let appliedOps: JSONValue? = n % 5 == 0 ? applied : nil
                    let violated = n % 6 == 0 ? violation : nil
                    let sum = Self.sums[n % Self.sums.count]
                    let written = ServerMessage.result(
                        doc: doc, id: id, action: action, clock: clock, applied: appliedOps, reason: reason, violation: violated, sum: sum)
                    let expected = Self.referenceResult(
                        doc: doc, id: id, action: action, clock: clock, applied: appliedOps, reason: reason, violation: violated, sum: sum)
                    #expect(written == expected)
                }
            }
        }
    }

    @Test func integersAreTheirDecimalDigits() {
        var values: [Int64] = [0, 1, -1, 9, 10, -10, 99, 100, 12_345, -987_654_321, Int64.max, Int64.min]
        values += (0..<200).map { _ in Int64.random(in: Int64.min...Int64.max) }
        for value in values {
            var w = JSONWriter()
            w.integer(value)
            #expect(w.bytes == Array(String(value).utf8))
        }
        for value: UInt64 in [0, 7, 10, UInt64(Int64.max) + 1, UInt64.max] + (0..<200).map({ _ in UInt64.random(in: 0...UInt64.max) }) {
            var w = JSONWriter()
            w.integer(value)
            #expect(w.bytes == Array(String(value).utf8))
        }
        for value: Int in [0, -5, Int.min, Int.max] {
            var w = JSONWriter()
            w.integer(value)
            #expect(w.bytes == Array(String(value).utf8))
        }
    }

    // MARK: The encoders as they were before stop 28 (key by key)

    static func referencePatch(doc: String, commit: CommitNotice) -> [UInt8] {
        var w = JSONWriter(capacity: 128)
        w.openObject()
        w.key("t"); w.string("patch"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("clock"); w.utf8Reference(String(commit.clock)); w.comma()
        w.key("ops"); commit.writeOps(into: &w); w.comma()
        w.key("by"); w.string(commit.by)
        if let id = commit.pushID { w.comma(); w.key("id"); w.write(id) }
        if let sum = commit.sum { w.comma(); w.key("sum"); w.string(sum.hex) }
        w.closeObject()
        return w.bytes
    }

    static func referenceResult(
        doc: String, id: JSONValue, action: PushDecision.Action, clock: UInt64, applied: JSONValue?, reason: String?,
        violation: RecordViolation?, sum: DocChecksum?
    ) -> [UInt8] {
        var w = JSONWriter(capacity: 128)
        w.openObject()
        w.key("t"); w.string("result"); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("id"); w.write(id); w.comma()
        w.key("action"); w.string(action.rawValue); w.comma()
        w.key("clock"); w.utf8Reference(String(clock))
        if let applied { w.comma(); w.key("ops"); w.write(applied) }
        if let reason { w.comma(); w.key("reason"); w.string(reason) }
        if let sum { w.comma(); w.key("sum"); w.string(sum.hex) }
        if let violation {
            w.comma(); w.key("invalid"); w.openObject()
            w.key("record"); w.string(violation.record); w.comma()
            if let type = violation.recordType { w.key("type"); w.string(type); w.comma() }
            w.key("path"); w.string(violation.path); w.comma()
            w.key("message"); w.string(violation.message)
            w.closeObject()
        }
        w.closeObject()
        return w.bytes
    }
}

extension JSONWriter {
    /// A number's lexeme as it is (what `integer` wrote through `String(value)` before).
    fileprivate mutating func utf8Reference(_ text: String) {
        raw(Array(text.utf8))
    }
}
