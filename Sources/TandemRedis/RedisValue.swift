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
        case .simpleString, .bulkString:
            return string.flatMap { Int64($0) }
        default:
            return nil
        }
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
