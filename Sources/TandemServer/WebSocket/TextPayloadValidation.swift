import NIOCore

/// RFC 6455 §8.1: a text message that is not UTF-8 fails the connection (1007). The messages of `/v1/ws`
/// are JSON, and the JSON parser refused invalid UTF-8 in strings already, but only as one `bad_message`
/// among others, after the fast paths had looked at the bytes; checking the message once, before
/// anything else does, keeps every later step on valid text and answers as the RFC (and every browser
/// and `ws` peer) expects.
///
/// Nearly every message is ASCII: eight bytes at a time until a byte with its high bit set, then the
/// standard library's validation (`UTF8Span`, no allocation) from the start of that word.
enum TextPayloadValidation {
    static func isValidUTF8(_ text: ByteBuffer) -> Bool {
        text.withUnsafeReadableBytes { isValidUTF8($0) }
    }

    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index + 8 <= count {
            if bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { break }
            index += 8
        }
        while index < count, bytes[index] < 0x80 { index += 1 }
        guard index < count else { return true }
        // The non-ASCII byte found starts a sequence (everything before it is ASCII).
        let rest = UnsafeBufferPointer(rebasing: bytes.assumingMemoryBound(to: UInt8.self)[index...])
        return (try? UTF8Span(validating: rest.span)) != nil
    }
}
