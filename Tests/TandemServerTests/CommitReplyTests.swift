import TandemAllocationCounter
import TandemCore
import TandemRedis
@testable import TandemServer
import Testing

/// The group-commit script's reply, read in one pass from its bytes (`SyncStore.reply(of:)`, issue 8).
/// The script's real replies are covered end to end by `GroupCommitScriptTests`; here every form the
/// parser accepts or refuses, and what reading an 'ok' costs in allocations.
@Suite struct CommitReplyTests {
    private static func bulk(_ text: String) -> RedisValue { .bulkString(Array(text.utf8)) }

    private static let sumA = DocChecksum(lane0: 0x0123_4567, lane1: 0x89ab_cdef)
    private static let sumB = DocChecksum(lane0: 0xdead_beef, lane1: 0x0000_0001)

    @Test func anOkReplyGivesItsClockTimeChecksumsAndWhetherItWasPublished() throws {
        let reply = RedisValue.array([
            Self.bulk("ok"), Self.bulk("42"), Self.bulk("1700000000123"),
            .array([Self.bulk(Self.sumA.hex), Self.bulk(Self.sumB.hex.uppercased())]), .integer(0),
        ])
        let parsed = try SyncStore.reply(of: reply)
        #expect(parsed.outcome == .committed(firstClock: 42, atMs: 1_700_000_000_123))
        #expect(parsed.sums == [Self.sumA, Self.sumB])
        #expect(parsed.published == false)

        // Integers and status lines read the same; a missing published flag or checksum list means
        // published, none known; a checksum that is not 16 hex digits is left out.
        let plain = RedisValue.array([
            .simpleString("ok"), .integer(7), .integer(0), .array([Self.bulk("xyz"), .simpleString(Self.sumA.hex), .null]),
        ])
        let parsedPlain = try SyncStore.reply(of: plain)
        #expect(parsedPlain.outcome == .committed(firstClock: 7, atMs: 0))
        #expect(parsedPlain.sums == [Self.sumA])
        #expect(parsedPlain.published)
        let short = try SyncStore.reply(of: .array([Self.bulk("ok"), Self.bulk("3")]))
        #expect(short.outcome == .committed(firstClock: 3, atMs: 0) && short.sums.isEmpty && short.published)
        #expect(try SyncStore.reply(of: .array([Self.bulk("ok"), Self.bulk("3"), Self.bulk("5"), .array([]), Self.bulk("1")])).published)
        // A number beyond 19 digits or with a sign is read as `UInt64(_:)` reads it.
        #expect(try SyncStore.reply(of: .array([Self.bulk("ok"), Self.bulk("18446744073709551615")])).outcome
            == .committed(firstClock: UInt64.max, atMs: 0))
        #expect(try SyncStore.reply(of: .array([Self.bulk("ok"), Self.bulk("+9")])).outcome == .committed(firstClock: 9, atMs: 0))
    }

    /// The script's 'ok' since stop 29: one string, `ok FIRST AT PUBLISHED[ SUM…]`.
    @Test func anOkTextGivesItsClockTimeChecksumsAndWhetherItWasPublished() throws {
        let parsed = try SyncStore.reply(of: Self.bulk("ok 42 1700000000123 0 \(Self.sumA.hex) \(Self.sumB.hex.uppercased())"))
        #expect(parsed.outcome == .committed(firstClock: 42, atMs: 1_700_000_000_123))
        #expect(parsed.sums == [Self.sumA, Self.sumB])
        #expect(parsed.published == false)
        let unknownSum = try SyncStore.reply(of: Self.bulk("ok 7 5 1"))
        #expect(unknownSum.outcome == .committed(firstClock: 7, atMs: 5) && unknownSum.sums.isEmpty && unknownSum.published)
        #expect(try SyncStore.reply(of: Self.bulk("ok 9999999999999999999 0 1")).outcome
            == .committed(firstClock: 9_999_999_999_999_999_999, atMs: 0))
    }

    @Test(arguments: [
        "ok", "ok 1 2", "ok 1 2 3", "ok 1 2 1 ", "ok  1 2 1", "ok 1 2 1 0123", "ok 1 2 1 0123456789abcdeg", "ok -1 2 1",
        "ok 1x 2 1", "ok 10000000000000000000 2 1", "OK 1 2 1", "ok 1 2 1 0123456789abcdef  0123456789abcdef",
    ])
    func aMalformedOkTextIsAnUnexpectedReply(text: String) {
        #expect(throws: SyncStoreError.self) { try SyncStore.reply(of: Self.bulk(text)) }
    }

    @Test func refusalsAndDuplicatesKeepTheirHeads() throws {
        #expect(try SyncStore.reply(of: .array([Self.bulk("conflict"), Self.bulk("12")])).outcome == .conflict(head: 12))
        #expect(
            try SyncStore.reply(of: .array([Self.bulk("too_large"), Self.bulk("12"), Self.bulk("10001")])).outcome
                == .tooLarge(head: 12, records: 10_001))
        let duplicate = try SyncStore.reply(
            of: .array([Self.bulk("duplicate"), Self.bulk("9"), .array([Self.bulk("0"), Self.bulk("8"), .integer(2), .integer(9)])]))
        #expect(duplicate.outcome == .duplicate(head: 9, clocks: [0: 8, 2: 9]))
        #expect(duplicate.sums.isEmpty && duplicate.published)
    }

    @Test(arguments: [
        RedisValue.null, .bulkString(Array("ok".utf8)), .array([]), .array([.bulkString(Array("ok".utf8))]),
        .array([.bulkString(Array("ok".utf8)), .bulkString(Array("-1".utf8))]),
        .array([.bulkString(Array("ok".utf8)), .bulkString(Array("1x".utf8))]),
        .array([.bulkString(Array("what".utf8)), .integer(1)]),
        .array([.bulkString(Array("duplicate".utf8)), .integer(1), .array([.bulkString(Array("a".utf8)), .integer(1)])]),
        .array([.error("ERR boom"), .integer(1)]),
    ])
    func anythingElseIsAnUnexpectedReply(reply: RedisValue) {
        #expect(throws: SyncStoreError.self) { try SyncStore.reply(of: reply) }
    }

    /// Reading an 'ok' reply of one commit makes one allocation: the checksums' array (three strings
    /// per reply before, and the array).
    @Test(.enabled(if: tandem_allocation_counter_available() == 1, "a sanitizer build keeps its own malloc"))
    func readingAnOkReplyAllocatesOnlyTheChecksumArray() throws {
        let reply = RedisValue.array([
            Self.bulk("ok"), Self.bulk("123456"), Self.bulk("1700000000123"), .array([Self.bulk(Self.sumA.hex)]), .integer(1),
        ])
        var allocations = Int.max
        for _ in 0..<5 {  // the first reading may set up the test's own metadata
            tandem_allocation_counter_start()
            let parsed = try SyncStore.reply(of: reply)
            allocations = min(allocations, tandem_allocation_counter_stop())
            #expect(parsed.sums == [Self.sumA])
        }
        #expect(allocations <= 1, "\(allocations) allocations to read one commit's reply")
    }

    /// The same for the text form: the checksums' array only.
    @Test(.enabled(if: tandem_allocation_counter_available() == 1, "a sanitizer build keeps its own malloc"))
    func readingAnOkTextAllocatesOnlyTheChecksumArray() throws {
        let reply = Self.bulk("ok 123456 1700000000123 1 \(Self.sumA.hex)")
        var allocations = Int.max
        for _ in 0..<5 {
            tandem_allocation_counter_start()
            let parsed = try SyncStore.reply(of: reply)
            allocations = min(allocations, tandem_allocation_counter_stop())
            #expect(parsed.sums == [Self.sumA])
        }
        #expect(allocations <= 1, "\(allocations) allocations to read one commit's reply")
    }
}
