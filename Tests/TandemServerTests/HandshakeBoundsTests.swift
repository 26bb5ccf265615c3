import Foundation
import TandemClient
import TandemTestSupport
import Testing

/// The phase before the upgrade: sockets that never finish a handshake are closed after
/// `--handshake-timeout-ms` and bounded by `--max-pending-handshakes`; junk handshakes (bad tokens)
/// neither use up the admission rate nor stretch the storm grace; a resume is refused when ownership
/// cannot be checked.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct HandshakeBoundsTests {
    static let secret = "handshake-test-secret-0123456789abcdef-0123"

    /// Sockets that send nothing, or half a request, are closed once the handshake timeout passes, and
    /// are counted meanwhile.
    @Test func socketsThatNeverCompleteTheHandshakeAreClosedAfterTheTimeout() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "hs-timeout", stopWhenDone: true) {
            $0.handshakeTimeoutMs = 1_500
        }
        var sockets: [RawSocket] = []
        for i in 0..<150 {
            let socket = try RawSocket(port: node.port)
            if i % 5 == 0 { try socket.write("GET /v1/ws?user=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web") }
            sockets.append(socket)
        }
        // A real client still gets through meanwhile (they do not count against --max-connections either).
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await waitUntil("every idle socket closed by the node", timeout: .seconds(15)) {
            sockets.allSatisfy { $0.closedByPeer }
        }
        try await waitUntil("none pending any more") { try await node.value("tandem_handshakes_pending") == 0 }
        #expect(try await node.value("tandem_handshake_timeouts_total") == 150)
        #expect(sockets.allSatisfy { $0.received.isEmpty }, "closed without an answer")
        #expect(!alice.isClosed, "the upgraded client is not affected by the timeout")
        alice.sendRaw(#"{"t":"ping"}"#)
        try await alice.next("pong")
        await alice.close()
    }

    /// At `--max-pending-handshakes`, a new socket displaces the oldest pending one: a crowd of idle
    /// sockets holding the whole bound cannot keep a real client out, and the count never grows past it.
    @Test func pendingHandshakesAreBoundedAndIdleOnesCannotKeepClientsOut() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "hs-pending", stopWhenDone: true) {
            $0.maxPendingHandshakes = 40
            $0.handshakeTimeoutMs = 60_000
        }
        var idle: [RawSocket] = []
        for _ in 0..<40 { idle.append(try RawSocket(port: node.port)) }
        try await waitUntil("40 pending handshakes") { try await node.value("tandem_handshakes_pending") == 40 }
        var newer: [RawSocket] = []
        for _ in 0..<10 { newer.append(try RawSocket(port: node.port)) }
        // Ten of the idle sockets are closed, from the oldest (the two event loops may set sockets up a
        // little out of connection order), and none of the newer ones.
        try await waitUntil("ten idle sockets closed") { idle.filter(\.closedByPeer).count == 10 }
        let closed = idle.indices.filter { idle[$0].closedByPeer }
        #expect(closed.allSatisfy { $0 < 20 }, "the oldest go first: \(closed)")
        #expect(newer.allSatisfy { !$0.closedByPeer })
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="pending_full"}"#) == 10)
        #expect(try await node.value("tandem_handshakes_pending") == 40, "never more than the bound")
        // With the bound still full of idle sockets, a real client connects at once (long before any of
        // them times out).
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("d")
        await alice.close()
        withExtendedLifetime((idle, newer)) {}
    }

    /// A flood of bad-token handshakes while a legitimate client connects: the junk gets 401 and does
    /// not touch the admission rate (5/s here), so the client is admitted at its first attempt, every
    /// time; and the junk does not keep lost sessions alive beyond the presence TTL.
    @Test func junkHandshakesNeitherLockUsersOutNorStretchTheStormGrace() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "hs-junk", stopWhenDone: true) {
            $0.jwtSecret = Self.secret
            $0.maxNewConnectionsPerSecond = 5
            $0.presenceTTLMs = 1_000
            $0.stormResumeGraceMs = 30_000
        }
        let token = { (user: String) in try await makeToken(secret: Self.secret, user: user, docs: ["*": "editor"]) }
        let bob = try await TestClient.connect("\(node.wsBase)?token=\(try await token("bob"))", name: "bob")
        let zed = try await TestClient.connect("\(node.wsBase)?token=\(try await token("zed"))", name: "zed")
        try await bob.join("j")
        try await zed.join("j")
        try await waitUntil("bob sees zed") { bob.members(of: "j").contains(zed.session) }

        let flood = Task {
            var sent = 0
            while !Task.isCancelled {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<10 {
                        group.addTask { _ = try? await handshakeRejection("\(node.wsBase)?token=not.a.jwt") }
                    }
                }
                sent += 10
            }
            return sent
        }
        defer { flood.cancel() }
        try await waitUntil("the flood is on") {
            try await node.value(#"tandem_admission_rejected_total{reason="unauthorized"}"#) >= 50
        }
        // zed's socket is lost (no close frame) while the junk keeps coming.
        zed.abort()
        let sid = zed.session
        var clients: [TestClient] = []
        for i in 0..<3 {
            // Three admissions in quick succession, each at its first attempt: with bob and zed, the whole
            // burst of 5, so the junk must not have taken a single token.
            clients.append(try await TestClient.connect("\(node.wsBase)?token=\(try await token("user\(i)"))", name: "user\(i)"))
        }
        // A storm grace renewed by the junk would keep zed for 30 s; the TTL is 1 s.
        try await waitUntil("bob sees zed leave after the TTL while the junk goes on", timeout: .seconds(8)) {
            bob.sids("left", of: "j").contains(sid)
        }
        flood.cancel()
        let sent = await flood.value
        #expect(sent >= 50)
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="rate"}"#) == 0, "junk never hit the admission rate")
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="unauthorized"}"#) >= Double(sent) - 10)
        for client in clients { await client.close() }
        await bob.close()
    }

    /// `--max-handshake-attempts-per-sec` bounds how many handshakes are checked at all; junk beyond it
    /// gets 503 before its token is looked at, and that does not stretch the storm grace either.
    @Test func handshakeAttemptsAreBoundedBeforeTheTokenIsChecked() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "hs-attempts", stopWhenDone: true) {
            $0.jwtSecret = Self.secret
            $0.maxNewConnectionsPerSecond = 5
            $0.maxHandshakeAttemptsPerSecond = 10
        }
        var statuses: [Int] = []
        for _ in 0..<30 {
            statuses.append(try await handshakeRejection("\(node.wsBase)?token=junk").status)
        }
        #expect(statuses.contains(401) && statuses.contains(503), "\(statuses)")
        let attemptRefusals = try await node.value(#"tandem_admission_rejected_total{reason="attempt_rate"}"#)
        #expect(attemptRefusals == Double(statuses.filter { $0 == 503 }.count))
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="rate"}"#) == 0)
    }

    /// `claimed ?? true` granted any resume while Redis was unreachable. Now: refused (fresh session)
    /// unless the node itself knows the session is this user's.
    @Test func resumeIsRefusedWhenOwnershipCannotBeChecked() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "own-1", stopWhenDone: true)
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "own-2", stopWhenDone: true)
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        try await alice.join("o")
        let sid = alice.session
        alice.abort()
        redis.kill()
        for node in [n1, n2] {
            try await waitUntil("\(node.nodeID) sees Redis down") { try await node.get("/readyz").status == 503 }
        }
        // Node 2 never saw the session: it cannot tell whose it is, so nobody resumes it there.
        let mallory = try await TestClient.connect(n2.url(user: "mallory", query: "resume=\(sid)"), name: "mallory")
        #expect(JSON.bool(mallory.welcome, at: "resumed") == false)
        #expect(mallory.session != sid)
        let aliceOn2 = try await TestClient.connect(n2.url(user: "alice", query: "resume=\(sid)"), name: "alice-n2")
        #expect(JSON.bool(aliceOn2.welcome, at: "resumed") == false)
        // Node 1 served it for alice a moment ago: alice resumes there, mallory does not.
        let malloryOn1 = try await TestClient.connect(n1.url(user: "mallory", query: "resume=\(sid)"), name: "mallory-n1")
        #expect(JSON.bool(malloryOn1.welcome, at: "resumed") == false)
        let aliceBack = try await TestClient.connect(n1.url(user: "alice", query: "resume=\(sid)"), name: "alice-back")
        #expect(JSON.bool(aliceBack.welcome, at: "resumed") == true)
        #expect(aliceBack.session == sid)
        try redis.start()
        for client in [mallory, aliceOn2, malloryOn1, aliceBack] { await client.close() }
    }
}
