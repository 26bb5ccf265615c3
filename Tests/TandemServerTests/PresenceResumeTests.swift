import Foundation
import Testing
import TandemTestSupport

/// Requirement 5: a lost socket keeps its presence for the TTL, and `?resume=SESSION` takes it over
/// without the others seeing a leave and a join.
@Suite(.serialized, .cleanup) struct PresenceResumeTests {
    /// alice and zed lose their sockets (no close frame) at the same moment; alice resumes on the same node
    /// within the TTL, zed does not. bob sees alice at most `updated` (never `left`/`joined`), and zed in
    /// `left` only once the TTL has run out. zed's expiry is also the sentinel that the TTL window passed.
    @Test func resumeOnTheSameNodeShowsNoFlickerAndAnUnresumedSessionExpiresAfterTheTTL() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "rs-1", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let zed = try await TestClient.connect(node.url(user: "zed"), name: "zed")
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await alice.join("r", state: ["cursor": 1])
        try await zed.join("r", state: ["cursor": 9])
        try await bob.join("r")
        let sid = alice.session
        // The delta of the tick after bob's join lists him, and alice and zed too when their joins fell in
        // the same tick (upserts): mark after it, so a later `joined` for alice would be a real re-join.
        try await waitUntil("bob sees alice and zed, and the delta listing his own join") {
            bob.members(of: "r").isSuperset(of: [sid, zed.session]) && bob.sids("joined", of: "r").contains(bob.session)
        }
        let reconnectsBefore = try await node.value("tandem_reconnects_total")
        let mark = bob.count

        alice.abort()
        zed.abort()
        let abortedAt = ContinuousClock.now
        let resumed = try await TestClient.connect(node.url(user: "alice", query: "resume=\(sid)"), name: "alice-2")
        #expect(JSON.bool(resumed.welcome, at: "resumed") == true)
        #expect(resumed.session == sid)
        let joined = try await resumed.join("r")
        // The resumed session keeps its state when the re-join carries none.
        let own = (JSON.array(joined, at: "presence") ?? []).first { JSON.string($0, at: "sid") == sid }
        #expect(own.flatMap { JSON.int($0, at: "state.cursor") } == 1)
        resumed.presence("r", ["cursor": 2])
        try await waitUntil("bob sees alice's new cursor") { (bob.state(of: sid, in: "r")?["cursor"] as? Int) == 2 }

