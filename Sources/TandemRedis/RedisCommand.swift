/// A value that can be sent as one argument of a Redis command.
///
/// Conformances encode themselves the way `redis-cli` would type them: strings as UTF-8, numbers in
/// decimal, byte arrays verbatim (binary-safe).
public protocol RedisArgument: Sendable {
    /// Appends this argument's bytes to `buffer`.
    func appendRedisArgument(to buffer: inout [UInt8])

    /// Appends this argument as one RESP bulk string (`$LEN\r\nBYTES\r\n`) to `buffer`.
    ///
    /// The default appends the bytes, then moves them to make room for the length in front of them.
    /// Types that know their length up front (strings, byte arrays) write the header first instead.
    func appendRedisBulkString(to buffer: inout [UInt8])
}

extension RedisArgument {
    public func appendRedisBulkString(to buffer: inout [UInt8]) {
        let start = buffer.count
        appendRedisArgument(to: &buffer)
        let length = buffer.count - start
        let headerLength = 3 + RESP.digits(length)
        RESP.appendZeros(headerLength, to: &buffer)
        buffer.withUnsafeMutableBufferPointer { bytes in
            let base = bytes.baseAddress! + start
            UnsafeMutableRawPointer(base + headerLength).copyMemory(from: base, byteCount: length)  // may overlap: memmove
            var header = base
            RESP.writeBulkHeader(length, digits: headerLength - 3, at: &header)
        }
        buffer.append(13)
        buffer.append(10)
    }
}

extension String: RedisArgument {
    // Through the contiguous UTF-8 storage: appending the `utf8` view element by element went through
    // unspecialized generic code and showed up in profiles of the commit path.
    public func appendRedisArgument(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { buffer.append(contentsOf: $0) }
    }

    public func appendRedisBulkString(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { RESP.appendBulkString($0, to: &buffer) }
    }
}

extension Substring: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { buffer.append(contentsOf: $0) }
    }

    public func appendRedisBulkString(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { RESP.appendBulkString($0, to: &buffer) }
    }
}

extension Array: RedisArgument where Element == UInt8 {
    public func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: self) }

    public func appendRedisBulkString(to buffer: inout [UInt8]) {
        withUnsafeBufferPointer { RESP.appendBulkString($0, to: &buffer) }
    }
}

extension Int: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }

    public func appendRedisBulkString(to buffer: inout [UInt8]) {
        guard self >= 0 else { return description.appendRedisBulkString(to: &buffer) }
        // Header and digits in one piece: no String in between (counts, TTLs and limits are in most calls).
        RESP.appendBulkInteger(self, to: &buffer)
    }
}

extension Int64: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }
    public func appendRedisBulkString(to buffer: inout [UInt8]) { Int(self).appendRedisBulkString(to: &buffer) }
}

extension Double: RedisArgument {
    /// Swift prints `1.5`, `1e+20`, `inf` and `-inf`, all of which Redis parses as floats.
    public func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: description.utf8) }
    public func appendRedisBulkString(to buffer: inout [UInt8]) { description.appendRedisBulkString(to: &buffer) }
}

/// One Redis command, stored as the bytes Redis's protocol has for it on the wire (RESP: `*N\r\n`, then
/// `$LEN\r\nBYTES\r\n` per argument), binary-safe.
///
/// The arguments are encoded once, by the caller, straight into that one buffer; the connection's owner
/// thread copies it into its output as is. (Before, each command was an array of arguments plus an array
/// of their ends, turned into RESP on the owner thread, and that into hiredis's buffer: three copies and
/// four allocations per command, most of the client's cost per script call.)
///
/// ```swift
/// RedisCommand("HSET", key, field, bytes)
/// ```
public struct RedisCommand: Sendable, Equatable, Hashable {
    /// The RESP bytes.
    let resp: [UInt8]
    /// Number of arguments, the command name included.
    public let count: Int
    /// For `EVALSHA` calls made with ``RedisCommandClient/evalScript(_:keys:args:completion:)``: the script,
    /// so that the connection can load it first and fall back to `EVAL` on `NOSCRIPT`.
    let script: RedisScript?

