import Foundation
@testable import TandemServer
import TandemTestSupport
import Testing

/// A doc's first read (presence snapshot, head, records) runs on the node's command connection and its
/// SUBSCRIBE on the subscriber connection, so the read may run before the subscription and miss what other
/// nodes published in between (found under ASan: a join published in that window stayed unseen until the
/// next `--reconcile-ms`). The node reads the doc's presence once more once the subscription is confirmed,
/// without waiting for the reconcile interval.
@Suite(.serialized, .cleanup) struct DocSubscriptionTests {
    @Test func aDocIsReadAgainOnceItsChannelIsSubscribed() async throws {
        let redis = try RedisServerProcess()
        let monitor = try redis.monitor()
        defer { monitor.stop() }
        // A reconcile interval far beyond the wait below: a second snapshot can only come from the subscription.
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "sub-1", stopWhenDone: true) { $0.reconcileMs = 60_000 }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("subcheck")
        let snapshotSHA = PresenceScripts.snapshot.sha1
        try await waitUntil("the doc's presence is read at its load and again after its subscription", timeout: .seconds(20)) {
            monitor.lines().filter { $0.contains(snapshotSHA) && $0.contains("tandem:{subcheck}:nodes") }.count >= 2
        }
        await alice.close()
    }
}