        try await waitUntil("bob sees zed left after the TTL; \(bob.summary())", timeout: .seconds(8)) {
            bob.sids("left", of: "r").contains(zed.session)
        }
        let zedGone = ContinuousClock.now - abortedAt
        #expect(zedGone >= .milliseconds(1800), "a lost session is kept for the 2 s TTL; it left after \(zedGone)")
        #expect(!bob.sids("left", of: "r").contains(sid), "no left for the resumed session")
        #expect(!bob.sids("joined", of: "r", since: mark).contains(sid), "no joined for the resumed session")
        #expect(bob.members(of: "r") == [sid, bob.session])
        #expect(redis.hashKeys("tandem:{r}:presence:rs-1") == [sid, bob.session])
        #expect(try await node.value("tandem_reconnects_total") - reconnectsBefore == 1)
        await resumed.close()
        await bob.close()
    }

    /// The same, resuming on another node: observers on both nodes see no leave and no join, the entry
    /// moves to the new node in Redis (and disappears from the old node's hash).
    @Test func resumeOnAnotherNodeShowsNoFlicker() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "rs-a", stopWhenDone: true)
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "rs-b", stopWhenDone: true)
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let zed = try await TestClient.connect(n1.url(user: "zed"), name: "zed")
        let bob = try await TestClient.connect(n1.url(user: "bob"), name: "bob")
        let carol = try await TestClient.connect(n2.url(user: "carol"), name: "carol")
        try await alice.join("r", state: ["cursor": 1])
        try await zed.join("r")
        try await bob.join("r")
        try await carol.join("r")
        let sid = alice.session
        let everyone: Set = [sid, zed.session, bob.session, carol.session]
        try await waitUntil("bob and carol see everyone") {
            bob.members(of: "r") == everyone && carol.members(of: "r") == everyone
        }
        // Deltas are upserts: the delta of the tick after an observer's own join lists it and may repeat
        // sessions its `joined` list already had (alice among them). It is not always the first delta: one
        // of another node's changes can come before it (zed's cursor did). Mark after both, so any later
        // `joined` for alice would be a real re-join; zed moves so that a delta surely follows the join.
        zed.presence("r", ["cursor": 7])
        for observer in [bob, carol] {
            try await waitUntil("\(observer.name) got the delta listing its own join and one with zed's cursor") {
                observer.sids("joined", of: "r").contains(observer.session)
                    && (observer.state(of: zed.session, in: "r")?["cursor"] as? Int) == 7
            }
        }
        let marks = (bob.count, carol.count)

        alice.abort()
        zed.abort()
        let resumed = try await TestClient.connect(n2.url(user: "alice", query: "resume=\(sid)"), name: "alice-2")
        #expect(JSON.bool(resumed.welcome, at: "resumed") == true)
        #expect(resumed.session == sid)
        try await resumed.join("r")
        resumed.presence("r", ["cursor": 2])
        for observer in [bob, carol] {
            try await waitUntil("\(observer.name) sees alice's cursor from rs-b") {
                (observer.state(of: sid, in: "r")?["cursor"] as? Int) == 2
            }
        }
        for observer in [bob, carol] {
            try await waitUntil("\(observer.name) sees zed expire; \(observer.summary())", timeout: .seconds(8)) {
                observer.sids("left", of: "r").contains(zed.session)
            }
        }
        #expect(!bob.sids("left", of: "r").contains(sid))
        #expect(!carol.sids("left", of: "r").contains(sid))
        #expect(!bob.sids("joined", of: "r", since: marks.0).contains(sid))
        #expect(!carol.sids("joined", of: "r", since: marks.1).contains(sid))
        #expect(bob.members(of: "r") == [sid, bob.session, carol.session])
        #expect(redis.hashKeys("tandem:{r}:presence:rs-b") == [sid, carol.session])
        #expect(redis.hashKeys("tandem:{r}:presence:rs-a") == [bob.session])
        let entry = try #require(redis.command("HGET", "tandem:{r}:presence:rs-b", sid).data(using: .utf8))
        #expect(JSON.string(try JSON.parse(entry), at: "node") == "rs-b")
        await resumed.close()
        await bob.close()
        await carol.close()
    }

    /// `?resume=` of someone else's session is not honoured on any node: the impostor gets a fresh session
    /// (the node that served it remembers the owner, the others ask Redis). The owner's presence is
    /// untouched and the owner can still resume.
    @Test func aResumeByAnotherUserIsRefused() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "rs-x", stopWhenDone: true)
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "rs-y", stopWhenDone: true)
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n1.url(user: "bob"), name: "bob")
        try await alice.join("r", state: ["cursor": 1])
        try await bob.join("r")
        let sid = alice.session
        try await waitUntil("bob sees alice") { bob.members(of: "r").contains(sid) }
        alice.abort()
        try await waitUntil("the node noticed alice's socket is gone") { try await n1.value("tandem_connections") == 1 }

        // Same node: the session is known to belong to alice.
        let mallory = try await TestClient.connect(n1.url(user: "mallory", query: "resume=\(sid)"), name: "mallory")
        #expect(JSON.bool(mallory.welcome, at: "resumed") == false)
        #expect(mallory.session != sid)
        try await mallory.join("r")
        // Another node: Redis knows whose session it is, so the handshake refuses the resume there too.
        let eve = try await TestClient.connect(n2.url(user: "eve", query: "resume=\(sid)"), name: "eve")
        #expect(JSON.bool(eve.welcome, at: "resumed") == false)
        #expect(eve.session != sid)
        try await eve.join("r")

        // alice still resumes her own session on the node that served it, and nobody saw her leave.
        let back = try await TestClient.connect(n1.url(user: "alice", query: "resume=\(sid)"), name: "alice-2")
        #expect(JSON.bool(back.welcome, at: "resumed") == true)
        #expect(back.session == sid)
        try await back.join("r")
        back.presence("r", ["cursor": 5])
        try await waitUntil("bob sees alice's cursor") { (bob.state(of: sid, in: "r")?["cursor"] as? Int) == 5 }
        #expect(bob.state(of: sid, in: "r") != nil)
        #expect(!bob.sids("left", of: "r").contains(sid))
        let entry = try #require(redis.command("HGET", "tandem:{r}:presence:rs-x", sid).data(using: .utf8))
        #expect(JSON.string(try JSON.parse(entry), at: "user") == "alice")
        await back.close()
        await mallory.close()
        await eve.close()
        await bob.close()
    }
}