    /// Builds a command from its name and arguments.
    public init(_ name: String, _ arguments: any RedisArgument...) {
        var resp = RESP.start(count: 1 + arguments.count)
        name.appendRedisBulkString(to: &resp)
        RESP.append(arguments, to: &resp)
        self.init(resp: resp, count: 1 + arguments.count, script: nil)
    }

    /// Builds a command from a list whose first element is the command name.
    public init(_ arguments: [any RedisArgument]) {
        precondition(!arguments.isEmpty, "a Redis command needs at least a name")
        var resp = RESP.start(count: arguments.count)
        RESP.append(arguments, to: &resp)
        self.init(resp: resp, count: arguments.count, script: nil)
    }

    /// `EVALSHA sha1 numkeys keys… args…` for `script`, which the command carries along (see `script`).
    init(evalSHA script: RedisScript, keys: [any RedisArgument], args: [any RedisArgument]) {
        let count = 3 + keys.count + args.count
        var resp = RESP.start(count: count)
        "EVALSHA".appendRedisBulkString(to: &resp)
        script.sha1.appendRedisBulkString(to: &resp)
        keys.count.appendRedisBulkString(to: &resp)
        RESP.append(keys, to: &resp)
        RESP.append(args, to: &resp)
        self.init(resp: resp, count: count, script: script)
    }

    private init(resp: [UInt8], count: Int, script: RedisScript?) {
        self.resp = resp
        self.count = count
        self.script = script
    }

    /// This `EVALSHA` call as `EVAL` with the script's source (which also caches the script), and without
    /// the script attached: what a `NOSCRIPT` answer is retried with. `self` unchanged for other commands.
    var evalForm: RedisCommand {
        guard let script else { return self }
        let rest = RESP.offset(ofArgument: 2, in: resp)
        var eval = RESP.start(count: count, capacity: script.source.utf8.count + resp.count - rest + 32)
        "EVAL".appendRedisBulkString(to: &eval)
        script.source.appendRedisBulkString(to: &eval)
        eval.append(contentsOf: resp[rest...])
        return RedisCommand(resp: eval, count: count, script: nil)
    }

    /// Appends the command's RESP bytes.
    func writeRESP(into out: inout [UInt8]) {
        out.append(contentsOf: resp)
    }

    /// The arguments' bytes, the command name first.
    public var arguments: [[UInt8]] {
        (0..<count).map { Array(argument(at: $0)) }
    }

    /// The command name as text (for logs and metrics).
    public var name: String {
        String(decoding: argument(at: 0), as: UTF8.self)
    }

    /// The bytes of argument `index` (0 is the command name) without copying them. Walks the headers
    /// before it: meant for the few leading arguments that routing looks at.
    func argument(at index: Int) -> ArraySlice<UInt8> {
        let start = RESP.offset(ofArgument: index, in: resp)
        let (length, body) = RESP.bulkHeader(at: start, in: resp)
        return resp[body..<body + length]
    }
}

/// Writing and walking RESP (only what ``RedisCommand`` makes: an array header and bulk strings).
enum RESP {
    /// A buffer that starts with the array header for `count` arguments. The capacity guess covers
    /// typical commands (a presence write, a group commit) in one allocation.
    static func start(count: Int, capacity: Int? = nil) -> [UInt8] {
        var resp: [UInt8] = []
        resp.reserveCapacity(capacity ?? max(256, 48 * count))
        appendHeader(UInt8(ascii: "*"), count, to: &resp)
        return resp
    }

    /// Each argument as a bulk string. Through the array's storage: `for argument in arguments` copied
    /// every existential out of the array first (an outlined copy and destroy per argument, ~50
    /// instructions each in the callgrind profile).
    @inline(__always)
    static func append(_ arguments: [any RedisArgument], to out: inout [UInt8]) {
        arguments.withUnsafeBufferPointer { arguments in
            for index in arguments.indices { arguments[index].appendRedisBulkString(to: &out) }
        }
    }

