/// A value that can be sent as one argument of a Redis command.
///
/// Conformances encode themselves the way `redis-cli` would type them: strings as UTF-8, numbers in
/// decimal, byte arrays verbatim (binary-safe).
public protocol RedisArgument: Sendable {
    /// Appends this argument's bytes to `buffer`.
    func appendRedisArgument(to buffer: inout [UInt8])

    /// Writes this argument as one RESP bulk string (`$LEN\r\nBYTES\r\n`) into a command being built.
    ///
    /// The default goes through ``appendRedisArgument(to:)`` and then moves the bytes to make room for
    /// their length in front of them. Types that know their bytes up front (strings, byte arrays,
    /// integers) write the header and the bytes in one step instead.
    func encode(into encoder: inout RedisCommandEncoder)
}

extension RedisArgument {
    public func encode(into encoder: inout RedisCommandEncoder) {
        encoder.append(self)
    }
}

extension String: RedisArgument {
    // Through the contiguous UTF-8 storage: appending the `utf8` view element by element went through
    // unspecialized generic code and showed up in profiles of the commit path.
    public func appendRedisArgument(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { buffer.append(contentsOf: $0) }
    }

    public func encode(into encoder: inout RedisCommandEncoder) {
        var string = self
        string.withUTF8 { encoder.appendBulkString($0) }
    }
}

extension Substring: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) {
        var string = self
        string.withUTF8 { buffer.append(contentsOf: $0) }
    }

    public func encode(into encoder: inout RedisCommandEncoder) {
        var string = self
        string.withUTF8 { encoder.appendBulkString($0) }
    }
}

extension Array: RedisArgument where Element == UInt8 {
    public func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: self) }

    public func encode(into encoder: inout RedisCommandEncoder) {
        withUnsafeBufferPointer { encoder.appendBulkString($0) }
    }
}

extension Int: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }

    public func encode(into encoder: inout RedisCommandEncoder) {
        // Straight into the command: no String in between (counts, TTLs and limits are in most calls).
        guard self >= 0 else { return description.encode(into: &encoder) }
        encoder.appendBulkInteger(self)
    }
}

extension Int64: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }
    public func encode(into encoder: inout RedisCommandEncoder) { Int(self).encode(into: &encoder) }
}

extension UInt64: RedisArgument {
    public func appendRedisArgument(to buffer: inout [UInt8]) { description.appendRedisArgument(to: &buffer) }

    public func encode(into encoder: inout RedisCommandEncoder) {
        // Clocks and times: straight into the command, as `Int` does.
        guard self <= UInt64(Int.max) else { return description.encode(into: &encoder) }
        encoder.appendBulkInteger(Int(self))
    }
}

extension Double: RedisArgument {
    /// Swift prints `1.5`, `1e+20`, `inf` and `-inf`, all of which Redis parses as floats.
    public func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: description.utf8) }
    public func encode(into encoder: inout RedisCommandEncoder) { description.encode(into: &encoder) }
}

/// A command's RESP bytes as they are written, argument by argument (see ``RedisArgument/encode(into:)``).
///
/// The buffer is sized up front (zeroed room past what is written) and written through a pointer: one
/// bounds check and one copy per argument. (Appending to an array costs about 100 instructions per
/// `append(contentsOf:)` through the generic sequence path, two or three per argument: most of a group
/// commit's encoding in the callgrind profile.)
///
/// Callers that build a large command argument by argument (a group commit: dozens of arguments) write
/// them here directly (``RedisCommand/init(evalSHA:capacity:writing:)``), with ``write(_:)`` and
/// ``writeBulkString(length:_:)``, rather than collecting an `[any RedisArgument]` first. The arguments
/// are counted as they are written and the array header `*N\r\n`, which comes first, is filled in at the
/// end, into room left in front of them (one pass: measuring the command in a first run of the writer
/// cost about as much as writing it, ~9,000 instructions per group commit in the callgrind profile).
public struct RedisCommandEncoder {
    /// `bytes[0..<written]` is the command so far; the rest is room.
    private var bytes: [UInt8]
    private var written = 0
    /// Arguments written (`finishCounted` puts their count in the header).
    private(set) var arguments = 0
    /// Bytes left free in front of the arguments for the header (0: the header was written first).
    private let headerRoom: Int

    /// Starts a command of `count` arguments with room for `capacity` bytes (it grows if need be).
    init(count: Int, capacity: Int? = nil) {
        bytes = [UInt8](repeating: 0, count: capacity ?? max(256, 48 * count))
        headerRoom = 0
        appendHeader(UInt8(ascii: "*"), count)
    }

