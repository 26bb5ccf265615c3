import CHiredis
import Testing
@testable import TandemRedis

/// What Fuzz/fuzz-hiredis-reply relies on, pinned: `RedisValue(hiredisReply:)` recurses once per level of
/// nesting, and it is hiredis that keeps the nesting bounded. hiredis 1.x grows its task stack instead of
/// refusing deep replies, so an upgrade would make these fail before it made the conversion recurse
/// without bound (on an owner thread's stack).
@Suite struct ReplyFuzzRegressionTests {
    /// Feeds `bytes` to a fresh hiredis reader: the converted replies, and whether the reader failed.
    private func read(_ bytes: [UInt8]) -> (values: [RedisValue], failed: Bool) {
        let reader = redisReaderCreate()!
        defer { redisReaderFree(reader) }
        let fed = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        }
        guard fed == REDIS_OK else { return ([], true) }
        var values: [RedisValue] = []
        while true {
            var reply: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &reply) == REDIS_OK else { return (values, true) }
            guard let reply else { return (values, false) }
            values.append(RedisValue(hiredisReply: reply.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
    }

    private func nested(_ levels: Int) -> [UInt8] {
        Array((String(repeating: "*1\r\n", count: levels) + ":7\r\n").utf8)
    }

    @Test func replyNestedEightDeepIsConverted() {
        let (values, failed) = read(nested(8))
        #expect(!failed)
        var value = values.first
        for _ in 0..<8 { value = value?.array?.first }
        #expect(value == .integer(7))
    }

    @Test func replyNestedNineDeepIsRefusedByTheReader() {
        let (values, failed) = read(nested(9))
        #expect(failed)
        #expect(values.isEmpty)
    }

    /// A multi-bulk count hiredis treats as null, and the conversion with it.
    @Test func negativeCountsAreNull() {
        #expect(read(Array("*-1\r\n$-1\r\n".utf8)).values == [.null, .null])
    }
}
