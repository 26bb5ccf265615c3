import Testing

@testable import TandemYjs

@Suite struct Lib0VarIntTests {
    // lib0 writeVarUint: 7 bits per byte, least significant first.
    @Test(arguments: [
        (UInt64(0), [UInt8(0x00)]), (127, [0x7F]), (128, [0x80, 0x01]), (300, [0xAC, 0x02]),
        ((1 << 32) - 1, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ((1 << 53) - 1, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ] as [(UInt64, [UInt8])])
    func varUIntRoundTrips(value: UInt64, bytes: [UInt8]) throws {
        var encoder = Lib0Encoder()
        encoder.writeVarUInt(value)
        #expect(encoder.bytes == bytes)
        var decoder = Lib0Decoder(bytes)
        #expect(try decoder.readVarUInt() == value)
        #expect(decoder.isAtEnd)
    }

    @Test(arguments: [
        // 2^53: past JavaScript's safe integers.
        ([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10], YDecodingError.Reason.integerOutOfRange),
        // Ten bytes, 2^64 and beyond.
        ([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], .integerOutOfRange),
        ([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], .integerOutOfRange),
        ([0x80, 0x00], .nonMinimalInteger),
        ([0xFF, 0x80, 0x00], .nonMinimalInteger),
        ([0x80], .unexpectedEnd),
        ([], .unexpectedEnd),
    ] as [([UInt8], YDecodingError.Reason)])
    func varUIntRefusals(bytes: [UInt8], reason: YDecodingError.Reason) {
        var decoder = Lib0Decoder(bytes)
        // Range and minimality are reported where the varint starts, a short input where it ends.
        let offset = reason == .unexpectedEnd ? bytes.count : 0
        #expect(throws: YDecodingError(reason, at: offset)) { try decoder.readVarUInt() }
    }

    // lib0 writeVarInt: continuation bit, sign bit, 6 bits; then 7 bits per byte.
    @Test(arguments: [
        (0.0, [UInt8(0x00)]), (-0.0, [0x40]), (63, [0x3F]), (64, [0x80, 0x01]), (-1, [0x41]), (-64, [0xC0, 0x01]),
        (1000, [0xA8, 0x0F]), (9_007_199_254_740_991, [0xBF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F]),
    ] as [(Double, [UInt8])])
    func varIntRoundTrips(value: Double, bytes: [UInt8]) throws {
        var encoder = Lib0Encoder()
        encoder.writeVarInt(value)
        #expect(encoder.bytes == bytes)
        var decoder = Lib0Decoder(bytes)
        let decoded = try decoder.readVarInt()
        #expect(decoded.bitPattern == value.bitPattern)
    }

    @Test func varIntRefusals() {
        var nonMinimal = Lib0Decoder([0x80, 0x00])
        #expect(throws: YDecodingError(.nonMinimalInteger, at: 0)) { try nonMinimal.readVarInt() }
        var tooLarge = Lib0Decoder([0xBF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F])
        #expect(throws: YDecodingError(.integerOutOfRange, at: 0)) { try tooLarge.readVarInt() }
        var endless = Lib0Decoder(Array(repeating: 0xFF, count: 20))
        #expect(throws: YDecodingError(.integerOutOfRange, at: 0)) { try endless.readVarInt() }
        var truncated = Lib0Decoder([0xBF])
        #expect(throws: YDecodingError(.unexpectedEnd, at: 1)) { try truncated.readVarInt() }
    }
}

@Suite struct Lib0StringTests {
    @Test func stringsRoundTripWithTheirUTF16Length() throws {
        for text in ["", "a", "Ünïcødé", "日本語", "😀", "👩‍👩‍👧", "\u{FEFF}bom kept"] {
            var encoder = Lib0Encoder()
            encoder.writeVarString(text)
            var decoder = Lib0Decoder(encoder.bytes)
            #expect(try decoder.readVarString() == text)
            var textDecoder = Lib0Decoder(encoder.bytes)
            let utf8 = try textDecoder.readVarUTF8Text()
            #expect(utf8.utf16Count == text.utf16.count)
            #expect(utf8.string == text)
        }
    }

    // What a fatal TextDecoder refuses: lone continuation, truncated, overlong, surrogates, > U+10FFFF.
    @Test(arguments: [
        [0x80], [0xC3], [0xC3, 0x28], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF0, 0x80, 0x80, 0x80],
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xE2, 0x82], [0x61, 0xF0, 0x9F, 0x98],
    ] as [[UInt8]])
    func invalidUTF8IsRefused(bytes: [UInt8]) {
        var decoder = Lib0Decoder([UInt8(bytes.count)] + bytes)
        #expect(throws: YDecodingError(.invalidUTF8, at: 0)) { try decoder.readVarString() }
    }

