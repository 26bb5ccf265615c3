import CHiredis
import FuzzSupport
@testable import TandemRedis

// Bytes as they would arrive from Redis, fed to a hiredis reader in chunks (the split points come from
// the input), each complete reply converted with TandemRedis's `RedisValue(hiredisReply:)` — the code
// every reply of the command and pub/sub connections goes through.
//
// Invariants:
// - nothing traps (a protocol error leaves the reader in an error state, which is where we stop);
// - nesting is bounded: hiredis 0.14 keeps a task stack of 9 entries and refuses replies nested deeper
//   (at most 8 levels of arrays), so no converted value is deeper (the conversion recurses once per level);
// - the conversion is stable: a value written back as RESP and read again converts to the same value;
// - pub/sub `message` pushes taken straight from the reader's buffer (`RedisPubSubPush`, what the
//   subscriber connection does) give the same values, in the same order, as hiredis's parser alone.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHiredisReply(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let chunk = Int(input.byte() % 16) + 1
    let bytes = input.rest()
    // hiredis 0.14 callocs a multi-bulk reply's element array as soon as it reads the header, so
    // `*2147483647` asks for 16 GiB before any element arrives (hiredis 1.x bounds it with `maxelements`).
    // Redis, which Tandem trusts, never sends such a header; skip those inputs instead of measuring hiredis.
    if declaresHugeArray(bytes) { return 0 }
    let values = read(bytes, chunkSize: chunk)
    // A push is only taken when it is complete in the buffer before hiredis starts on it: in small chunks
    // (hiredis starts on every partial reply) and in one read of everything (the usual socket read).
    for size in [chunk, bytes.count + 1] {
        let takingPushes = read(bytes, chunkSize: size, takingMessagePushes: true)
        let parsed = size == chunk ? values : read(bytes, chunkSize: size)
        require(takingPushes == parsed, "message pushes read from the buffer differ: \(takingPushes) vs \(parsed)")
    }
    for value in values {
        require(depth(of: value) <= 8, "reply nested \(depth(of: value)) deep")
        let again = read(resp(value), chunkSize: 4096)
        require(again == [value], "conversion is not stable: \(value) → \(again)")
    }
    return 0
}

/// Every reply hiredis completes from `bytes`, fed `chunkSize` bytes at a time; with
/// `takingMessagePushes`, each complete `message` push is first offered to ``RedisPubSubPush`` as the
/// subscriber connection does, and what it takes is converted to the value hiredis would have made.
private func read(_ bytes: [UInt8], chunkSize: Int, takingMessagePushes: Bool = false) -> [RedisValue] {
    guard let reader = redisReaderCreate() else { fatalError("redisReaderCreate failed") }
    defer { redisReaderFree(reader) }
    var values: [RedisValue] = []
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + chunkSize)
        let fed = bytes[offset..<end].withUnsafeBufferPointer { chunk in
            chunk.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        }
        guard fed == REDIS_OK else { return values }
        offset = end
        while true {
            if takingMessagePushes, let message = RedisPubSubPush.take(from: reader, type: messageType) {
                values.append(.array([.bulkString(messageType), .bulkString(Array(message.channel.utf8)), .bulkString(message.payload)]))
                continue
            }
            var reply: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &reply) == REDIS_OK else { return values }
            guard let reply else { break }
            values.append(RedisValue(hiredisReply: reply.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
    }
    return values
}

private let messageType = Array("message".utf8)

/// Whether a line starts with `*N`, N over a million.
private func declaresHugeArray(_ bytes: [UInt8]) -> Bool {
    var index = 0
    while let star = bytes[index...].firstIndex(of: UInt8(ascii: "*")) {
        var end = star + 1
        if end < bytes.count, bytes[end] == UInt8(ascii: "-") { end += 1 }
        while end < bytes.count, (0x30...0x39).contains(bytes[end]) { end += 1 }
        if end - star > 7 { return true }
        index = star + 1
    }
    return false
}

private func depth(of value: RedisValue) -> Int {
    if case .array(let elements) = value { return 1 + (elements.map(depth).max() ?? 0) }
    return 0
}

/// RESP2 encoding of a converted value.
private func resp(_ value: RedisValue) -> [UInt8] {
    switch value {
    case .simpleString(let text): return Array("+\(text)\r\n".utf8)
    case .error(let text): return Array("-\(text)\r\n".utf8)
    case .integer(let n): return Array(":\(n)\r\n".utf8)
    case .bulkString(let bytes): return Array("$\(bytes.count)\r\n".utf8) + bytes + Array("\r\n".utf8)
    case .null: return Array("$-1\r\n".utf8)
    case .array(let elements): return Array("*\(elements.count)\r\n".utf8) + elements.flatMap(resp)
    }
}
