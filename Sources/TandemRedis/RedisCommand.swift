/// A value that can be sent as one argument of a Redis command.
///
/// Conformances encode themselves the way `redis-cli` would type them: strings as UTF-8, numbers in
/// decimal, byte arrays verbatim (binary-safe).
public protocol RedisArgument: Sendable {
    /// Appends this argument's bytes to `buffer`.
    func appendRedisArgument(to buffer: inout [UInt8])
}

extension String: RedisArgument {
    // Through the contiguous UTF-8 storage: appending the `utf8` view element by element went through
    // unspecialized generic code and showed up in profiles of the commit path.
    public func appendRedisArgument(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { buffer.append(contentsOf: $0) }
    }
}

extension Substring: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { buffer.append(contentsOf: $0) }
    }
}

extension Array: RedisArgument where Element == UInt8 {
    public func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: self) }
}

extension Int: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }
}

extension Int64: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }
}

extension Double: RedisArgument {
    /// Swift prints `1.5`, `1e+20`, `inf` and `-inf`, all of which Redis parses as floats.
    public func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: description.utf8) }
}

/// One Redis command: its name and arguments, stored binary-safe and ready for `redisAppendCommandArgv`.
///
/// ```swift
/// RedisCommand("HSET", key, field, bytes)
/// ```
public struct RedisCommand: Sendable, Equatable, Hashable {
    /// All argument bytes back to back, plus one trailing byte so the storage is never empty and
    /// always has a base address to hand to C.
    let storage: [UInt8]
    /// End offset (exclusive) of each argument in `storage`.
    let ends: [Int]

    /// Builds a command from its name and arguments.
    public init(_ name: String, _ arguments: any RedisArgument...) {
        self.init([name] + arguments)
    }

    /// Builds a command from a list whose first element is the command name.
    public init(_ arguments: [any RedisArgument]) {
        precondition(!arguments.isEmpty, "a Redis command needs at least a name")
        var storage: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(arguments.count)
        for argument in arguments {
            argument.appendRedisArgument(to: &storage)
            ends.append(storage.count)
        }
        storage.append(0)
        self.storage = storage
        self.ends = ends
    }

    /// `EVALSHA sha1 numkeys keys… args…` (or `EVAL source …`), built straight into one buffer.
    /// (Assembling `[name, sha1, numkeys] + keys + args` as arrays of `any RedisArgument` first cost a
    /// run-time generic metadata lookup per array, a visible part of every group commit.)
    init(script name: String, _ script: String, keys: [any RedisArgument], args: [any RedisArgument]) {
        var storage: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(3 + keys.count + args.count)
        name.appendRedisArgument(to: &storage)
        ends.append(storage.count)
        script.appendRedisArgument(to: &storage)
        ends.append(storage.count)
        keys.count.appendRedisArgument(to: &storage)
        ends.append(storage.count)
        for key in keys {
            key.appendRedisArgument(to: &storage)
            ends.append(storage.count)
        }
        for arg in args {
            arg.appendRedisArgument(to: &storage)
            ends.append(storage.count)
        }
        storage.append(0)
        self.storage = storage
        self.ends = ends
    }

    /// Number of arguments, the command name included.
    public var count: Int { ends.count }

    /// Appends the command as Redis's protocol has it on the wire (RESP: `*N\r\n` then `$LEN\r\nBYTES\r\n`
    /// per argument) — byte for byte what hiredis's `redisFormatCommandArgv` makes of it.
    func writeRESP(into out: inout [UInt8]) {
        out.reserveCapacity(out.count + storage.count + 16 * ends.count + 16)
        out.append(UInt8(ascii: "*"))
        Self.appendDecimal(ends.count, to: &out)
        out.append(13)
        out.append(10)
        storage.withUnsafeBufferPointer { bytes in
            var start = 0
            for end in ends {
                out.append(UInt8(ascii: "$"))
                Self.appendDecimal(end - start, to: &out)
                out.append(13)
                out.append(10)
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<end]))
                out.append(13)
                out.append(10)
                start = end
            }
        }
    }

    /// A non-negative integer in decimal ASCII.
    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        let start = out.count
        for _ in 0..<digits { out.append(0) }
        var v = value
        var i = start + digits - 1
        repeat {
            out[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
            v /= 10
            i -= 1
        } while v > 0
    }

    /// The arguments' bytes, the command name first.
    public var arguments: [[UInt8]] {
        var start = 0
        return ends.map { end in
            defer { start = end }
            return Array(storage[start..<end])
        }
    }

    /// The command name as text (for logs and metrics).
    public var name: String {
        String(decoding: storage[0..<ends[0]], as: UTF8.self)
    }

    /// The bytes of argument `index` (0 is the command name) without copying them.
    func argument(at index: Int) -> ArraySlice<UInt8> {
        storage[(index == 0 ? 0 : ends[index - 1])..<ends[index]]
    }
}