    @Test func aLengthPastTheInputIsRefusedBeforeAllocating() {
        // Claims 2^53 − 1 bytes.
        var decoder = Lib0Decoder([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x61])
        #expect(throws: YDecodingError(.lengthExceedsInput, at: 0)) { try decoder.readVarString() }
        var bytes = Lib0Decoder([0x05, 1, 2, 3])
        #expect(throws: YDecodingError(.lengthExceedsInput, at: 0)) { try bytes.readVarBytes() }
    }

    // Yjs counts string clocks in UTF-16 units and cuts strings there; a cut inside a surrogate
    // pair leaves U+FFFD (yjs ContentString.splice, and TextEncoder on a lone surrogate).
    @Test func suffixesCutInUTF16Units() {
        let text = UTF8Text("a😀b日")
        #expect(text.utf16Count == 5)
        #expect(text.suffix(fromUTF16Offset: 1).string == "😀b日")
        #expect(text.suffix(fromUTF16Offset: 2).string == "\u{FFFD}b日")
        #expect(text.suffix(fromUTF16Offset: 2).utf16Count == 3)
        #expect(text.suffix(fromUTF16Offset: 3).string == "b日")
        #expect(text.suffix(fromUTF16Offset: 4).string == "日")
        #expect(text.suffix(fromUTF16Offset: 5).string == "")
    }
}

@Suite struct Lib0AnyTests {
    func roundTrip(_ value: Lib0Any) throws -> [UInt8] {
        var encoder = Lib0Encoder()
        value.encode(to: &encoder)
        var decoder = Lib0Decoder(encoder.bytes)
        #expect(try Lib0Any.decode(from: &decoder, maxDepth: 64) == value)
        #expect(decoder.isAtEnd)
        return encoder.bytes
    }

    // The bytes lib0's writeAny gives for the same JavaScript values.
    @Test func everyTagMatchesLib0() throws {
        #expect(try self.roundTrip(.undefined) == [127])
        #expect(try self.roundTrip(.null) == [126])
        #expect(try self.roundTrip(.integer(-3)) == [125, 0x43])
        #expect(try self.roundTrip(.integer(-0.0)) == [125, 0x40])
        #expect(try self.roundTrip(.float32(1.5)) == [124, 0x3F, 0xC0, 0x00, 0x00])
        #expect(try self.roundTrip(.float64(0.1)) == [123, 0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A])
        #expect(try self.roundTrip(.bigInt(-2)) == [122, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE])
        #expect(try self.roundTrip(.bool(true)) == [120])
        #expect(try self.roundTrip(.bool(false)) == [121])
        #expect(try self.roundTrip(.string("hé")) == [119, 3, 0x68, 0xC3, 0xA9])
        #expect(try self.roundTrip(.object([("a", .integer(1)), ("a", .null)])) == [118, 2, 1, 0x61, 125, 1, 1, 0x61, 126])
        #expect(try self.roundTrip(.array([.bool(true), .array([])])) == [117, 2, 120, 117, 0])
        #expect(try self.roundTrip(.bytes([1, 2])) == [116, 2, 1, 2])
        // A NaN payload survives (compared by bit pattern).
        _ = try self.roundTrip(.float64(Double(bitPattern: 0x7FF8_0000_0000_0001)))
    }

