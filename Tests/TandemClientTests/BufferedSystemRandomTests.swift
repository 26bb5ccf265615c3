import Testing

@testable import TandemClient

/// The masking keys' source (`BufferedSystemRandom`): fresh words across refills, never a replayed or
/// zeroed buffer (a stuck index or a failed fill would repeat keys, which RFC 6455 §5.3 forbids).
@Suite struct BufferedSystemRandomTests {
    @Test func drawsAreFreshAcrossRefills() {
        var random = BufferedSystemRandom()
        var seen = Set<UInt64>()
        // Four buffers' worth and a bit: every refill boundary crossed.
        for _ in 0..<(128 * 4 + 3) { seen.insert(random.next()) }
        // 515 draws of 64 random bits: a repeat has odds of about 10^-14.
        #expect(seen.count == 128 * 4 + 3)
        #expect(!seen.contains(0))
    }

    @Test func twoSourcesDrawDifferentBytes() {
        var a = BufferedSystemRandom()
        var b = BufferedSystemRandom()
        #expect((0..<8).map { _ in a.next() } != (0..<8).map { _ in b.next() })
    }
}
