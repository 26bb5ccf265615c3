/// One reply from Redis (RESP2), converted from hiredis's `redisReply` tree.
///
/// Strings are kept as bytes where Redis is binary-safe (`bulkString`); status and error lines are text.
public enum RedisValue: Sendable, Equatable, Hashable {
    /// A status line such as `+OK` or `+PONG`.
    case simpleString(String)
    /// An error reply such as `-ERR unknown command`. The async and future APIs turn this into
    /// ``RedisError/server(_:)``; the callback API hands it over as a value.
    case error(String)
    /// An integer reply (`:42`).
    case integer(Int64)
    /// A bulk string (`$3\r\nfoo`), binary-safe.
    case bulkString([UInt8])
    /// A null bulk string or null array (`$-1`, `*-1`), e.g. `GET` of a missing key.
    case null
    /// A multi-bulk reply; may nest.
    case array([RedisValue])
}

extension RedisValue {
    /// The text of a simple or bulk string (bulk strings must be valid UTF-8), else `nil`.
    public var string: String? {
        switch self {
        case .simpleString(let text):
            return text
        case .bulkString(let bytes):
            return String(validating: bytes, as: UTF8.self)
        default:
            return nil
        }
    }

    /// An integer reply, or a simple/bulk string that parses as a decimal `Int64` (`GET counter`).
    public var int: Int64? {
        switch self {
        case .integer(let value):
            return value
        case .bulkString(let bytes):
            // Plain digits are read in place: scripts return clocks and counters as bulk strings on every
            // commit, and making a `String` to parse each cost thousands of instructions (issue 8). Anything
            // else (a sign, 19 digits or more) is read as `Int64(_:)` reads it.
            return Self.digits(bytes) ?? string.flatMap { Int64($0) }
        case .simpleString:
            return string.flatMap { Int64($0) }
        default:
            return nil
        }
    }

    /// 1–18 ASCII digits (always within `Int64`), else nil.
    private static func digits(_ bytes: [UInt8]) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var number: Int64 = 0
        // By index: a debug build's `for byte in bytes` allocated once per byte (CommitReplyTests counts them).
        for k in bytes.indices {
            let byte = bytes[k]
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            number = number * 10 + Int64(byte - 0x30)
        }
        return number
    }

    /// The raw bytes of a bulk string (or the UTF-8 of a simple string), else `nil`.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes):
            return bytes
        case .simpleString(let text):
            return Array(text.utf8)
        default:
            return nil
        }
    }

    /// The elements of an array reply, else `nil`.
    public var array: [RedisValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// Whether this is the null reply.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The message of an error reply, else `nil`.
    public var errorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }
}
