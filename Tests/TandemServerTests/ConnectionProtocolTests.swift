import Foundation
import Testing
import TandemTestSupport

/// Protocol errors, abuse limits, keep-alive and reconnect counting on real sockets.
@Suite(.serialized, .cleanup) struct ConnectionProtocolTests {
    /// Each bad message gets its error and the connection keeps working (5 bad frames: under the limit).
    @Test func protocolErrorsAreAnsweredAndTheConnectionStaysUsable() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "proto", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("d")
        func expectError(_ code: String, doc: String? = nil, after send: () -> Void) async throws {
            let mark = alice.count
            send()
            // Once alice has joined "d", its presence deltas can arrive at any tick, before or after the answer:
            // the answer is the first message that is not one.
            func answers() -> [[String: Any]] { alice.messages(since: mark).filter { JSON.string($0, at: "t") != "presence" } }
            try await waitUntil("alice gets \(code); \(alice.summary())") { !answers().isEmpty }
            let answer = answers()[0]
            #expect(JSON.string(answer, at: "t") == "error")
            #expect(JSON.string(answer, at: "code") == code, "\(answer)")
            if let doc { #expect(JSON.string(answer, at: "doc") == doc) }
        }
        let big = String(repeating: "z", count: 1100)
        try await expectError("bad_message") { alice.sendRaw("{not json") }
        try await expectError("unknown_type") { alice.sendRaw(#"{"t":"dance","doc":"d"}"#) }
        try await expectError("bad_message") { alice.sendRaw(#"{"t":"join","doc":"bad doc!"}"#) }
        try await expectError("not_joined", doc: "d") { alice.sendRaw(#"{"t":"presence","doc":"d","state":{"x":1}}"#) }
        try await expectError("too_large", doc: "d") { alice.sendRaw(#"{"t":"join","doc":"d","state":{"big":"\#(big)"}}"#) }
        try await alice.join("d", state: ["x": 1])
        try await expectError("too_large", doc: "d") { alice.sendRaw(#"{"t":"presence","doc":"d","state":{"big":"\#(big)"}}"#) }
        try await expectError("not_joined", doc: "elsewhere") { alice.sendRaw(#"{"t":"leave","doc":"elsewhere"}"#) }
        alice.sendRaw(#"{"t":"ping"}"#)
        try await alice.next("pong")
        alice.presence("d", ["x": 2])
        try await waitUntil("bob sees alice's state after all those errors") { bob.state(of: alice.session, in: "d")?["x"] as? Int == 2 }
        #expect(!alice.isClosed)
        await alice.close()
        await bob.close()
    }

    /// Ten bad frames are tolerated; the eleventh within 10 s closes with 1008.
    @Test func moreThanTenBadFramesInTenSecondsCloseWith1008() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "bad", stopWhenDone: true)
        let client = try await TestClient.connect(node.url(user: "noisy"), name: "noisy")
        for _ in 0..<10 { client.sendRaw("nope") }
        try await waitUntil("ten bad_message errors") { client.errors("bad_message").count == 10 }
        client.sendRaw(#"{"t":"ping"}"#)
        try await client.next("pong")
        #expect(!client.isClosed)
        client.sendRaw("nope")
        #expect(try await client.waitClosed() == 1008)
        try await waitUntil("counted as abuse") { try await node.value(#"tandem_connections_closed_total{reason="abuse"}"#) == 1 }
    }

    /// `--max-messages-per-sec` 20: a client sending 60/s is closed with 1008 once it has done so for 5
    /// seconds in a row; a client at 15/s over the same time is not.
    @Test func aSustainedMessageFloodClosesWith1008() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "flood", stopWhenDone: true) {
            $0.maxMessagesPerSecond = 20
        }
        let flooder = try await TestClient.connect(node.url(user: "flooder"), name: "flooder")
        let steady = try await TestClient.connect(node.url(user: "steady"), name: "steady")
        let start = ContinuousClock.now
        var sent = (flooder: 0, steady: 0)
        while !flooder.isClosed, ContinuousClock.now - start < .seconds(9) {
            let elapsed = (ContinuousClock.now - start).seconds
            while Double(sent.flooder) < elapsed * 60 { flooder.sendRaw(#"{"t":"ping"}"#); sent.flooder += 1 }
            while Double(sent.steady) < elapsed * 15 { steady.sendRaw(#"{"t":"ping"}"#); sent.steady += 1 }
            try await Task.sleep(for: .milliseconds(10))
        }
        let closedAfter = ContinuousClock.now - start
        #expect(try await flooder.waitClosed() == 1008)
        #expect(closedAfter >= .seconds(3), "closed only after a sustained flood (5 calendar seconds), after \(closedAfter)")
        #expect(!steady.isClosed, "a client under the limit stays connected")
        await steady.close()
    }

    @Test func aBinaryFrameClosesWith1003() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "binary", stopWhenDone: true)
        let client = try await TestClient.connect(node.url(user: "bin"), name: "bin")
        client.socket.sendBinary([0x7b, 0x7d])
        #expect(try await client.waitClosed() == 1003)
        try await waitUntil("counted as unsupported_data") { try await node.value(#"tandem_connections_closed_total{reason="unsupported_data"}"#) == 1 }
    }

    /// With a 200 ms ping interval, a client that never answers pings is closed with 1001 (ping timeout);
    /// one that answers them is not.
    @Test func aClientThatMissesTwoPingsIsClosed() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "pings", stopWhenDone: true) { $0.pingIntervalMs = 200 }
        let silent = try await TestClient.connect(node.url(user: "silent"), autoPong: false, name: "silent")
        let lively = try await TestClient.connect(node.url(user: "lively"), name: "lively")
        #expect(try await silent.waitClosed(timeout: .seconds(5)) == 1001)
        #expect(silent.socket.closeReason.contains("ping"))
        try await waitUntil("counted as ping_timeout") { try await node.value(#"tandem_connections_closed_total{reason="ping_timeout"}"#) == 1 }
        #expect(lively.socket.statistics.pingsReceived >= 2)
        #expect(!lively.isClosed)
        await lively.close()
    }

    /// `?resume=` connections, and re-joins of a user seen in the doc within a minute, count in
    /// `tandem_reconnects_total` (once per connection); a new user does not.
    @Test func resumesAndRecentRejoinsCountAsReconnects() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "recon", stopWhenDone: true)
        let reconnects = "tandem_reconnects_total"
        let before = try await node.value(reconnects)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("rc")
        await alice.close()
        // A re-join counts once the doc has seen alice leave (the departure is recorded on the doc's loop,
        // after the close; a join that overtakes it is alice on a second tab as far as the doc knows) — also
        // when the doc was unloaded meanwhile, as it is a tick after its last member left.
        try await waitUntil("alice's doc is unloaded") { try await node.value("tandem_docs_active") == 0 }
        let aliceAgain = try await TestClient.connect(node.url(user: "alice"), name: "alice-2")
        try await aliceAgain.join("rc")
        try await waitUntil("alice's re-join counts") { try await node.value(reconnects) == before + 1 }
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("rc")
        let carol = try await TestClient.connect(node.url(user: "carol"), name: "carol")
        try await carol.join("rc")
        let sid = carol.session
        carol.abort()
        let carolAgain = try await TestClient.connect(node.url(user: "carol", query: "resume=\(sid)"), name: "carol-2")
        #expect(JSON.bool(carolAgain.welcome, at: "resumed") == true)
        try await carolAgain.join("rc")
        try await waitUntil("carol's resume counts once") { try await node.value(reconnects) == before + 2 }
        // bob (new) did not count, and carol's resume + re-join counted once: still 2 after a last round trip.
        aliceAgain.sendRaw(#"{"t":"ping"}"#)
        try await aliceAgain.next("pong")
        #expect(try await node.value(reconnects) == before + 2)
        for client in [aliceAgain, bob, carolAgain] { await client.close() }
    }
}
