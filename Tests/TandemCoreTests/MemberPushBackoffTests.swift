import Testing
@testable import TandemCore

/// A doc's memory of the hints its shard gave its members (`MemberPushBackoff`): a member's pushes reaching
/// the doc before its hint passed are refused with the time left; after it, or another member's, go on
/// to admission — so a doc never refuses a member this way longer than the hint it gave that member.
@Suite struct MemberPushBackoffTests {
    static let ms: UInt64 = 1_000_000

    @Test func aMembersPushBeforeItsHintIsRefusedWithTheTimeLeft() {
        var backoff = MemberPushBackoff<Int>()
        #expect(backoff.isEmpty)
        let t0: UInt64 = 5_000 * Self.ms
        #expect(backoff.timeLeftMs(1, now: t0) == nil)
        backoff.refused(1, retryAfterMs: 400, now: t0)
        #expect(!backoff.isEmpty)
        #expect(backoff.timeLeftMs(1, now: t0) == 400)
        #expect(backoff.timeLeftMs(1, now: t0 + 150 * Self.ms) == 250)
        // The last fraction of a millisecond still says 1 (0 would read as "now").
        #expect(backoff.timeLeftMs(1, now: t0 + 400 * Self.ms - 1) == 1)
        // The doc's other members are not held back by one member's hint.
        #expect(backoff.timeLeftMs(2, now: t0 + 10 * Self.ms) == nil)
    }

    /// At the deadline the member's pushes go to admission again, and the expired entry is gone.
    @Test func theHintPassedLetsTheMembersPushesThrough() {
        var backoff = MemberPushBackoff<Int>()
        let t0: UInt64 = 1_000 * Self.ms
        backoff.refused(1, retryAfterMs: 30, now: t0)
        #expect(backoff.timeLeftMs(1, now: t0 + 30 * Self.ms) == nil)
        #expect(backoff.isEmpty)
    }

    /// Two refusals close together: the later deadline holds, a shorter hint does not cut it.
    @Test func aShorterHintDoesNotShortenALongerOne() {
        var backoff = MemberPushBackoff<Int>()
        let t0: UInt64 = 1_000 * Self.ms
        backoff.refused(1, retryAfterMs: 900, now: t0)
        backoff.refused(1, retryAfterMs: 10, now: t0 + 5 * Self.ms)
        #expect(backoff.timeLeftMs(1, now: t0 + 100 * Self.ms) == 800)
        backoff.refused(1, retryAfterMs: 1_000, now: t0 + 100 * Self.ms)
        #expect(backoff.timeLeftMs(1, now: t0 + 100 * Self.ms) == 1_000)
    }

    /// A member that left is forgotten (a later connection may get its identity); a hint beyond the
    /// protocol's 30 s is clamped, so the deadline arithmetic cannot overflow.
    @Test func forgetAndClamp() {
        var backoff = MemberPushBackoff<Int>()
        let t0: UInt64 = 1_000 * Self.ms
        backoff.refused(1, retryAfterMs: 500, now: t0)
        backoff.refused(2, retryAfterMs: 500, now: t0)
        backoff.forget(1)
        #expect(backoff.timeLeftMs(1, now: t0) == nil)
        #expect(backoff.count == 1)
        backoff.removeAll()
        #expect(backoff.isEmpty)
        backoff.refused(3, retryAfterMs: .max, now: t0)
        #expect(backoff.timeLeftMs(3, now: t0) == 30_000)
    }

    /// Randomized against a plain model: whatever the order of refusals, look-ups and leaves, a member is
    /// refused exactly while `now` is before the latest deadline it was given since it last left, and told
    /// the time left.
    @Test func matchesAModelOfDeadlines() {
        var random = SplitMix64(seed: 28)
        for _ in 0..<200 {
            var backoff = MemberPushBackoff<Int>()
            var model: [Int: UInt64] = [:]
            var now: UInt64 = 1_000 * Self.ms
            for _ in 0..<300 {
                let member = Int(random.next() % 4)
                now += random.next() % (50 * Self.ms)
                switch random.next() % 4 {
                case 0:
                    let hint = random.next() % 300
                    backoff.refused(member, retryAfterMs: hint, now: now)
                    model[member] = max(model[member] ?? 0, now + hint * Self.ms)
                case 1:
                    backoff.forget(member)
                    model[member] = nil
                default:
                    let expected = model[member].flatMap { now < $0 ? max(($0 - now) / Self.ms, 1) : nil }
                    #expect(backoff.timeLeftMs(member, now: now) == expected)
                }
            }
        }
    }
}
