import TandemRedis
import Testing

@Suite("Commands, values and scripts (no server)")
struct ValueTypeTests {
    @Test func commandArgumentsAreEncodedBinarySafe() {
        let bytes: [UInt8] = [0, 1, 0xff, 0]
        let key = "doc:1"
        let command = RedisCommand("HSET", key[...], "f", bytes, 42, Int64(-7), 1.5)
        #expect(command.name == "HSET")
        #expect(command.count == 7)
        #expect(
            command.arguments == [
                Array("HSET".utf8), Array("doc:1".utf8), Array("f".utf8), bytes,
                Array("42".utf8), Array("-7".utf8), Array("1.5".utf8),
            ])
        #expect(RedisCommand("PING").arguments == [Array("PING".utf8)])
        #expect(RedisCommand("SET", "k", "").arguments.last == [])
    }

    @Test func scriptSHA1IsLowercaseHex() {
        // Known value: `redis-cli SCRIPT LOAD "return 1"`.
        #expect(RedisScript("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }

    @Test func valueAccessors() {
        #expect(RedisValue.simpleString("OK").string == "OK")
        #expect(RedisValue.bulkString(Array("héllo".utf8)).string == "héllo")
        #expect(RedisValue.bulkString([0xff, 0xfe]).string == nil)
        #expect(RedisValue.bulkString([0xff, 0xfe]).bytes == [0xff, 0xfe])
        #expect(RedisValue.integer(5).int == 5)
        #expect(RedisValue.bulkString(Array("12".utf8)).int == 12)
        #expect(RedisValue.bulkString(Array("x".utf8)).int == nil)
        // Digits read in place give what `Int64(String)` gives, and so does everything else.
        for text in ["0", "007", "123456789012345678", "1234567890123456789", "9223372036854775807", "9223372036854775808",
            "-5", "+9", "", " 1", "1 ", "1x", "99999999999999999999"]
        {
            #expect(RedisValue.bulkString(Array(text.utf8)).int == Int64(text), "\(text)")
        }
        #expect(RedisValue.null.isNull)
        #expect(!RedisValue.integer(0).isNull)
        #expect(RedisValue.array([.integer(1)]).array == [.integer(1)])
        #expect(RedisValue.integer(1).array == nil)
        #expect(RedisValue.error("ERR x").errorMessage == "ERR x")
        #expect(RedisValue.error("ERR x").string == nil)
    }
}
