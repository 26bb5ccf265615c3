import CHiredis
import Testing

@testable import TandemRedis

#if canImport(Glibc)
import Glibc
#endif

/// Commands are written to hiredis as ready-made RESP (`RedisCommand.writeRESP`, one copy into its
/// buffer) instead of through `redisAppendCommandArgv` (a `sdscatfmt` per argument): the bytes must be
/// exactly what hiredis itself makes of the same arguments.
@Suite struct RESPEncodingTests {
    /// hiredis's own encoding of `command`'s arguments.
    static func hiredisEncoding(_ command: RedisCommand) -> [UInt8] {
        let arguments = command.arguments
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

    @Test func respBytesAreHiredisBytes() {
        let long = [UInt8](repeating: 0x61, count: 123_456)
        let binary: [UInt8] = [0, 13, 10, 255, 36, 42]
        let commands = [
            RedisCommand("PING"),
            RedisCommand("SET", "k", ""),
            RedisCommand("HSET", "tandem:{d}:records", "r1", binary),
            RedisCommand("SET", "big", long),
            RedisCommand(["EVALSHA", "0123456789abcdef0123456789abcdef01234567", 2, "a", "b"] + (0..<120).map { "arg\($0)" as any RedisArgument }),
            RedisCommand(script: "EVALSHA", "deadbeef", keys: ["k1", "k2"], args: [1, -5, 9_999_999_999, "é😀", 1.5]),
        ]
        for command in commands {
            var mine: [UInt8] = []
            command.writeRESP(into: &mine)
            #expect(mine == Self.hiredisEncoding(command), "\(command.name) with \(command.count) arguments")
        }
    }
}