    /// `$LEN\r\nBYTES\r\n`.
    @inline(__always)
    static func appendBulkString(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        appendHeader(UInt8(ascii: "$"), bytes.count, to: &out)
        out.append(contentsOf: bytes)
        out.append(13)
        out.append(10)
    }

    /// `*N\r\n` or `$LEN\r\n`, written in a scratch buffer on the stack and appended in one piece (appending
    /// placeholder bytes and then the digits went through the generic `append(contentsOf:)` of a
    /// `Repeated`, a large part of encoding a command in the callgrind profile).
    @inline(__always)
    static func appendHeader(_ marker: UInt8, _ value: Int, to out: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            base[0] = marker
            let count = Self.digits(value)
            writeDecimal(value, digits: count, at: base + 1)
            base[count + 1] = 13
            base[count + 2] = 10
            out.append(contentsOf: UnsafeBufferPointer(start: base, count: count + 3))
        }
    }

    /// `$LEN\r\nDIGITS\r\n` for a non-negative integer, in one piece.
    @inline(__always)
    static func appendBulkInteger(_ value: Int, to out: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let count = Self.digits(value)  // at most 19, so its own length has at most 2 digits
            base[0] = UInt8(ascii: "$")
            let lengthDigits = count < 10 ? 1 : 2
            writeDecimal(count, digits: lengthDigits, at: base + 1)
            var position = 1 + lengthDigits
            base[position] = 13
            base[position + 1] = 10
            position += 2
            writeDecimal(value, digits: count, at: base + position)
            position += count
            base[position] = 13
            base[position + 1] = 10
            out.append(contentsOf: UnsafeBufferPointer(start: base, count: position + 2))
        }
    }

    /// `count` (at most 32) zero bytes, appended in one piece.
    @inline(__always)
    static func appendZeros(_ count: Int, to out: inout [UInt8]) {
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeBytes(of: &scratch) { raw in
            out.append(contentsOf: UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count))
        }
    }

    /// Decimal digits of a non-negative integer.
    @inline(__always)
    static func digits(_ value: Int) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// A non-negative integer of `digits` digits in decimal ASCII at `pointer`.
    @inline(__always)
    static func writeDecimal(_ value: Int, digits: Int, at pointer: UnsafeMutablePointer<UInt8>) {
        var v = value
        var i = digits - 1
        repeat {
            pointer[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
            v /= 10
            i -= 1
        } while v > 0
    }

    /// Writes `$LEN\r\n` (LEN of `digits` digits) at `pointer` and advances it.
    static func writeBulkHeader(_ length: Int, digits: Int, at pointer: inout UnsafeMutablePointer<UInt8>) {
        pointer.pointee = UInt8(ascii: "$")
        var v = length
        var i = digits
        repeat {
            pointer[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
            v /= 10
            i -= 1
        } while v > 0
        pointer[digits + 1] = 13
        pointer[digits + 2] = 10
        pointer += digits + 3
    }

    /// Where argument `index`'s `$` header starts in a command's RESP bytes.
    static func offset(ofArgument index: Int, in resp: [UInt8]) -> Int {
        var position = lineEnd(from: 0, in: resp)  // past `*N\r\n`
        for _ in 0..<index {
            let (length, body) = bulkHeader(at: position, in: resp)
            position = body + length + 2
        }
        return position
    }

    /// The length in a `$LEN\r\n` header at `position`, and where the bytes start.
    static func bulkHeader(at position: Int, in resp: [UInt8]) -> (length: Int, body: Int) {
        var length = 0
        var i = position + 1
        while resp[i] != 13 {
            length = length * 10 + Int(resp[i] - 48)
            i += 1
        }
        return (length, i + 2)
    }

    /// Just past the `\r\n` that ends the line starting at `position`.
    private static func lineEnd(from position: Int, in resp: [UInt8]) -> Int {
        var i = position
        while resp[i] != 13 { i += 1 }
        return i + 2
    }
}
