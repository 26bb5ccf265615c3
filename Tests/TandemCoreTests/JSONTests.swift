import Testing
@testable import TandemCore

@Suite struct JSONTests {
    @Test func roundTripsWithSortedKeysAndExactNumbers() throws {
        let value = try JSONParser.parse(#" { "b" : [1, 2.50, -0.0e+7, true, null], "a": "x\"y\\z\u00e9\n" } "#)
        #expect(value.serializedString == #"{"a":"x\"y\\zé\n","b":[1,2.50,-0.0e+7,true,null]}"#)
    }

    @Test func keepsLargeNumbersExactly() throws {
        let value = try JSONParser.parse("[12345678901234567890123, 0.1000000000000000055511151231257827]")
        #expect(value.serializedString == "[12345678901234567890123,0.1000000000000000055511151231257827]")
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "1e", "\"\\x\"", "\"abc", "tru", "nul", "[1] 2",
        "{\"a\":1,\"a\":2}", "\"\\ud800\"", "\"\\udc00\"", "{1:2}", "\"\u{01}\"", "NaN", "Infinity",
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func limitsDepth() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSONParser.parse(ok)
        let veryDeep = String(repeating: "{\"a\":", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(veryDeep) }
    }

    @Test func decodesSurrogatePairsAndEscapesControlCharacters() throws {
        let value = try JSONParser.parse(#""\ud83d\ude00 \u0001 \u2028""#)
        #expect(value == .string("😀 \u{01} \u{2028}"))
        #expect(value.serializedString == #""😀 \u0001 \u2028""#)
    }

    /// The writer escapes exactly what RFC 8259 requires plus U+2028/U+2029, byte for byte as the scalar
    /// by scalar writer it replaced did, and copies everything else (multi-byte scalars included) as is.
    @Test func stringsAreEscapedExactlyAndEverythingElseCopied() throws {
        var w = JSONWriter()
        w.string("plain é 😀 \u{2027}\u{202A} \"q\" \\ \n\r\t\u{08}\u{0C}\u{00}\u{1F} \u{2028}\u{2029} end")
        #expect(String(decoding: w.bytes, as: UTF8.self)
            == #""plain é 😀 \#u{2027}\#u{202A} \"q\" \\ \n\r\t\b\f\u0000\u001f \u2028\u2029 end""#)
        for text in ["", "\"", "\u{2028}", "a\u{2029}", "\u{E2}", "x\u{1F600}\u{2028}y", String(repeating: "ab\"\u{2028}", count: 100)] {
            var writer = JSONWriter()
            writer.string(text)
            #expect(try JSONParser.parse(writer.bytes) == .string(text), "round trip of \(text.debugDescription)")
        }
    }

    @Test func integerAccessors() throws {
        #expect(JSONValue.number("42").uint64Value == 42)
        #expect(JSONValue.number("-1").uint64Value == nil)
        #expect(JSONValue.number("1.0").uint64Value == nil)
        #expect(JSONValue.number("1e3").uint64Value == nil)
        #expect(JSONValue.number("-7").intValue == -7)
    }
}

/// `JSONWriter` sorts object keys itself (issue 14); the order must stay `String`'s.
@Suite struct JSONWriterKeyOrderTests {
    @Test func keysAreOrderedAsStringOrdersThem() {
        let keys = ["b", "a", "ab", "", "B", "_", "~", "é", "e\u{301}", "f", "z9", "z10", "😀", "\u{7f}", "aa", "a"]
        for a in keys {
            for b in keys {
                #expect(JSONWriter.keyPrecedes(a, b) == (a < b), "\(a.debugDescription) vs \(b.debugDescription)")
            }
        }
        // Objects small enough for the insertion sort, and larger ones.
        for extra in [0, 30] {
            let unique = Set(keys + (0..<extra).map { "k\($0)" })
            let members = Dictionary(uniqueKeysWithValues: unique.enumerated().map { ($1, JSONValue.number($0)) })
            var w = JSONWriter()
            w.write(.object(members))
            let expected = "{"
                + members.keys.sorted().map { k in "\(JSONValue.string(k).serializedString):\(members[k]!.serializedString)" }
                    .joined(separator: ",") + "}"
            #expect(String(decoding: w.bytes, as: UTF8.self) == expected)
        }
    }
}
