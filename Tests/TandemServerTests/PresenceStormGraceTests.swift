import Foundation
import Testing
import TandemClient
import TandemTestSupport

/// While a node refuses handshakes for rate (a reconnect storm), lost sessions stay resumable for the
/// storm grace instead of the presence TTL: clients told to come back later keep their place.
@Suite(.serialized, .cleanup) struct PresenceStormGraceTests {
    /// Connects, retrying (bounded) while the node answers 503 for admission.
    func connectAdmitted(_ url: String, name: String) async throws -> TestClient {
        var client: TestClient?
        try await waitUntil("\(name) admitted", timeout: .seconds(20), poll: .milliseconds(200)) {
            do {
                client = try await TestClient.connect(url, name: name)
                return true
            } catch WebSocketClientError.handshakeRejected(let status, _, _) where status == 503 {
                return false
            }
        }
        return client!
    }

    @Test func refusedHandshakesKeepLostSessionsBeyondTheTTL() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "storm-grace", stopWhenDone: true) { config in
            config.presenceTTLMs = 1000
            config.maxNewConnectionsPerSecond = 3
            config.stormResumeGraceMs = 20_000
        }
        let alice = try await connectAdmitted(node.url(user: "alice"), name: "alice")
        let bob = try await connectAdmitted(node.url(user: "bob"), name: "bob")
        try await alice.join("g", state: ["cursor": 1])
        try await bob.join("g")
        let sid = alice.session
        try await waitUntil("bob sees alice") { bob.members(of: "g").contains(sid) }

        alice.abort()
        try await waitUntil("the node noticed alice's socket is gone") { try await node.value("tandem_connections") == 1 }
        // A burst of handshakes over the admission rate, all at once: some are refused, as in a storm.
        // (One after another, on a busy machine that takes a third of a second per handshake, the 3/s
        // bucket refilled as fast as they came and none was refused.)
        let urls = (0..<12).map { node.url(user: "crowd\($0)") }
        let outcomes = await withTaskGroup(of: Result<TestClient, any Error>.self) { group in
            for (i, url) in urls.enumerated() {
                group.addTask {
                    do { return .success(try await TestClient.connect(url, name: "crowd\(i)")) } catch { return .failure(error) }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        var refused = 0
        var admitted: [TestClient] = []
        for outcome in outcomes {
            switch outcome {
            case .success(let client): admitted.append(client)
            case .failure(WebSocketClientError.handshakeRejected(let status, _, _)) where status == 503: refused += 1
            case .failure(let error): Issue.record("a handshake failed otherwise: \(error)")
            }
        }
        #expect(refused > 0)
        // Three TTLs pass; alice's seat is kept (without the refusals she would be `left` after one).
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(3000))
        while ContinuousClock.now < deadline {
            #expect(!bob.sids("left", of: "g").contains(sid))
            try await Task.sleep(for: .milliseconds(200))
        }
        let back = try await connectAdmitted(node.url(user: "alice", query: "resume=\(sid)"), name: "alice-2")
        #expect(JSON.bool(back.welcome, at: "resumed") == true)
        try await back.join("g")
        back.presence("g", ["cursor": 2])
        try await waitUntil("bob sees alice's cursor") { (bob.state(of: sid, in: "g")?["cursor"] as? Int) == 2 }
        #expect(!bob.sids("left", of: "g").contains(sid), "no flicker for a session resumed after a refused handshake")
        for client in admitted { await client.close() }
        await back.close()
        await bob.close()
    }
}