    @Test func aHandBuiltNonIntegerIsWrittenAsFloat64() throws {
        var encoder = Lib0Encoder()
        Lib0Any.integer(.infinity).encode(to: &encoder)
        #expect(encoder.bytes.first == 123)
    }

    @Test func nestingIsBounded() throws {
        let deep: [UInt8] = Array([UInt8](repeating: 117, count: 65).flatMap { [$0, 1] }.dropLast()) + [0]
        var decoder = Lib0Decoder(deep)
        #expect(throws: YDecodingError.self) { try Lib0Any.decode(from: &decoder, maxDepth: 64) }
        var allowed = Lib0Decoder(deep)
        #expect(throws: Never.self) { try Lib0Any.decode(from: &allowed, maxDepth: 65) }
        // A million nested arrays: refused at the limit, no stack exhausted.
        let hostile: [UInt8] = (0..<2_000_000).map { $0 % 2 == 0 ? 117 : 1 }
        var hostileDecoder = Lib0Decoder(hostile)
        #expect(throws: YDecodingError(.nestingTooDeep, at: 128)) { try Lib0Any.decode(from: &hostileDecoder, maxDepth: 64) }
    }

    @Test func countsAreCheckedAgainstTheInput() {
        var array = Lib0Decoder([117, 0xFF, 0xFF, 0xFF, 0x7F, 126])
        #expect(throws: YDecodingError(.lengthExceedsInput, at: 1)) { try Lib0Any.decode(from: &array, maxDepth: 64) }
        var object = Lib0Decoder([118, 2, 1, 0x61])
        #expect(throws: YDecodingError(.lengthExceedsInput, at: 1)) { try Lib0Any.decode(from: &object, maxDepth: 64) }
        var tag = Lib0Decoder([115])
        #expect(throws: YDecodingError(.unknownAnyTag(115), at: 0)) { try Lib0Any.decode(from: &tag, maxDepth: 64) }
        var float = Lib0Decoder([123, 1, 2, 3])
        #expect(throws: YDecodingError(.unexpectedEnd, at: 1)) { try Lib0Any.decode(from: &float, maxDepth: 64) }
    }
}

@Suite struct JSONSyntaxTests {
    @Test(arguments: [
        "null", "true", "false", "0", "-0", "1.5e-3", "-12E+2", #""""#, #""a\"\\\/\b\f\n\r\tz""#, #""\u00e9\uD83D""#,
        "[]", "{}", " [1, 2 ,{\"a\" : [null]}] ", "{\"a\":1,\"a\":2}", "\"日本\"", "1e400",
    ])
    func accepts(_ text: String) {
        #expect(JSONSyntax.isValid(text, maxDepth: 8))
    }

    @Test(arguments: [
        "", " ", "undefined", "nul", "tru", "01", "1.", ".5", "-", "1e", "+1", "NaN", "Infinity", "[1,]", "[,1]", "{\"a\"}",
        "{\"a\":}", "{a:1}", "{\"a\":1,}", "[1 2]", "\"unterminated", "\"tab\there\"", "\"\\x\"", "\"\\u12\"", "1 2",
        "[]]", "[", "{", "'single'", "[1]x",
    ])
    func refuses(_ text: String) {
        #expect(!JSONSyntax.isValid(text, maxDepth: 8))
    }

    @Test func depthIsBounded() {
        #expect(JSONSyntax.isValid("[[[]]]", maxDepth: 3))
        #expect(!JSONSyntax.isValid("[[[]]]", maxDepth: 2))
        #expect(!JSONSyntax.isValid(String(repeating: "[", count: 1_000_000), maxDepth: 64))
        #expect(JSONSyntax.isValid("[" + String(repeating: "{\"a\":[1],\"b\":{}},", count: 1000) + "0]", maxDepth: 3))
    }
}
