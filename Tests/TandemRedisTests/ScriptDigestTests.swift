import Crypto
import Testing

@testable import TandemRedis

/// TandemRedis computes the SHA-1 that names a script in Redis itself (ScriptDigest); it must agree with
/// swift-crypto on every length around the padding boundaries and on arbitrary bytes.
@Suite struct ScriptDigestTests {
    private func reference(_ bytes: [UInt8]) -> String {
        Insecure.SHA1.hash(data: bytes).map { byte in
            let digits = Array("0123456789abcdef")
            return "\(digits[Int(byte >> 4)])\(digits[Int(byte & 0x0f)])"
        }.joined()
    }

    @Test func knownVectors() {
        #expect(ScriptDigest.sha1Hex([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(ScriptDigest.sha1Hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            ScriptDigest.sha1Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
    }

    @Test func everyLengthAroundTheBlockBoundariesMatchesSwiftCrypto() {
        var generator = SystemRandomNumberGenerator()
        for length in Array(0...130) + [1000, 4095, 4096, 4097, 65_537] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(ScriptDigest.sha1Hex(bytes) == reference(bytes), "length \(length)")
        }
    }

    @Test func aScriptIsNamedByTheDigestOfItsUTF8Source() {
        let source = "return redis.call('GET', KEYS[1]) -- é ✓"
        #expect(RedisScript(source).sha1 == reference(Array(source.utf8)))
    }
}
