import CHiredis

/// Pub/sub message pushes read straight from a hiredis reader's buffer (issue 11 item 4).
///
/// Every `message` push (`*3` of bulk strings: type, channel, payload) became, through hiredis's reply
/// parser, a reply tree of eight C allocations made and freed again and a tree of Swift values copied
/// from it: about 5,000 instructions per push on a node's subscriber thread, which reads one push per
/// doc per tick from every node (its own echoes included). A push of exactly that layout, complete in
/// the buffer, is located by `tandem_redis_peek_message` (CHiredis) and copied out once, channel and
/// payload; anything else — another reply, another layout, an incomplete push, a reply hiredis has
/// started — is left to hiredis, which reads it as before (`RedisPubSubPushTests` feeds the same bytes
/// both ways).
enum RedisPubSubPush {
    /// The push of type `type` at the front of what `reader` has read, consumed; `nil` (nothing consumed)
    /// when there is none, or its channel is not UTF-8 (hiredis's path then reports it as before).
    static func take(from reader: UnsafeMutablePointer<redisReader>, type: [UInt8]) -> RedisPubSubMessage? {
        var found = tandem_redis_message()
        let length = type.withUnsafeBufferPointer { type in
            type.withMemoryRebound(to: CChar.self) { tandem_redis_peek_message(reader, $0.baseAddress, $0.count, &found) }
        }
        guard length > 0, let channelStart = found.channel else { return nil }
        let channelBytes = UnsafeBufferPointer(
            start: UnsafeRawPointer(channelStart).assumingMemoryBound(to: UInt8.self), count: found.channel_length)
        let channel: String
        // Tandem's channel names are ASCII: checked by a loop rather than validated as UTF-8 (which cost
        // ~1,000 instructions a push).
        if channelBytes.allSatisfy({ $0 < 0x80 }) {
            channel = String(decoding: channelBytes, as: UTF8.self)
        } else if let valid = String(validating: channelBytes, as: UTF8.self) {
            channel = valid
        } else {
            return nil
        }
        let payload = found.payload_length == 0 ? [] : Array(UnsafeRawBufferPointer(start: found.payload, count: found.payload_length))
        reader.pointee.pos += length
        return RedisPubSubMessage(channel: channel, payload: payload)
    }
}
