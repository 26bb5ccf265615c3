import Foundation
import Testing
import TandemClient
import TandemTestSupport

/// Requirement 9: graceful shutdown of the `tandem` process on SIGTERM and SIGINT.
@Suite(.serialized, .cleanup) struct ShutdownTests {
    /// The node under test serves alice (connected) and zed (socket lost, presence kept for the TTL). The
    /// TTL is 30 s so that an expiry cannot pass for a shutdown: bob, on another node, must see both leave
    /// well before it (20 s: room for a busy machine, where a 10 s TTL left only 8 s for the shutdown). New
    /// handshakes are refused, alice gets 1001, the node's keys are gone, exit code 0.
    @Test(arguments: [SIGTERM, SIGINT])
    func shutdownClosesClientsRemovesPresenceAndExitsCleanly(signal: Int32) async throws {
        let redis = try RedisServerProcess()
        let doomed = try await ProcessNode(arguments: ["--redis", redis.url, "--presence-ttl-ms", "30000"], nodeID: "sd-\(signal)")
        let other = try await InProcessNode.start(redis: redis.url, nodeID: "sd-other", stopWhenDone: true) {
            $0.presenceTTLMs = 30_000
        }
        let alice = try await TestClient.connect(doomed.url(user: "alice"), name: "alice")
        let zed = try await TestClient.connect(doomed.url(user: "zed"), name: "zed")
        let bob = try await TestClient.connect(other.url(user: "bob"), name: "bob")
        try await alice.join("sd")
        try await zed.join("sd")
        try await bob.join("sd")
        let leaving: Set = [alice.session, zed.session]
        try await waitUntil("bob sees alice and zed") { bob.members(of: "sd").isSuperset(of: leaving) }
        zed.abort()
        try await waitUntil("the node noticed zed's lost socket") { try await doomed.value("tandem_connections") == 1 }
        #expect(redis.hashKeys("tandem:{sd}:presence:\(doomed.nodeID)") == leaving, "zed's presence is kept for the TTL")

        doomed.process.signal(signal)
        let signalled = ContinuousClock.now
        #expect(try await alice.waitClosed() == 1001)
        // From now on the node accepts no new connection (refused, or 503 draining while it finishes).
        do {
            let late = try await WebSocketClient.connect(to: doomed.url(user: "late"), on: TestClient.group)
            await late.close()
            Issue.record("a handshake was accepted after shutdown began")
        } catch WebSocketClientError.handshakeRejected(let status, _, _) {
            #expect(status == 503)
        } catch {
            // Connection refused: the listener is closed.
        }
        try await waitUntil("bob sees alice and zed leave; \(bob.summary())", timeout: .seconds(20)) {
            Set(bob.sids("left", of: "sd")).isSuperset(of: leaving)
        }
        let elapsed = ContinuousClock.now - signalled
        print("ShutdownTests: signal \(signal): others saw the node's sessions leave \(elapsed) after the signal (TTL 30 s)")
        #expect(elapsed < .seconds(20), "removed by the shutdown, not by expiry (TTL 30 s): \(elapsed)")
        #expect(try await doomed.process.waitForExit(timeout: .seconds(15)) == 0)
        #expect(redis.command("EXISTS", "tandem:{sd}:presence:\(doomed.nodeID)") == "0")
        #expect(redis.command("ZSCORE", "tandem:{sd}:nodes", doomed.nodeID) == "")
        #expect(bob.members(of: "sd") == [bob.session])
        await bob.close()
    }
}
