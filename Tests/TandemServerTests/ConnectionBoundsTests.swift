import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// What one connection may make a node hold: docs it is in, joins per second, requests waiting for a join,
/// joins waiting for a doc to load. Each bound answers with a clear error and shows in a metric.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct ConnectionBoundsTests {
    /// `--max-docs-per-connection`: a join beyond it gets `too_many_docs`; re-joins of a doc already
    /// joined are not new docs; after a leave there is room again; the bound is per connection.
    @Test func aConnectionMayBeInAtMostMaxDocsPerConnectionDocs() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "docs-cap", stopWhenDone: true) {
            $0.maxDocsPerConnection = 3
            $0.maxDocJoinsPerSecond = 10_000  // not what this test is about
        }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        for doc in ["d1", "d2", "d3"] { try await alice.join(doc) }
        alice.sendRaw(#"{"t":"join","doc":"d4"}"#)
        let refused = try await alice.next("error", doc: "d4")
        #expect(JSON.string(refused, at: "code") == "too_many_docs")
        #expect(JSON.string(refused, at: "message")?.contains("3") == true, "\(refused)")
        #expect(try await node.value(#"tandem_limit_rejections_total{reason="docs_per_connection"}"#) == 1)
        #expect(try await node.value(#"tandem_protocol_errors_total{code="too_many_docs"}"#) == 1)
        // Not joined: presence to d4 is not_joined; nothing of d4 exists on the node.
        alice.presence("d4", ["x": 1])
        #expect(JSON.string(try await alice.next("error", doc: "d4"), at: "code") == "not_joined")
        // A re-join of a doc it is in is fine; so is a join once it left one.
        try await alice.join("d3")
        alice.sendRaw(#"{"t":"leave","doc":"d1"}"#)
        try await alice.next("left", doc: "d1")
        try await alice.join("d4")
        // Another connection of the same user has its own allowance.
        let alice2 = try await TestClient.connect(node.url(user: "alice"), name: "alice-2")
        for doc in ["d1", "d2", "d3"] { try await alice2.join(doc) }
        #expect(try await node.value(#"tandem_limit_rejections_total{reason="docs_per_connection"}"#) == 1)
        await alice.close()
        await alice2.close()
    }

    /// Cycling join/leave over ever new docs (each join may cost a SUBSCRIBE, a load and a catch-up)
    /// dodged the per-doc join buckets: joins of docs the connection is not in are limited per
    /// connection, after a burst of --max-docs-per-connection, with a retry hint.
    @Test func joinsOfNewDocsAreLimitedPerConnection() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "doc-join-rate", stopWhenDone: true) {
            $0.maxDocsPerConnection = 3
            // One new join per 5 s after the burst: the three joins and leaves below must fit in that time
            // (with 0.5/s, two seconds, a busy machine let a fourth token in before `c4`).
            $0.maxDocJoinsPerSecond = 0.2
        }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        for doc in ["c1", "c2", "c3"] {
            try await alice.join(doc)  // the burst: all its docs at once
            alice.sendRaw(#"{"t":"leave","doc":"\#(doc)"}"#)
            try await alice.next("left", doc: doc)
        }
        alice.sendRaw(#"{"t":"join","doc":"c4"}"#)
        let refused = try await alice.next("error", doc: "c4")
        #expect(JSON.string(refused, at: "code") == "rate_limited")
        #expect(JSON.string(refused, at: "message")?.contains("--max-doc-joins-per-sec") == true, "\(refused)")
        let retry = JSON.int(refused, at: "retryAfterMs") ?? 0
        #expect(retry > 0 && retry <= 5_000, "\(refused)")
        #expect(try await node.value(#"tandem_limit_rejections_total{reason="doc_join_rate"}"#) == 1)
        // Another connection has its own allowance; the refused one may join once the hint has passed.
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("c4")
        try await waitUntil("alice is let in after the hint", timeout: .seconds(20)) {
            alice.sendRaw(#"{"t":"join","doc":"c4"}"#)
            return (try? await alice.next("joined", doc: "c4", timeout: .milliseconds(500))) != nil
        }
        await alice.close()
        await bob.close()
    }

    /// Joins of one doc count against the presence rate: beyond it a join gets `rate_limited` and nothing
    /// else (no `joined`, no catch-up), and the state a re-join carries is a rate-limited presence update,
    /// not a way around the limit.
    @Test func reJoinsCountAgainstThePresenceRate() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "rejoin-rate", stopWhenDone: true) {
            $0.presenceRate = 1
            $0.presenceBurst = 2
        }
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("r")
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        // Everything below happens well within a second (rate 1/s, burst 2 for joins and for presence):
        try await alice.join("r", state: ["n": 0])  // join token 1 (a first join sets the state directly)
        try await alice.join("r", state: ["n": 1])  // join token 2; its state takes presence token 1
        let mark = alice.count
        alice.presence("r", ["n": 3])  // presence token 2
        alice.presence("r", ["n": 4])  // none left: kept, applied later, hinted
        alice.sendRaw(#"{"t":"join","doc":"r","state":{"n":2}}"#)  // no join token left
        alice.sendRaw(#"{"t":"ping"}"#)
        try await alice.next("pong")
        try await waitUntil("two rate_limited errors; \(alice.summary())") { alice.errors("rate_limited", since: mark).count == 2 }
        let errors = alice.errors("rate_limited", since: mark).compactMap { JSON.string($0, at: "message") }
        #expect(errors.filter { $0.contains("joins of one doc") }.count == 1, "the join refusal: \(errors)")
        #expect(errors.filter { $0.contains("presence above") }.count == 1, "the presence hint: \(errors)")
        #expect(alice.messages(since: mark).filter { JSON.string($0, at: "t") == "joined" }.isEmpty, "the refused join is not answered")
        #expect(try await node.value(#"tandem_limit_rejections_total{reason="join_rate"}"#) == 1)
        try await waitUntil("bob sees the newest state once the rate allows", timeout: .seconds(5)) {
            (bob.state(of: alice.session, in: "r")?["n"] as? Int) == 4
        }
        #expect(bob.deltas(of: "r").allSatisfy { delta in
            ((JSON.array(delta, at: "updated") ?? []) + (JSON.array(delta, at: "joined") ?? [])).allSatisfy {
                JSON.string($0, at: "sid") != alice.session || JSON.int($0, at: "state.n") != 2
            }
        }, "the refused join's state was never applied")
        await alice.close()
        await bob.close()
    }

    /// Requests a connection sends before its join is complete wait for it, at most
    /// `--max-pending-requests` of them; beyond that they are refused `unavailable` at once (with the push
    /// id). Joins sent while the doc is loading are merged: one waiting join per connection.
    @Test func requestsAndJoinsWaitingForADocAreBounded() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "early", stopWhenDone: true) {
            $0.maxPendingRequests = 5
        }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        // With Redis frozen, the doc's first read does not return: joins and requests wait.
        redis.pause()
        var resumed = false
        defer { if !resumed { redis.resume() } }
        for _ in 0..<3 { alice.sendRaw(#"{"t":"join","doc":"e"}"#) }
        bob.sendRaw(#"{"t":"join","doc":"e"}"#)
        for id in 1...12 {
            alice.sendRaw(#"{"t":"push","doc":"e","id":\#(id),"base":0,"ops":{"r\#(id)":["put",{"v":\#(id)}]}}"#)
        }
        try await waitUntil("seven pushes refused at once; \(alice.summary())") { alice.errors("unavailable").count == 7 }
        let refusedIDs = Set(alice.errors("unavailable").compactMap { JSON.int($0, at: "id") })
        #expect(refusedIDs == Set(6...12))
        #expect(alice.errors("unavailable").allSatisfy { JSON.string($0, at: "message")?.contains("--max-pending-requests") == true })
        #expect(alice.all("joined").isEmpty, "refused before the join completed")
        #expect(try await node.value(#"tandem_limit_rejections_total{reason="pending_requests"}"#) == 7)
        try await waitUntil("gauges: 5 early requests, 2 waiting joins (one per connection)") {
            let early = try await node.value(#"tandem_queue_depth{queue="early_requests"}"#)
            let joins = try await node.value(#"tandem_queue_depth{queue="pending_joins"}"#)
            return early == 5 && joins == 2
        }
        redis.resume()
        resumed = true
        try await alice.next("joined", doc: "e", timeout: .seconds(20))
        try await bob.next("joined", doc: "e", timeout: .seconds(20))
        // The five that waited are answered (committed, or unavailable if Redis was still out of reach).
        try await waitUntil("answers to pushes 1–5; \(alice.summary())", timeout: .seconds(20)) {
            let answered = Set(
                (alice.all("result") + alice.all("error")).compactMap { JSON.int($0, at: "id") }.filter { $0 <= 5 })
            return answered == Set(1...5)
        }
        alice.sendRaw(#"{"t":"ping"}"#)
        try await alice.next("pong")
        #expect(alice.all("joined").count == 1, "three joins while loading, one joined: \(alice.all("joined").count)")
        try await waitUntil("gauges back to 0") {
            let early = try await node.value(#"tandem_queue_depth{queue="early_requests"}"#)
            let joins = try await node.value(#"tandem_queue_depth{queue="pending_joins"}"#)
            return early == 0 && joins == 0
        }
        await alice.close()
        await bob.close()
    }
}
