import CHiredis
import Testing
@testable import TandemRedis

/// `RedisPubSubPush` takes a pub/sub message push straight from hiredis's read buffer. Whatever the bytes
/// and however they arrive, reading them as `RedisConnection` does (a push taken when it can be, hiredis's
/// parser otherwise) must give exactly what hiredis's parser alone gives, in the same order.
@Suite struct RedisPubSubPushTests {
    private static let message = Array("message".utf8)

    /// One reader fed `chunks` in turn, drained after each as `RedisConnection.readReplies` does.
    /// Each result is the reply as hiredis would have given it (a taken push as its `*3` array), with
    /// whether it was taken from the buffer.
    private func read(_ chunks: [[UInt8]], fast: Bool) -> (values: [RedisValue], taken: Int, failed: Bool) {
        let reader = redisReaderCreate()!
        defer { redisReaderFree(reader) }
        var values: [RedisValue] = []
        var taken = 0
        for chunk in chunks {
            let fed = chunk.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
            }
            guard fed == REDIS_OK else { return (values, taken, true) }
            while true {
                if fast, let push = RedisPubSubPush.take(from: reader, type: Self.message) {
                    values.append(.array([.bulkString(Self.message), .bulkString(Array(push.channel.utf8)), .bulkString(push.payload)]))
                    taken += 1
                    continue
                }
                var reply: UnsafeMutableRawPointer?
                guard redisReaderGetReply(reader, &reply) == REDIS_OK else { return (values, taken, true) }
                guard let reply else { break }
                values.append(RedisValue(hiredisReply: reply.assumingMemoryBound(to: redisReply.self)))
                freeReplyObject(reply)
            }
        }
        return (values, taken, false)
    }

    private func bulk(_ bytes: [UInt8]) -> [UInt8] { Array("$\(bytes.count)\r\n".utf8) + bytes + Array("\r\n".utf8) }
    private func push(_ type: String, _ channel: String, _ payload: [UInt8]) -> [UInt8] {
        Array("*3\r\n".utf8) + bulk(Array(type.utf8)) + bulk(Array(channel.utf8)) + bulk(payload)
    }

    /// Pushes and replies a subscriber connection sees, and layouts the buffer path must leave to hiredis.
    private var stream: [UInt8] {
        var bytes: [UInt8] = []
        bytes += Array("*3\r\n$9\r\nsubscribe\r\n$10\r\ntandem:{a}\r\n:1\r\n".utf8)  // a confirmation
        bytes += push("message", "tandem:{a}", Array(#"{"k":"p","n":"node-b","u":[],"r":["s1"]}"#.utf8))
        bytes += push("message", "tandem:{a}", [])  // empty payload
        bytes += push("message", "tandem:{b}", [0, 13, 10, 255, 36, 42, 13, 10])  // binary, CRLF inside
        bytes += Array("*2\r\n$4\r\npong\r\n$0\r\n\r\n".utf8)  // PING in subscribed mode
        bytes += push("smessage", "tandem:{a}", Array("sharded".utf8))  // another type: hiredis's
        bytes += Array("*3\r\n$7\r\nmessage\r\n$2\r\n\u{00}\u{00}\r\n$1\r\nx\r\n".utf8)
        bytes += Array("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n:5\r\n".utf8)  // an integer payload
        bytes += Array("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$-1\r\n".utf8)  // a null payload
        bytes += [0x2A, 0x33, 0x0D, 0x0A] + bulk(Self.message) + bulk([0xC3, 0x28]) + bulk([1])  // channel not UTF-8
        bytes += Array("-ERR something\r\n:42\r\n+OK\r\n*-1\r\n".utf8)
        bytes += push("message", "tandem:{c}", Array(repeating: UInt8(ascii: "x"), count: 40_000))
        bytes += push("message", "tandem:{a}", Array("last".utf8))
        return bytes
    }

    @Test func sameRepliesAsHiredisWhereverTheBytesAreSplit() {
        let bytes = stream
        let expected = read([bytes], fast: false)
        #expect(!expected.failed)
        #expect(expected.values.count == 16)
        let whole = read([bytes], fast: true)
        #expect(whole.values == expected.values && !whole.failed)
        // The well-formed `message` pushes: the JSON, empty, binary, NUL channel and the two at the end.
        #expect(whole.taken == 6)
        // Every split point in two, and every byte on its own.
        for split in 0...bytes.count where split % 7 == 0 || split < 400 || split > bytes.count - 100 {
            let result = read([Array(bytes[..<split]), Array(bytes[split...])], fast: true)
            #expect(result.values == expected.values && !result.failed, "split at \(split)")
        }
        let byteByByte = read(bytes.map { [$0] }, fast: true)
        #expect(byteByByte.values == expected.values && !byteByByte.failed)
    }

    /// Random streams of pushes and other replies, cut at random points (seeded: the same every run).
    @Test func randomStreamsGiveHiredisReplies() {
        var generator = XorShift(state: 0x1111_2024)
        for _ in 0..<300 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 1...12, using: &generator) {
                let payload = (0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                switch Int.random(in: 0..<6, using: &generator) {
                case 0, 1, 2: bytes += push("message", "tandem:{d\(Int.random(in: 0..<9, using: &generator))}", payload)
                case 3: bytes += push("pmessage", "x", payload)
                case 4: bytes += Array(":\(payload.count)\r\n".utf8)
                default: bytes += Array("*2\r\n".utf8) + bulk(payload) + Array("*1\r\n+OK\r\n".utf8)
                }
            }
            let expected = read([bytes], fast: false)
            var chunks: [[UInt8]] = []
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + Int.random(in: 1...200, using: &generator))
                chunks.append(Array(bytes[start..<end]))
                start = end
            }
            let result = read(chunks, fast: true)
            #expect(result.values == expected.values && result.failed == expected.failed)
        }
    }

    /// Lengths written other than as Redis writes them (a leading zero, a sign, too many digits) are hiredis's
    /// to accept or refuse.
    @Test func unusualLengthsAreLeftToHiredis() {
        for bytes in [
            "*3\r\n$07\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n", "*3\r\n$7\r\nmessage\r\n$+1\r\nc\r\n$1\r\nx\r\n",
            "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0000000001\r\nx\r\n", "*03\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
            "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nxy\r\n", "*3\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
        ] {
            let reader = redisReaderCreate()!
            defer { redisReaderFree(reader) }
            let chunk = Array(bytes.utf8)
            _ = chunk.withUnsafeBufferPointer { b in b.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) } }
            #expect(RedisPubSubPush.take(from: reader, type: Self.message) == nil, "\(bytes)")
            #expect(reader.pointee.pos == 0)
        }
    }

    /// A reply hiredis has started is finished by hiredis, even when the rest looks like a push.
    @Test func aReplyHiredisStartedIsLeftToIt() {
        let reader = redisReaderCreate()!
        defer { redisReaderFree(reader) }
        let first = Array("*2\r\n:1\r\n".utf8)
        let rest = push("message", "c", [1])
        _ = first.withUnsafeBufferPointer { b in b.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) } }
        var reply: UnsafeMutableRawPointer?
        #expect(redisReaderGetReply(reader, &reply) == REDIS_OK && reply == nil)
        _ = rest.withUnsafeBufferPointer { b in b.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) } }
        #expect(RedisPubSubPush.take(from: reader, type: Self.message) == nil)
        #expect(redisReaderGetReply(reader, &reply) == REDIS_OK)
        let value = reply.map { RedisValue(hiredisReply: $0.assumingMemoryBound(to: redisReply.self)) }
        if let reply { freeReplyObject(reply) }
        #expect(value == .array([.integer(1), .array([.bulkString(Self.message), .bulkString([99]), .bulkString([1])])]))
    }
}

/// A small seeded generator (xorshift64), so the random streams are the same on every run.
private struct XorShift: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
}
