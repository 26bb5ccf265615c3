@testable import TandemRedis
import Testing

@Suite("Reconnect backoff")
struct BackoffTests {
    /// A seeded xorshift generator, so the run is reproducible. (A constant generator would make the
    /// standard library's rejection sampling in `random(in:using:)` loop forever.)
    struct SeededRandom: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
    }

    @Test func doublesUpToTheMaximumWithJitterInTheUpperHalf() {
        var backoff = Backoff(initialNanoseconds: 50_000_000, maxNanoseconds: 2_000_000_000)
        var ceilings: [Int64] = []
        for _ in 0..<10 {
            // The system generator, as connections use it (under ThreadSanitizer this path once crashed the
            // process: swiftlang/swift#66099, see `Backoff.nextDelay()`).
            let delay = backoff.nextDelay()
            let ceiling = min(2_000_000_000, 50_000_000 * (Int64(1) << (backoff.failures - 1)))
            #expect(delay >= ceiling / 2 && delay <= ceiling)
            ceilings.append(ceiling)
        }
        #expect(ceilings.prefix(6) == [50_000_000, 100_000_000, 200_000_000, 400_000_000, 800_000_000, 1_600_000_000])
        #expect(ceilings.suffix(4).allSatisfy { $0 == 2_000_000_000 })
    }

    @Test func resetStartsOverAndHugeFailureCountsDoNotOverflow() {
        var backoff = Backoff(initialNanoseconds: 1_000_000, maxNanoseconds: 5_000_000)
        var random = SeededRandom(state: 0x9E37_79B9_7F4A_7C15)
        for _ in 0..<200 { _ = backoff.nextDelay(using: &random) }
        #expect(backoff.nextDelay(using: &random) <= 5_000_000)
        backoff.reset()
        #expect(backoff.nextDelay(using: &random) <= 1_000_000)
    }
}
