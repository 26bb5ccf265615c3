import Foundation
import NIOConcurrencyHelpers
@testable import TandemRedis
import Testing

@Suite("Cluster redirects and retries (pure state machines)")
struct ClusterRetryTests {
    typealias Random = BackoffTests.SeededRandom

    static let ms: UInt64 = 1_000_000
    static let policy = ClusterRetryPolicy(maxRedirects: 2, timeout: 1000 * ms, initialDelay: Int64(20 * ms), maxDelay: Int64(200 * ms))

    static func error(_ message: String) -> Result<RedisValue, RedisError> { .success(.error(message)) }

    @Test func classifiesClusterErrorReplies() {
        let b = ClusterNodeAddress(host: "10.0.0.2", port: 7002)
        #expect(ClusterReplyError(message: "MOVED 3999 10.0.0.2:7002", replyingHost: "x") == .moved(slot: 3999, to: b))
        #expect(ClusterReplyError(message: "ASK 3999 10.0.0.2:7002", replyingHost: "x") == .ask(slot: 3999, to: b))
        #expect(ClusterReplyError(message: "MOVED 1 :7002", replyingHost: "10.0.0.2") == .moved(slot: 1, to: b))
        #expect(ClusterReplyError(message: "MOVED 16384 h:1", replyingHost: "x") == .other)
        #expect(ClusterReplyError(message: "MOVED nonsense", replyingHost: "x") == .other)
        #expect(ClusterReplyError(message: "TRYAGAIN Multiple keys request during rehashing of slot", replyingHost: "x") == .tryAgain)
        #expect(ClusterReplyError(message: "CLUSTERDOWN The cluster is down", replyingHost: "x") == .clusterDown)
        #expect(ClusterReplyError(message: "LOADING Redis is loading the dataset in memory", replyingHost: "x") == .loading)
        #expect(ClusterReplyError(message: "READONLY You can't write against a read only replica.", replyingHost: "x") == .notPrimary)
        #expect(ClusterReplyError(message: "MASTERDOWN Link with MASTER is down", replyingHost: "x") == .notPrimary)
        #expect(ClusterReplyError(message: "NOSCRIPT No matching script", replyingHost: "x") == .other)
        #expect(ClusterReplyError(message: "CROSSSLOT Keys in request don't hash to the same slot", replyingHost: "x") == .other)
    }

    @Test func movedIsFollowedWithARefreshUntilTheRedirectBudgetIsSpent() {
        var random = Random(state: 7)
        var state = ClusterRetryState(policy: Self.policy, now: 0)
        let moved = Self.error("MOVED 5 127.0.0.1:7002")
        let target = ClusterNodeAddress(host: "127.0.0.1", port: 7002)
        #expect(state.decide(moved, now: 1, replyingHost: "h", using: &random) == .init(action: .redirect(slot: 5, to: target), refreshTopology: true))
        #expect(state.decide(Self.error("ASK 5 127.0.0.1:7002"), now: 2, replyingHost: "h", using: &random) == .init(action: .ask(target), refreshTopology: false))
        // Third redirect: over budget, the caller gets the MOVED reply itself.
        #expect(state.decide(moved, now: 3, replyingHost: "h", using: &random) == .init(action: .complete(moved), refreshTopology: true))
    }

    @Test func transientRepliesAreRetriedWithGrowingDelaysUntilTheDeadline() {
        var random = Random(state: 11)
        var state = ClusterRetryState(policy: Self.policy, now: 0)
        let tryAgain = Self.error("TRYAGAIN Multiple keys request during rehashing of slot")
        var now: UInt64 = 0
        var delays: [Int64] = []
        while true {
            let decision = state.decide(tryAgain, now: now, replyingHost: "h", using: &random)
            guard case .retry(let delay) = decision.action else {
                #expect(decision == .init(action: .complete(tryAgain), refreshTopology: false))
                break
            }
            #expect(!decision.refreshTopology)
            delays.append(delay)
            now += UInt64(delay)
        }
        #expect(now < 1000 * Self.ms)
        #expect(delays.count >= 5)
        #expect(delays.allSatisfy { $0 >= Int64(10 * Self.ms) && $0 <= Int64(200 * Self.ms) })
        #expect(delays[0] <= Int64(20 * Self.ms) && delays[4] >= Int64(100 * Self.ms))  // 20 ms doubling, jittered into [d/2, d]
    }

    @Test func clusterDownAndReplicaRepliesAlsoRefreshTheMap() {
        var random = Random(state: 3)
        for message in ["CLUSTERDOWN The cluster is down", "READONLY You can't write against a read only replica."] {
            var state = ClusterRetryState(policy: Self.policy, now: 0)
            let decision = state.decide(Self.error(message), now: 0, replyingHost: "h", using: &random)
            #expect(decision.refreshTopology)
            guard case .retry = decision.action else {
                Issue.record("expected a retry for \(message), got \(decision)")
                continue
            }
            // Past the deadline the reply goes to the caller.
            #expect(state.decide(Self.error(message), now: 999 * Self.ms, replyingHost: "h", using: &random).action == .complete(Self.error(message)))
        }
    }

