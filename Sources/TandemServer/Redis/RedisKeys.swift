/// Redis key and channel names for a doc.
public enum RedisKeys {
    public static func channel(_ doc: String) -> String { "tandem:{\(doc)}" }
    public static func presencePrefix(_ doc: String) -> String { "tandem:{\(doc)}:presence:" }
    public static func presence(_ doc: String, node: String) -> String { presencePrefix(doc) + node }
    public static func nodes(_ doc: String) -> String { "tandem:{\(doc)}:nodes" }

    /// The doc id of a doc channel name, if it is one.
    ///
    /// Compared and cut by UTF-8 bytes: a node calls this for every pub/sub message it receives, and
    /// `hasPrefix`, `hasSuffix`, `dropFirst` and `dropLast` on the `String` (which compare and count
    /// characters) cost about 3,000 instructions a message (issue 11 item 4). The delimiters are ASCII,
    /// so the cut falls between characters.
    public static func doc(fromChannel channel: String) -> String? {
        var channel = channel  // (`withUTF8` is mutating; a native string is not copied)
        return channel.withUTF8 { bytes -> String? in
            guard bytes.count > channelPrefix.count, bytes[bytes.count - 1] == UInt8(ascii: "}"),
                UnsafeBufferPointer(rebasing: bytes[..<channelPrefix.count]).elementsEqual(channelPrefix)
            else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[channelPrefix.count..<(bytes.count - 1)]), as: UTF8.self)
        }
    }

    private static let channelPrefix = Array("tandem:{".utf8)
}
