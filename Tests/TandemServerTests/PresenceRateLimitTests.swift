import Foundation
import Testing
import TandemTestSupport

/// Requirement 2: per-user presence rate limit; Redis load does not follow the client's send rate.
@Suite(.serialized, .cleanup) struct PresenceRateLimitTests {
    /// alice sends 50 updates/s for 2 s, then floods 1,000/s for 3 s; bob watches. The rate is set to 10/s
    /// (half the 20 ticks/s, so what bob receives is bounded by the limiter and not merely by tick
    /// coalescing). bob receives about the rate (≤ rate × seconds + burst + slack, ≥ half the rate), the
    /// over-rate updates are counted as `rate_limited` (accepted + rate_limited = sent), alice gets at most
    /// one `rate_limited` hint per second, the last state arrives, and Redis's command rate during the
    /// 1,000/s flood is no higher than during the 50/s phase.
    @Test func aFloodIsLimitedToTheRateTheLastStateArrivesAndRedisLoadStaysFlat() async throws {
        let redis = try RedisServerProcess()
        let rate = 10
        let burst = 5
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "rl-node", stopWhenDone: true) {
            $0.presenceRate = rate
            $0.presenceBurst = burst
        }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await alice.join("rl", state: ["seq": 0])
        try await bob.join("rl")
        let sid = alice.session
        try await waitUntil("bob sees alice") { bob.members(of: "rl").contains(sid) }

        struct Phase {
            var sent: Int
            var seconds: Double
            var delivered: Int
            var redisCommandsPerSecond: Double
            var accepted: Double
            var rateLimited: Double
            var hints: Int
        }
        let clock = ContinuousClock()
        func phase(_ number: Int, perSecond: Int, seconds: Double) async throws -> Phase {
            let count = Int(Double(perSecond) * seconds)
            let (bobMark, aliceMark) = (bob.count, alice.count)
            let accepted0 = try await node.value(#"tandem_presence_updates_total{result="accepted"}"#)
            let limited0 = try await node.value(#"tandem_presence_updates_total{result="rate_limited"}"#)
            let commands0 = redis.commandsProcessed
            let start = clock.now
            try await sendPresence(alice, doc: "rl", count: count, over: seconds, extra: #","phase":\#(number)"#)
            try await waitUntil("bob gets alice's last state of phase \(number)") {
                let state = bob.state(of: sid, in: "rl")
                return state?["phase"] as? Int == number && state?["seq"] as? Int == count
            }
            let elapsed = (clock.now - start).seconds
            let commands = redis.commandsProcessed - commands0
            let delivered = bob.deltas(of: "rl", since: bobMark).flatMap { JSON.array($0, at: "updated") ?? [] }
                .filter { JSON.string($0, at: "sid") == sid }.count
            return Phase(
                sent: count, seconds: elapsed, delivered: delivered,
                redisCommandsPerSecond: Double(commands) / elapsed,
                accepted: try await node.value(#"tandem_presence_updates_total{result="accepted"}"#) - accepted0,
                rateLimited: try await node.value(#"tandem_presence_updates_total{result="rate_limited"}"#) - limited0,
                hints: alice.errors("rate_limited", since: aliceMark).count)
        }

        let slow = try await phase(1, perSecond: 50, seconds: 2)
        // Let the bucket refill so the flood starts with a full burst, like a fresh client.
        let flood = try await phase(2, perSecond: 1000, seconds: 3)
        print("PresenceRateLimitTests: 50/s phase \(slow); 1000/s phase \(flood)")

        for p in [slow, flood] {
            let upper = Int(Double(rate) * p.seconds) + burst + 3
            #expect(p.delivered <= upper, "delivered \(p.delivered) of \(p.sent) in \(p.seconds) s; bound \(upper)")
            #expect(Double(p.delivered) >= Double(rate) / 2 * (p.seconds - 0.5), "delivered \(p.delivered) in \(p.seconds) s")
            #expect(p.accepted + p.rateLimited == Double(p.sent), "every update has one outcome: \(p)")
            #expect(p.rateLimited >= Double(p.sent - upper), "drops are counted: \(p)")
            #expect(p.hints >= 1 && Double(p.hints) <= p.seconds + 1, "at most one rate_limited hint per second: \(p.hints)")
        }
        // Redis load follows the ticks, not the client: 20× the send rate, about the same command rate.
        #expect(flood.redisCommandsPerSecond <= slow.redisCommandsPerSecond * 1.5 + 10,
                "Redis commands/s: \(slow.redisCommandsPerSecond) at 50/s, \(flood.redisCommandsPerSecond) at 1000/s")
        #expect(flood.redisCommandsPerSecond < 200, "Redis commands/s during the flood: \(flood.redisCommandsPerSecond)")
        #expect(!alice.isClosed, "a presence flood below --max-messages-per-sec is limited, not closed")
        await alice.close()
        await bob.close()
    }
}