    /// Starts a command whose arguments are counted as they are written (see `finishCounted`), with room
    /// for about `capacity` bytes (it grows if need be).
    init(countingWithCapacity capacity: Int) {
        // `*` + up to 19 digits + `\r\n`.
        headerRoom = 23
        bytes = [UInt8](repeating: 0, count: headerRoom + max(capacity, 64))
        written = headerRoom
    }

    /// Appends arguments encoded before (the same in many commands: a doc's keys), as one copy.
    public mutating func write(encoded: RedisEncodedArguments) {
        encoded.bytes.withUnsafeBufferPointer { appendRaw($0) }
        arguments += encoded.count
    }

    /// Appends one argument, encoded as its type encodes it (``RedisArgument/encode(into:)``), without
    /// boxing it in an existential.
    @inline(__always)
    public mutating func write(_ argument: some RedisArgument) {
        argument.encode(into: &self)
    }

    /// Appends one bulk string of exactly `length` bytes, which `body` writes at the pointer it is given
    /// (for an argument made of pieces, such as a key from a prefix and a suffix: no string in between).
    @inline(__always)
    public mutating func writeBulkString(length: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Void) {
        let digits = RESP.digits(length)
        arguments += 1
        reserve(length + digits + 5)
        let start = written
        bytes.withUnsafeMutableBufferPointer { buffer in
            var pointer = buffer.baseAddress! + start
            RESP.writeBulkHeader(length, digits: digits, at: &pointer)
            body(pointer)
            pointer[length] = 13
            pointer[length + 1] = 10
        }
        written = start + digits + 5 + length
    }

    /// The bytes written.
    mutating func finish() -> [UInt8] {
        bytes.removeLast(bytes.count - written)
        return bytes
    }

    /// The arguments written into a counting encoder (`init(countingWithCapacity:)`), without a header.
    mutating func finishArguments() -> (bytes: [UInt8], count: Int) {
        precondition(headerRoom > 0, "finishArguments needs a counting encoder")
        bytes.removeLast(bytes.count - written)
        bytes.removeFirst(headerRoom)
        return (bytes, arguments)
    }

    /// The bytes of a command started with `init(countingWithCapacity:)`: the header `*N\r\n` for the
    /// arguments written goes right in front of them, and the room before it is dropped (one move of
    /// the bytes within the buffer).
    mutating func finishCounted() -> (resp: [UInt8], count: Int) {
        precondition(headerRoom > 0, "finishCounted needs a counting encoder")
        let count = arguments
        let digits = RESP.digits(count)
        let start = headerRoom - digits - 3
        bytes.withUnsafeMutableBufferPointer { buffer in
            let pointer = buffer.baseAddress! + start
            pointer[0] = UInt8(ascii: "*")
            RESP.writeDecimal(count, digits: digits, at: pointer + 1)
            pointer[digits + 1] = 13
            pointer[digits + 2] = 10
        }
        bytes.removeLast(bytes.count - written)
        bytes.removeFirst(start)
        return (bytes, count)
    }

    /// Appends `$LEN\r\nBYTES\r\n`.
    public mutating func appendBulkString(_ source: UnsafeBufferPointer<UInt8>) {
        writeBulkString(length: source.count) { pointer in
            if source.count > 0 { UnsafeMutableRawPointer(pointer).copyMemory(from: source.baseAddress!, byteCount: source.count) }  // memcpy
        }
    }

    /// Appends `$LEN\r\nDIGITS\r\n` for a non-negative integer.
    mutating func appendBulkInteger(_ value: Int) {
        let digits = RESP.digits(value)
        writeBulkString(length: digits) { RESP.writeDecimal(value, digits: digits, at: $0) }
    }

    /// Appends bytes that are RESP already.
    mutating func appendRaw(_ source: UnsafeBufferPointer<UInt8>) {
        guard source.count > 0 else { return }
        reserve(source.count)
        let start = written
        bytes.withUnsafeMutableBufferPointer { buffer in
            UnsafeMutableRawPointer(buffer.baseAddress! + start).copyMemory(from: source.baseAddress!, byteCount: source.count)
        }
        written = start + source.count
    }

    /// `*N\r\n`.
    private mutating func appendHeader(_ marker: UInt8, _ value: Int) {
        let digits = RESP.digits(value)
        reserve(digits + 3)
        let start = written
        bytes.withUnsafeMutableBufferPointer { buffer in
            let pointer = buffer.baseAddress! + start
            pointer[0] = marker
            RESP.writeDecimal(value, digits: digits, at: pointer + 1)
            pointer[digits + 1] = 13
            pointer[digits + 2] = 10
        }
        written = start + digits + 3
    }

