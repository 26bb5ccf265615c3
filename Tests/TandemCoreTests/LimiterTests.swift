import Testing
@testable import TandemCore

@Suite struct LimiterTests {
    @Test func tokenBucketAllowsRateAfterBurst() {
        var bucket = TokenBucket(rate: 20, burst: 5, nowMs: 0)
        var taken = 0
        // 1,000 attempts per second for 10 seconds.
        for ms in stride(from: UInt64(0), to: 10_000, by: 1) where bucket.take(nowMs: ms) { taken += 1 }
        #expect(taken >= 200 && taken <= 206)
    }

    @Test func tokenBucketSaysWhenTheNextTokenComes() {
        var bucket = TokenBucket(rate: 0.5, burst: 2, nowMs: 0)
        #expect(bucket.msUntilToken(nowMs: 0) == 0)
        let first = bucket.take(nowMs: 0)
        let second = bucket.take(nowMs: 0)
        #expect(first && second)
        #expect(bucket.msUntilToken(nowMs: 0) == 2_000)
        #expect(bucket.msUntilToken(nowMs: 1_500) == 500)
        let early = bucket.take(nowMs: 1_999)
        let due = bucket.take(nowMs: 2_000)
        #expect(!early && due)
    }

    @Test func abuseMonitorClosesAfterElevenBadFramesInTenSeconds() {
        var monitor = AbuseMonitor(limits: .init())
        for i in 0..<10 { #expect(monitor.badFrame(nowMs: UInt64(i) * 100) == .ok) }
        #expect(monitor.badFrame(nowMs: 1_500) == .tooManyBadFrames)
    }

    @Test func badFramesOutsideTheWindowAreForgotten() {
        var monitor = AbuseMonitor(limits: .init())
        for i in 0..<50 { #expect(monitor.badFrame(nowMs: UInt64(i) * 1_001) == .ok) }
    }

    @Test func floodMustLastFiveSecondsInARow() {
        var limits = AbuseMonitor.Limits()
        limits.maxMessagesPerSecond = 100
        var monitor = AbuseMonitor(limits: limits)
        var verdicts: [UInt64: AbuseMonitor.Verdict] = [:]
        // 200 messages per second for 6 seconds.
        for second in UInt64(0)..<6 {
            for i in UInt64(0)..<200 where monitor.message(nowMs: second * 1000 + i * 5) == .flooding {
                verdicts[second] = .flooding
            }
        }
        #expect(verdicts.keys.min() == 4)
    }

    @Test func floodStreakBreaksOnAQuietSecond() {
        var limits = AbuseMonitor.Limits()
        limits.maxMessagesPerSecond = 100
        var monitor = AbuseMonitor(limits: limits)
        for second in UInt64(0)..<12 where second != 4 && second != 9 {
            for i in UInt64(0)..<200 { #expect(monitor.message(nowMs: second * 1000 + i * 5) == .ok) }
        }
    }

    @Test func docAccessGlobs() {
        let access = DocAccess(grants: [("*", .viewer), ("team:*", .editor), ("x?z", .editor)])
        #expect(access.role(for: "team:1") == .editor)
        #expect(access.role(for: "other") == .viewer)
        #expect(access.role(for: "xyz") == .editor)
        #expect(DocAccess(grants: [("a*b*c", .viewer)]).role(for: "aXXbYYc") == .viewer)
        #expect(DocAccess(grants: [("a*b*c", .viewer)]).role(for: "aXXbYY") == nil)
        #expect(DocAccess(grants: []).role(for: "d") == nil)
        #expect(DocAccess.glob("**", matches: ""))
        #expect(!DocAccess.glob("", matches: "a"))
    }
}
