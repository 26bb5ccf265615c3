import NIOCore
@testable import TandemServer
import Testing

/// `TextPayloadValidation` (RFC 6455 §8.1 on `/v1/ws`) says what the standard library's validation says,
/// wherever the first non-ASCII byte falls relative to its eight-byte words.
@Suite struct TextPayloadValidationTests {
    @Test func agreesWithTheStandardLibraryOnGeneratedText() {
        var random = SplitMix64(seed: 8_1)
        // Valid pieces, and the classic invalid ones: overlong, surrogate, out of range, stray
        // continuation, truncated sequence, bytes never used in UTF-8.
        let pieces: [[UInt8]] = [
            Array("a".utf8), Array("é".utf8), Array("✓".utf8), Array("😀".utf8), Array("{\"t\":\"ping\"}".utf8),
            [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x80], [0xE2, 0x82], [0xFF], [0xF8, 0x88, 0x80, 0x80, 0x80],
        ]
        var invalid = 0
        for _ in 0..<20_000 {
            var bytes: [UInt8] = []
            // Mostly ASCII, so that the first non-ASCII byte lands at every offset within a word.
            for _ in 0..<Int.random(in: 0...40, using: &random) { bytes.append(UInt8.random(in: 0x20...0x7E, using: &random)) }
            for _ in 0..<Int.random(in: 0...3, using: &random) {
                bytes += Int.random(in: 0...2, using: &random) == 0 ? pieces.randomElement(using: &random)! : Array("xyz".utf8)
            }
            let expected = String(validating: bytes, as: UTF8.self) != nil
            #expect(TextPayloadValidation.isValidUTF8(ByteBuffer(bytes: bytes)) == expected, "\(bytes)")
            if !expected { invalid += 1 }
        }
        #expect(invalid > 1_000 && invalid < 19_000)
    }

    @Test func aBufferWithBytesBeforeItsReaderIndexIsCheckedFromThere() {
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF] + Array("hello, world and more".utf8))
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(TextPayloadValidation.isValidUTF8(buffer))
        #expect(TextPayloadValidation.isValidUTF8(ByteBuffer()))
    }
}