    /// An argument without a bulk-string encoding of its own: its bytes are appended through
    /// ``RedisArgument/appendRedisArgument(to:)``, then moved behind the header once their length is known.
    mutating func append(_ argument: some RedisArgument) {
        arguments += 1
        bytes.removeLast(bytes.count - written)
        let start = written
        argument.appendRedisArgument(to: &bytes)
        let length = bytes.count - start
        let digits = RESP.digits(length)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: digits + 5))
        bytes.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress! + start
            UnsafeMutableRawPointer(base + digits + 3).copyMemory(from: base, byteCount: length)  // may overlap: memmove
            var header = base
            RESP.writeBulkHeader(length, digits: digits, at: &header)
            base[digits + 3 + length] = 13
            base[digits + 4 + length] = 10
        }
        written = bytes.count
    }

    /// Makes room for `count` more bytes.
    @inline(__always)
    private mutating func reserve(_ count: Int) {
        if written + count > bytes.count { grow(count) }
    }

    private mutating func grow(_ count: Int) {
        bytes.append(contentsOf: [UInt8](repeating: 0, count: max(count, bytes.count)))
    }
}

/// Arguments encoded once (RESP bulk strings), to be written into many commands with
/// ``RedisCommandEncoder/write(encoded:)``: the part of a frequent call that never changes, such as the
/// keys of a doc's group commit (fifteen keys built byte by byte on every call otherwise).
public struct RedisEncodedArguments: Sendable, Equatable {
    let bytes: [UInt8]
    /// How many arguments they are.
    public let count: Int

    /// The arguments `write` writes, encoded.
    public init(_ write: (inout RedisCommandEncoder) -> Void) {
        var encoder = RedisCommandEncoder(countingWithCapacity: 256)
        write(&encoder)
        (bytes, count) = encoder.finishArguments()
    }
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
        var encoder = RedisCommandEncoder(count: 1 + arguments.count)
        name.encode(into: &encoder)
        RESP.encode(arguments, into: &encoder)
        self.init(resp: encoder.finish(), count: 1 + arguments.count, script: nil)
    }

    /// Builds a command from a list whose first element is the command name.
    public init(_ arguments: [any RedisArgument]) {
        precondition(!arguments.isEmpty, "a Redis command needs at least a name")
        var encoder = RedisCommandEncoder(count: arguments.count)
        RESP.encode(arguments, into: &encoder)
        self.init(resp: encoder.finish(), count: arguments.count, script: nil)
    }

    /// `EVALSHA sha1 numkeys keys… args…` for `script`, which the command carries along (see `script`).
    init(evalSHA script: RedisScript, keys: [any RedisArgument], args: [any RedisArgument]) {
        let count = 3 + keys.count + args.count
        var encoder = RedisCommandEncoder(count: count)
        "EVALSHA".encode(into: &encoder)
        script.sha1.encode(into: &encoder)
        keys.count.encode(into: &encoder)
        RESP.encode(keys, into: &encoder)
        RESP.encode(args, into: &encoder)
        self.init(resp: encoder.finish(), count: count, script: script)
    }

    /// `EVALSHA sha1 …` for `script` (carried along, as for the other script calls), with everything after
    /// the digest — `numkeys`, the keys, the arguments — written by `write` (see ``RedisCommandEncoder``,
    /// which counts them). For large calls made often: no `[any RedisArgument]`, and one buffer.
    /// - Parameter capacity: about how many bytes `write` writes (a good guess saves growing the buffer).
    public init(evalSHA script: RedisScript, capacity: Int = 1024, writing write: (inout RedisCommandEncoder) -> Void) {
        // `$7\r\nEVALSHA\r\n` and the digest's bulk string (`$40\r\n…\r\n`) come first.
        var encoder = RedisCommandEncoder(countingWithCapacity: capacity + 64)
        "EVALSHA".encode(into: &encoder)
        script.sha1.encode(into: &encoder)
        write(&encoder)
        let (resp, count) = encoder.finishCounted()
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
        var eval = RedisCommandEncoder(count: count, capacity: script.source.utf8.count + resp.count - rest + 48)
        "EVAL".encode(into: &eval)
        script.source.encode(into: &eval)
        resp.withUnsafeBufferPointer { eval.appendRaw(UnsafeBufferPointer(rebasing: $0[rest...])) }
        return RedisCommand(resp: eval.finish(), count: count, script: nil)
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
    /// Each argument as a bulk string. Through the array's storage: `for argument in arguments` copied
    /// every existential out of the array first (an outlined copy and destroy per argument, ~50
    /// instructions each in the callgrind profile).
    @inline(__always)
    static func encode(_ arguments: [any RedisArgument], into encoder: inout RedisCommandEncoder) {
        arguments.withUnsafeBufferPointer { arguments in
            for index in arguments.indices { arguments[index].encode(into: &encoder) }
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
