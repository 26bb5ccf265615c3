import Foundation
import TandemTestSupport
import Testing

/// Nodes may run with different `--presence-ttl-ms` (an operator changing it node by node). The doc's
/// node set expired with whichever node wrote last, so a short-TTL node cut off a long-TTL node's
/// registration and other nodes stopped seeing its sessions until its next refresh.
@Suite(.serialized, .cleanup) struct PresenceMixedTTLTests {
    @Test func theNodeSetOfADocLivesUntilItsLatestDeadline() async throws {
        let redis = try RedisServerProcess()
        let long = try await InProcessNode.start(redis: redis.url, nodeID: "ttl-long", stopWhenDone: true) {
            $0.presenceTTLMs = 60_000
            $0.stormResumeGraceMs = 60_000
        }
        let short = try await InProcessNode.start(redis: redis.url, nodeID: "ttl-short", stopWhenDone: true) {
            $0.presenceTTLMs = 1_000
        }
        let alice = try await TestClient.connect(long.url(user: "alice"), name: "alice")
        try await alice.join("m", state: ["c": 1])
        try await waitUntil("the long node registered") { redis.command("ZSCORE", "tandem:{m}:nodes", "ttl-long") != "" }
        let bob = try await TestClient.connect(short.url(user: "bob"), name: "bob")
        try await bob.join("m", state: ["c": 2])
        // The short node refreshes every 250 ms: wait for two of its writes after the long node's.
        let first = redis.command("ZSCORE", "tandem:{m}:nodes", "ttl-short")
        try await waitUntil("the short node refreshed") {
            let now = redis.command("ZSCORE", "tandem:{m}:nodes", "ttl-short")
            return now != "" && now != first
        }
        let ttl = Int(redis.command("PTTL", "tandem:{m}:nodes")) ?? -2
        #expect(ttl > 30_000, "the set expires with the long node's deadline, not the short one's (PTTL \(ttl))")
        await alice.close()
        await bob.close()
    }
}
