import Foundation
import Testing
import TandemTestSupport

/// Presence modes (issue 13): `join` with `"presence":"full"` (default), `"hidden"` (sees others, is seen by
/// no one) or `"none"` (no presence either way). Two real nodes on one real Redis.
@Suite(.serialized) struct PresenceModeTests {
    @Test func aHiddenMemberSeesOthersOnBothNodesAndIsNeverSeenNorStored() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "pm1")
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "pm2")
        defer { Task { await n1.stop(); await n2.stop() } }
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        let hana = try await TestClient.connect(n2.url(user: "hana"), name: "hana")
        try await alice.join("pm", state: ["cursor": 0])
        try await bob.join("pm", state: ["cursor": 0])

        hana.send(["t": "join", "doc": "pm", "presence": "hidden"])
        let joined = try await hana.next("joined", doc: "pm")
        let listed = Set((JSON.array(joined, at: "presence") ?? []).compactMap { JSON.string($0, at: "sid") })
        #expect(listed == [alice.session, bob.session], "a hidden member's list holds the others, not itself")

        // It receives the others' updates, from this node and the other.
        alice.presence("pm", ["cursor": 7])
        bob.presence("pm", ["cursor": 8])
        try await waitUntil("hana sees alice's and bob's cursors") {
            (hana.state(of: alice.session, in: "pm")?["cursor"] as? Int) == 7
                && (hana.state(of: bob.session, in: "pm")?["cursor"] as? Int) == 8
        }
        // Setting presence is refused with a clear error; the connection stays.
        hana.presence("pm", ["cursor": 1])
        let refusal = try await hana.next("error") { JSON.string($0, at: "code") == "presence_disabled" }
        #expect(JSON.string(refusal, at: "doc") == "pm")
        #expect(!hana.isClosed)

        // A later newcomer's list and every delta so far leave hana out, on both nodes; so does Redis.
        let carol = try await TestClient.connect(n1.url(user: "carol"), name: "carol")
        let carolJoined = try await carol.join("pm")
        #expect(!((JSON.array(carolJoined, at: "presence") ?? []).contains { JSON.string($0, at: "sid") == hana.session }))
        // Both have seen carol arrive, so every tick since hana joined has reached them.
        try await waitUntil("alice and bob see carol") {
            alice.members(of: "pm").contains(carol.session) && bob.members(of: "pm").contains(carol.session)
        }
        for client in [alice, bob, carol] {
            #expect(!client.rawMessages.contains { $0.contains(hana.session) }, "\(client.name) heard of the hidden member")
        }
        #expect(redis.command("HEXISTS", "tandem:{pm}:presence:pm2", hana.session) == "0")
        #expect(redis.command("HEXISTS", "tandem:{pm}:presence:pm2", bob.session) == "1")
        let status = try await n2.get("/api/docs/pm").body
        #expect(status.contains(bob.session) && !status.contains(hana.session))
        #expect(try await n2.metric(#"tandem_presence_members{mode="hidden"}"#) == 1)
        #expect(try await n2.metric(#"tandem_presence_members{mode="full"}"#) == 1)

        // Re-joining with "full" shows it (so the checks above could fail); re-joining hidden again is a leave.
        hana.send(["t": "join", "doc": "pm", "presence": "full", "state": ["cursor": 3]])
        try await waitUntil("alice sees hana once she is shown") {
            (alice.state(of: hana.session, in: "pm")?["cursor"] as? Int) == 3
        }
        hana.send(["t": "join", "doc": "pm", "presence": "hidden"])
        try await waitUntil("alice sees hana leave when she hides") { !alice.members(of: "pm").contains(hana.session) }
        try await waitUntil("hana's entry deleted from Redis") {
            redis.command("HEXISTS", "tandem:{pm}:presence:pm2", hana.session) == "0"
        }
        for client in [alice, bob, carol, hana] { await client.close() }
        try await waitUntil("no members left on n2") {
            (try? await n2.metric(#"tandem_presence_members{mode="hidden"}"#)) == 0
        }
    }

    @Test func aMemberWithoutPresenceGetsNoDeltasAndCannotSetPresence() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "pn1")
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "pn2")
        defer { Task { await n1.stop(); await n2.stop() } }
        let alice = try await TestClient.connect(n1.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(n2.url(user: "bob"), name: "bob")
        let nils = try await TestClient.connect(n1.url(user: "nils"), name: "nils")
        try await alice.join("pn", state: ["cursor": 0])

        nils.send(["t": "join", "doc": "pn", "presence": "none"])
        let joined = try await nils.next("joined", doc: "pn")
        #expect((JSON.array(joined, at: "presence") ?? [1]).isEmpty, "a none member's joined lists no one")
        try await bob.join("pn")
        for i in 1...5 {
            alice.presence("pn", ["cursor": i])
            bob.presence("pn", ["cursor": 10 + i])
            try await waitUntil("alice and bob see update \(i)") {
                (bob.state(of: alice.session, in: "pn")?["cursor"] as? Int) == i
                    && (alice.state(of: bob.session, in: "pn")?["cursor"] as? Int) == 10 + i
            }
        }
        #expect(nils.all("presence").isEmpty, "a none member received presence deltas: \(nils.summary())")
        #expect(!alice.rawMessages.contains { $0.contains(nils.session) })
        #expect(!bob.rawMessages.contains { $0.contains(nils.session) })
        #expect(redis.command("HEXISTS", "tandem:{pn}:presence:pn1", nils.session) == "0")

        nils.presence("pn", ["cursor": 1])
        let refusal = try await nils.next("error") { JSON.string($0, at: "code") == "presence_disabled" }
        #expect(JSON.string(refusal, at: "message")?.contains("none") == true)
        nils.send(["t": "ping"])
        try await nils.next("pong")
        #expect(try await n1.metric(#"tandem_presence_members{mode="none"}"#) == 1)
        #expect(try await n1.metric(#"tandem_presence_updates_total{result="disabled"}"#) == 1)
        for client in [alice, bob, nils] { await client.close() }
    }

    @Test func badPresenceModesAreRefusedWithAClearError() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "pb1")
        defer { Task { await node.stop() } }
        let client = try await TestClient.connect(node.url(user: "eve"), name: "eve")
        for bad in [#""invisible""#, "1", "null", #""FULL""#, "true"] {
            client.sendRaw(#"{"t":"join","doc":"pb","presence":"# + bad + "}")
            let error = try await client.next("error")
            #expect(JSON.string(error, at: "code") == "bad_message", "presence \(bad)")
            #expect(JSON.string(error, at: "message")?.contains(#""full", "hidden" or "none""#) == true)
        }
        client.sendRaw(#"{"t":"join","doc":"pb","presence":"hidden","state":{"x":1}}"#)
        let withState = try await client.next("error")
        #expect(JSON.string(withState, at: "code") == "bad_message")
        #expect(client.all("joined").isEmpty)
        #expect(!client.isClosed)
        // The default is "full".
        try await client.join("pb", state: ["x": 1])
        #expect(client.members(of: "pb") == [client.session])
        await client.close()
    }
}
