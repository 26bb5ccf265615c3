import CHiredis
import Testing

@testable import TandemRedis

#if canImport(Glibc)
import Glibc
#endif

/// Commands are stored as ready-made RESP (encoded once by the caller, copied as is into the
/// connection's output) instead of going through `redisAppendCommandArgv` (a `sdscatfmt` per argument):
/// the bytes must be exactly what hiredis itself makes of the same arguments.
@Suite struct RESPEncodingTests {
    /// hiredis's own encoding of `arguments`.
    static func hiredisEncoding(_ arguments: [[UInt8]]) -> [UInt8] {
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        let copies = arguments.map { bytes -> UnsafeMutablePointer<CChar> in
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
            for (i, byte) in bytes.enumerated() { copy[i] = CChar(bitPattern: byte) }
            return copy
        }
        defer { for copy in copies { copy.deallocate() } }
        for (copy, bytes) in zip(copies, arguments) {
            pointers.append(UnsafePointer(copy))
            lengths.append(bytes.count)
        }
        var target: UnsafeMutablePointer<CChar>?
        let length = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, lengths)
        guard length >= 0, let target else { return [] }
        defer { redisFreeCommand(target) }
        return (0..<Int(length)).map { UInt8(bitPattern: target[$0]) }
    }

    /// An argument type without a length of its own: encoded by the protocol's default (bytes first,
    /// then moved behind their header).
    struct Opaque: RedisArgument {
        let bytes: [UInt8]
        func appendRedisArgument(to buffer: inout [UInt8]) { buffer.append(contentsOf: bytes) }
    }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func respBytesAreHiredisBytes() {
        let long = [UInt8](repeating: 0x61, count: 123_456)
        let binary: [UInt8] = [0, 13, 10, 255, 36, 42]
        let manyArgs = (0..<120).map { "arg\($0)" }
        let script = RedisScript("return 1")
        // Each command with the arguments hiredis is given independently of how the command encodes them.
        let cases: [(RedisCommand, [[UInt8]])] = [
            (RedisCommand("PING"), [Self.bytes("PING")]),
            (RedisCommand("SET", "k", ""), [Self.bytes("SET"), Self.bytes("k"), []]),
            (RedisCommand("HSET", "tandem:{d}:records", "r1", binary), [Self.bytes("HSET"), Self.bytes("tandem:{d}:records"), Self.bytes("r1"), binary]),
            (RedisCommand("SET", "big", long), [Self.bytes("SET"), Self.bytes("big"), long]),
            (RedisCommand("SET", "big", Opaque(bytes: long)), [Self.bytes("SET"), Self.bytes("big"), long]),
            (RedisCommand("SET", Opaque(bytes: []), Opaque(bytes: binary)), [Self.bytes("SET"), [], binary]),
            (
                RedisCommand(["EVALSHA", "0123456789abcdef0123456789abcdef01234567", 2, "a", "b"] + manyArgs.map { $0 as any RedisArgument }),
                ([Self.bytes("EVALSHA"), Self.bytes("0123456789abcdef0123456789abcdef01234567"), Self.bytes("2"), Self.bytes("a"), Self.bytes("b")]
                    + manyArgs.map(Self.bytes))
            ),
            (
                RedisCommand(evalSHA: script, keys: ["k1", "k2"], args: [1, -5, 9_999_999_999, Int64(-7), "é😀", 1.5, 0, 10, Substring("sub")]),
                [Self.bytes("EVALSHA"), Self.bytes(script.sha1), Self.bytes("2"), Self.bytes("k1"), Self.bytes("k2"), Self.bytes("1"),
                 Self.bytes("-5"), Self.bytes("9999999999"), Self.bytes("-7"), Self.bytes("é😀"), Self.bytes("1.5"), Self.bytes("0"),
                 Self.bytes("10"), Self.bytes("sub")]
            ),
        ]
        for (command, arguments) in cases {
            var mine: [UInt8] = []
            command.writeRESP(into: &mine)
            #expect(mine == Self.hiredisEncoding(arguments), "\(command.name) with \(command.count) arguments")
            #expect(command.count == arguments.count)
            #expect(command.arguments == arguments)
        }
    }

    /// The `EVAL` retry of a script call: the source in place of the digest, the rest unchanged.
    @Test func evalFormReplacesTheDigestWithTheSource() {
        let script = RedisScript("return {KEYS[1], ARGV[1]}")
        let evalsha = RedisCommand(evalSHA: script, keys: ["k"], args: [[UInt8](repeating: 7, count: 300), "x"])
        let eval = evalsha.evalForm
        #expect(eval.script == nil)
        #expect(evalsha.script == script)
        var mine: [UInt8] = []
        eval.writeRESP(into: &mine)
        let expected: [[UInt8]] = [Self.bytes("EVAL"), Self.bytes(script.source), Self.bytes("1"), Self.bytes("k"), [UInt8](repeating: 7, count: 300), Self.bytes("x")]
        #expect(mine == Self.hiredisEncoding(expected))
        #expect(RedisCommand("GET", "k").evalForm == RedisCommand("GET", "k"))
    }

    /// A script call written argument by argument (`RedisCommand(evalSHA:capacity:writing:)`: the arguments
    /// counted as they are written, the header put in front at the end) is byte for byte the list form's,
    /// which is hiredis's — for every kind of argument, including one written in pieces and one only the
    /// protocol's default can encode, and one far larger than the capacity guessed (the buffer grows).
    @Test func aCommandWrittenArgumentByArgumentIsTheListFormsBytes() {
        let script = RedisScript("return ARGV")
        let binary: [UInt8] = [0, 13, 10, 255, 36, 42]
        let long = [UInt8](repeating: 0x62, count: 70_000)
        let big = UInt64(Int.max) + 5
        let written = RedisCommand(evalSHA: script) { out in
            out.write(2)
            out.writeBulkString(length: 7) { pointer in
                for (i, byte) in "tandem:".utf8.enumerated() { pointer[i] = byte }
            }
            out.write("k2")
            out.write("é😀")
            out.write(binary)
            out.write([UInt8]())
            out.write(long)
            out.write(UInt64(42))
            out.write(big)
            out.write(-3)
            out.write(1.5)
            out.write(Opaque(bytes: binary))
            out.writeBulkString(length: 0) { _ in }
        }
        let listed = RedisCommand(
            evalSHA: script, keys: ["tandem:", "k2"],
            args: ["é😀", binary, [UInt8](), long, UInt64(42), big, -3, 1.5, Opaque(bytes: binary), ""])
        let arguments: [[UInt8]] =
            [Self.bytes("EVALSHA"), Self.bytes(script.sha1), Self.bytes("2"), Self.bytes("tandem:"), Self.bytes("k2"), Self.bytes("é😀"),
             binary, [], long, Self.bytes("42"), Self.bytes(String(big)), Self.bytes("-3"), Self.bytes("1.5"), binary, []]
        #expect(written == listed)
        #expect(written.script == script)
        #expect(written.count == arguments.count)
        var mine: [UInt8] = []
        written.writeRESP(into: &mine)
        #expect(mine == Self.hiredisEncoding(arguments))
    }

    /// Arguments encoded once and written into a command (`write(encoded:)`) count as the arguments they
    /// are, and the command is byte for byte the one that writes them directly.
    @Test func encodedArgumentsWriteAsTheArgumentsThemselves() {
        let script = RedisScript("return ARGV")
        let encoded = RedisEncodedArguments { out in
            out.write(2)
            out.write("tandem:{d}:clock")
            out.write([UInt8](repeating: 0x61, count: 300))
        }
        #expect(encoded.count == 3)
        let written = RedisCommand(evalSHA: script, capacity: 0) { out in
            out.write(encoded: encoded)
            out.write("x")
            out.write(encoded: encoded)
        }
        let listed = RedisCommand(
            evalSHA: script, keys: [],
            args: [2, "tandem:{d}:clock", [UInt8](repeating: 0x61, count: 300), "x", 2, "tandem:{d}:clock", [UInt8](repeating: 0x61, count: 300)])
        // (The list form writes its own `numkeys` 0 first.)
        var expected = listed.arguments
        expected.remove(at: 2)
        #expect(written.arguments == expected)
        #expect(written.count == 9)
    }

    /// The header's argument count has as many digits as it needs (it is written last, in front of the
    /// arguments): 1, 2 and 3 digits, each with a capacity guessed too small and one large enough.
    @Test func aWrittenCommandsHeaderCountsItsArguments() {
        let script = RedisScript("return #ARGV")
        for n in [0, 7, 8, 97, 98, 150] {
            for capacity in [0, 100_000] {
                let written = RedisCommand(evalSHA: script, capacity: capacity) { out in
                    out.write(0)
                    for k in 0..<n { out.write(k) }
                }
                let listed = RedisCommand(evalSHA: script, keys: [], args: (0..<n).map { $0 as any RedisArgument })
                #expect(written == listed, "\(n) arguments, capacity \(capacity)")
                #expect(written.count == n + 3)
                #expect(written.arguments.last == Array((n > 0 ? "\(n - 1)" : "0").utf8))
            }
        }
    }
}
