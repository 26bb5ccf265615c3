import Foundation
import Testing
import TandemTestSupport

/// Requirement 1: presence lives in Redis with a TTL, so a node that dies leaves no ghosts.
@Suite(.serialized) struct PresenceExpiryTests {
    /// Two `tandem` processes on one Redis, a client on each in the same doc (two sessions on the node that
    /// dies). After SIGKILL the survivor reports the dead node's sessions in `left` within TTL + one sweep
    /// (2 s + 0.5 s at the defaults; polled for up to 12 s, room for a busy machine: a broken expiry never
    /// reports them at all, and the time taken is printed), the dead node's keys are gone,
    /// `tandem_presence_expired_total` counts exactly those sessions, and a newcomer is not shown them.
    @Test func sessionsOfAKilledNodeAreReportedLeftWithinTTLPlusASweepAndLeaveNoKeys() async throws {
        let redis = try RedisServerProcess()
        let doomed = try await ProcessNode(arguments: ["--redis", redis.url], nodeID: "kill-a")
        let survivor = try await ProcessNode(arguments: ["--redis", redis.url], nodeID: "kill-b")
        defer { survivor.process.kill() }
        let alice = try await TestClient.connect(doomed.url(user: "alice"), name: "alice")
        let carol = try await TestClient.connect(doomed.url(user: "carol"), name: "carol")
        let bob = try await TestClient.connect(survivor.url(user: "bob"), name: "bob")
        try await alice.join("k", state: ["cursor": 1])
        try await carol.join("k", state: ["cursor": 2])
        try await bob.join("k")
        let dead = [alice.session, carol.session]
        try await waitUntil("bob sees alice and carol") { bob.members(of: "k").isSuperset(of: dead) }
        #expect(redis.hashKeys("tandem:{k}:presence:kill-a") == Set(dead))
        let expiredBefore = try await survivor.value("tandem_presence_expired_total")

        doomed.process.kill()
        let killedAt = ContinuousClock.now
        try await waitUntil("bob sees alice and carol in left; got \(bob.summary())", timeout: .seconds(12)) {
            Set(bob.sids("left", of: "k")).isSuperset(of: dead)
        }
        let elapsed = ContinuousClock.now - killedAt
        print("PresenceExpiryTests: dead node's sessions reported left \(elapsed) after SIGKILL (bound: TTL 2 s + sweep 0.5 s)")
        try await waitUntil("the dead node's keys are gone from Redis; keys: \(redis.allKeys)") {
            redis.command("EXISTS", "tandem:{k}:presence:kill-a") == "0"
                && redis.command("ZSCORE", "tandem:{k}:nodes", "kill-a") == ""
        }
        #expect(bob.members(of: "k") == [bob.session])
        let expired = try await survivor.value("tandem_presence_expired_total") - expiredBefore
        #expect(expired == 2, "the survivor counts each expired session once, counted \(expired)")

        // No ghosts: a client joining afterwards is listed only the live session(s).
        let dave = try await TestClient.connect(survivor.url(user: "dave"), name: "dave")
        let joined = try await dave.join("k")
        let listed = Set((JSON.array(joined, at: "presence") ?? []).compactMap { JSON.string($0, at: "sid") })
        #expect(listed == [bob.session, dave.session])
        await bob.close()
        await dave.close()
    }
}