    /// The cluster client's own path, with the system generator (under ThreadSanitizer it once crashed the
    /// process: swiftlang/swift#66099, see `Backoff.nextDelay()`).
    @Test func retriesWithTheSystemGeneratorStayWithinTheBackoffBounds() {
        var state = ClusterRetryState(policy: Self.policy, now: 0)
        for ceiling in [20 * Self.ms, 40 * Self.ms, 80 * Self.ms] {
            let decision = state.decide(Self.error("TRYAGAIN slot migrating"), now: 0, replyingHost: "h")
            guard case .retry(let delay) = decision.action else {
                Issue.record("TRYAGAIN should be retried: \(decision)")
                return
            }
            #expect(delay >= Int64(ceiling / 2) && delay <= Int64(ceiling))
        }
    }

    @Test func unsentCommandsAreRetriedButPossiblyRunOnesAreNot() {
        var random = Random(state: 5)
        var state = ClusterRetryState(policy: Self.policy, now: 0)
        let down = state.decide(.failure(.notConnected), now: 0, replyingHost: "", using: &random)
        #expect(down.refreshTopology)
        guard case .retry = down.action else {
            Issue.record("notConnected should be retried: \(down)")
            return
        }
        #expect(state.decide(.failure(.notConnected), now: 2000 * Self.ms, replyingHost: "", using: &random)
            == .init(action: .complete(.failure(.notConnected)), refreshTopology: true))
        for error in [RedisError.connectionLost, .timeout] {
            var fresh = ClusterRetryState(policy: Self.policy, now: 0)
            #expect(fresh.decide(.failure(error), now: 0, replyingHost: "h", using: &random) == .init(action: .complete(.failure(error)), refreshTopology: true))
        }
        for error in [RedisError.overloaded, .shutdown] {
            var fresh = ClusterRetryState(policy: Self.policy, now: 0)
            #expect(fresh.decide(.failure(error), now: 0, replyingHost: "h", using: &random) == .init(action: .complete(.failure(error)), refreshTopology: false))
        }
        var plain = ClusterRetryState(policy: Self.policy, now: 0)
        #expect(plain.decide(.success(.integer(1)), now: 0, replyingHost: "h", using: &random).action == .complete(.success(.integer(1))))
        #expect(plain.decide(Self.error("NOSCRIPT x"), now: 0, replyingHost: "h", using: &random).action == .complete(Self.error("NOSCRIPT x")))
    }
}

@Suite("Cluster slot-map refresh schedule")
struct ClusterRefreshScheduleTests {
    @Test func oneFetchInFlightRateLimitedAndPeriodic() {
        var schedule = ClusterRefreshSchedule(minInterval: 100, periodicInterval: 10_000)
        #expect(schedule.poll(now: 0) == .start)
        schedule.request()
        schedule.request()
        #expect(schedule.poll(now: 5) == .inFlight)
        schedule.finished(now: 10, healthy: true)
        // Requested while in flight: next fetch as soon as the rate limit allows (100 after the start).
        #expect(schedule.poll(now: 50) == .wait(until: 100))
        #expect(schedule.poll(now: 100) == .start)
        schedule.finished(now: 120, healthy: true)
        // Nothing requested: the periodic refresh.
        #expect(schedule.poll(now: 200) == .wait(until: 10_120))
        #expect(schedule.poll(now: 10_120) == .start)
        // An unhealthy map (or a failed fetch) is fetched again at the fast pace.
        schedule.finished(now: 10_130, healthy: false)
        #expect(schedule.poll(now: 10_140) == .wait(until: 10_230))
        #expect(schedule.poll(now: 10_230) == .start)
    }

    @Test func aBurstOfRequestsCostsOneFetch() {
        var schedule = ClusterRefreshSchedule(minInterval: 100, periodicInterval: 1000)
        #expect(schedule.poll(now: 0) == .start)
        schedule.finished(now: 1, healthy: true)
        var starts = 0
        for now in stride(from: UInt64(2), to: 99, by: 1) {
            schedule.request()
            if schedule.poll(now: now) == .start { starts += 1 }
        }
        #expect(starts == 0)
        #expect(schedule.poll(now: 100) == .start)
    }
}

@Suite("Timer thread")
struct TimerThreadTests {
    @Test func runsWorkInDeadlineOrderAndEverythingLeftOnStop() async {
        let timer = TimerThread()
        timer.start(name: "test-timer")
        let ran = NIOLockedValueBox<[Int]>([])
        let now = monotonicNanoseconds()
        timer.schedule(at: now + 60_000_000) { ran.withLockedValue { $0.append(3) } }
        timer.schedule(at: now + 20_000_000) { ran.withLockedValue { $0.append(2) } }
        timer.execute { ran.withLockedValue { $0.append(1) } }
        timer.schedule(at: now + 20_000_000) { ran.withLockedValue { $0.append(22) } }  // same deadline: after 2
        #expect(await waitUntil { ran.withLockedValue { $0.count } == 4 })
        #expect(ran.withLockedValue { $0 } == [1, 2, 22, 3])

        // Work not yet due runs on stop (its owner fails it fast); work scheduled after the stop runs inline.
        timer.schedule(at: now + 3_600_000_000_000) { ran.withLockedValue { $0.append(4) } }
        await timer.stop()?.join()
        #expect(ran.withLockedValue { $0 } == [1, 2, 22, 3, 4])
        timer.execute { ran.withLockedValue { $0.append(5) } }
        #expect(ran.withLockedValue { $0 } == [1, 2, 22, 3, 4, 5])
    }
}
