import Foundation
import TandemServer
import TandemTestSupport
import TandemYjs
import Testing

/// `/yjs/{room}`: the y-websocket protocol over real sockets and a real Redis (pycrdt's own provider is
/// driven against two nodes in Tests/yjs/test_interop.py).
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2))) struct YjsEndpointTests {
    static let secret = String(repeating: "y", count: 40)

    private func node(_ redis: RedisServerProcess, _ id: String, configure: (inout ServerConfiguration) -> Void = { _ in })
        async throws -> InProcessNode
    {
        try await InProcessNode.start(redis: redis.url, nodeID: id, stopWhenDone: true, configure: configure)
    }

    @Test func handshakeAnswersAStep1WithExactlyWhatTheClientLacks() async throws {
        let redis = try RedisServerProcess()
        let node = try await node(redis, "y1")
        let room = "notes:1"
        let alice = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "alice"), name: "alice")
        #expect(try await alice.serverStep1().clocks.isEmpty)
        let hello = YjsUpdates.text(client: 7, clock: 0, "hel")
        let lo = YjsUpdates.text(client: 7, clock: 3, "lo")
        alice.send(.update(hello))
        alice.send(.update(lo))
        // Relayed to every member, the sender included (as y-websocket does), in order.
        try await waitUntil("alice got her updates back") { alice.updates.count == 2 }
        #expect(alice.updates == [hello, lo])

        let bob = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "bob"), name: "bob")
        #expect(try await bob.serverStep1().clocks == [7: 5])
        // Bob has "hel": he gets "lo" only.
        let partial = try await bob.step2(for: YjsUpdates.vector([7: 3]))
        #expect(partial.sections.map(\.client) == [7])
        #expect(partial.sections.first?.clock == 3)
        #expect(partial.sections.first?.endClock == 5)
        // Up to date: nothing.
        let none = try await bob.step2(for: YjsUpdates.vector([7: 5]))
        #expect(none.sections.isEmpty && none.deleteSet.isEmpty)
        // Nothing known: all of it.
        let all = try await bob.step2(for: YStateVector())
        #expect(YStateVector(fromUpdate: all).clocks == [7: 5])

        // A step 2 that adds nothing is not stored; one that does is, and is relayed.
        bob.send(.syncStep2(update: hello))
        let bobs = YjsUpdates.text(client: 9, clock: 0, "b")
        bob.send(.syncStep2(update: bobs))
        try await waitUntil("alice got bob's step 2 as an update") { alice.updates.count == 3 }
        #expect(alice.updates.last == bobs)
        #expect(redis.command("LLEN", "tandem:yjs:{\(room)}:log") == "3")
        // Every key has an expiry (--doc-ttl).
        #expect((Int(redis.command("PTTL", "tandem:yjs:{\(room)}:log")) ?? -1) > 0)
        #expect((Int(redis.command("PTTL", "tandem:yjs:{\(room)}:meta")) ?? -1) > 0)
        // A protocol-v1 doc of the same id is another document.
        #expect(redis.command("EXISTS", "tandem:{\(room)}:head") == "0")
    }

    @Test func updatesReachEveryClientOnEveryNodeInOneOrder() async throws {
        let redis = try RedisServerProcess()
        let nodes = [try await node(redis, "ya"), try await node(redis, "yb")]
        let room = "board"
        var clients: [YjsTestClient] = []
        for i in 0..<4 {
            let client = try await YjsTestClient.connect(
                YjsTestClient.url(port: nodes[i % 2].port, room: room, user: "u\(i)"), name: "u\(i)")
            _ = try await client.serverStep1()
            clients.append(client)
        }
        let perClient = 25
        await withTaskGroup(of: Void.self) { group in
            for (i, client) in clients.enumerated() {
                group.addTask {
                    for k in 0..<perClient {
                        client.send(.update(YjsUpdates.text(client: UInt64(100 + i), clock: k, "x")))
                    }
                }
            }
        }
        let total = perClient * clients.count
        for client in clients {
            try await waitUntil("\(client.name) got every update") { client.updates.count >= total }
        }
        // One order per room, on both nodes, the senders' own updates included.
        let order = clients[0].updates
        #expect(order.count == total)
        for client in clients.dropFirst() { #expect(client.updates == order, "\(client.name)") }
        #expect(Set(order).count == total)
        // A late joiner on either node gets the whole document in its step 2.
        let late = try await YjsTestClient.connect(YjsTestClient.url(port: nodes[1].port, room: room, user: "late"), name: "late")
        let everything = try await late.step2(for: YStateVector())
        #expect(YStateVector(fromUpdate: everything).clocks == [100: 25, 101: 25, 102: 25, 103: 25])
        let commits = try await nodes[0].metric("tandem_sync_pushes_total{action=\"commit\"}")
            + nodes[1].metric("tandem_sync_pushes_total{action=\"commit\"}")
        #expect(commits == Double(total))
        // Every append was answered (the gauge exists and balances).
        try await waitUntil("no appends in flight") {
            let first = try? await nodes[0].metric("tandem_queue_depth{queue=\"yjs_appends\"}")
            let second = try? await nodes[1].metric("tandem_queue_depth{queue=\"yjs_appends\"}")
            return first == 0 && second == 0
        }
    }

    @Test func readOnlyClientsGetPermissionDeniedAndUngrantedRoomsAreRefused() async throws {
        let redis = try RedisServerProcess()
        let node = try await node(redis, "yro") { $0.jwtSecret = Self.secret }
        let room = "shared:doc"
        let viewerToken = try await makeToken(secret: Self.secret, user: "vic", docs: ["shared:*": "viewer"])
        let editorToken = try await makeToken(secret: Self.secret, user: "eve", docs: ["shared:*": "editor"])
        let viewer = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "", token: viewerToken))
        let editor = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "", token: editorToken))
        _ = try await viewer.serverStep1()
        _ = try await editor.serverStep1()
        viewer.send(.update(YjsUpdates.text(client: 1, clock: 0, "nope")))
        try await waitUntil("viewer told permission denied") {
            viewer.messages.contains { if case .permissionDenied = $0 { true } else { false } }
        }
        // The editor's update goes through and reaches the viewer; the viewer's never did.
        let edit = YjsUpdates.text(client: 2, clock: 0, "yes")
        editor.send(.update(edit))
        try await waitUntil("viewer got the editor's update") { viewer.updates == [edit] }
        #expect(editor.updates == [edit])
        #expect(redis.command("LLEN", "tandem:yjs:{\(room)}:log") == "1")
        // No grant for the room: refused at the handshake, as /v1/ws joins are.
        let (status, _, body) = try await handshakeRejection(YjsTestClient.url(port: node.port, room: "other", user: "", token: viewerToken))
        #expect(status == 403, "\(body)")
        let unauthenticated = try await handshakeRejection("ws://127.0.0.1:\(node.port)/yjs/\(room)")
        #expect(unauthenticated.status == 401)
        // Not a doc id.
        let (badRoom, _, _) = try await handshakeRejection("ws://127.0.0.1:\(node.port)/yjs/a%20b?token=\(editorToken)")
        #expect(badRoom == 404)
    }

    @Test func hostileBytesAndLimitsGetCloseCodes() async throws {
        let redis = try RedisServerProcess()
        let node = try await node(redis, "yh") {
            $0.yjsMaxMessageBytes = 1024
            $0.yjsMaxRoomBytes = 2048
            $0.yjsUpdateRate = 2
        }
        func connect(_ room: String) async throws -> YjsTestClient {
            let client = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "h"))
            _ = try await client.serverStep1()
            return client
        }
        // Not a y-protocols message; a valid message holding an invalid update; a text frame.
        let junk = try await connect("h1")
        junk.sendRaw([0xFF, 0xFF, 0xFF])
        #expect(try await junk.waitClosed() == 1007)
        let badUpdate = try await connect("h1")
        badUpdate.send(.update([5, 1, 2]))
        #expect(try await badUpdate.waitClosed() == 1007)
        let text = try await connect("h1")
        text.socket.send(text: "{}")
        #expect(try await text.waitClosed() == 1003)
        // Over --yjs-max-message-bytes.
        let large = try await connect("h1")
        large.send(.update(YjsUpdates.text(client: 1, clock: 0, String(repeating: "a", count: 2000))))
        #expect(try await large.waitClosed() == 1009)
        // Over --yjs-update-rate (burst: 2 s worth, so the fifth at once is over).
        let fast = try await connect("h2")
        for k in 0..<5 { fast.send(.update(YjsUpdates.text(client: 2, clock: k, "f"))) }
        #expect(try await fast.waitClosed() == 1008)
        // Over --yjs-max-room-bytes: the update that would pass it closes its sender with 4413.
        // Each update is either taken (the room's seq in Redis counts it) or refused (its sender closed)
        // before the next is sent: waiting on either outcome, not for a fixed second, which on a busy machine
        // could pass before a refusal and send one more update over the limit (a second rejection).
        var full: YjsTestClient?
        var clock = 0
        var taken = 0
        for _ in 0..<6 {
            let client = try await connect("h3")
            client.send(.update(YjsUpdates.text(client: 3, clock: clock, String(repeating: "r", count: 600))))
            clock += 600
            try await waitUntil("update \(taken + 1) to h3 taken or its sender closed", timeout: .seconds(30)) {
                client.socket.isClosed || Int(redis.command("HGET", "tandem:yjs:{h3}:meta", "seq")) == taken + 1
            }
            if client.socket.isClosed {
                #expect(client.closeCode == 4413)
                full = client
                break
            }
            taken += 1
            await client.close()
        }
        #expect(full != nil)
        #expect(taken == 3, "2048 bytes hold three updates of about 600 bytes: \(taken)")
        #expect(try await node.metric("tandem_limit_rejections_total{reason=\"yjs_room_bytes\"}") == 1)
        #expect(try await node.metric("tandem_limit_rejections_total{reason=\"yjs_update_rate\"}") == 1)
        #expect(try await node.metric("tandem_limit_rejections_total{reason=\"yjs_message_bytes\"}") == 1)
        #expect(try await node.metric("tandem_connections_closed_total{reason=\"invalid_message\"}") == 2)
        // The node is fine: a new client syncs.
        let after = try await connect("h1")
        #expect(try await after.step2(for: YStateVector()).sections.isEmpty)
    }

    /// A client sending updates whose structs start past the room's clock for their client (their
    /// predecessors never sent) is closed with 4429 once the room holds --yjs-max-pending-updates of them,
    /// and the one over the limit is not stored; the room's other members keep being served, and once the
    /// gap is filled the room's state vector reaches past everything that waited.
    @Test func updatesWithMissingDependenciesAreBoundedPerRoom() async throws {
        let redis = try RedisServerProcess()
        let node = try await node(redis, "yp") { $0.yjsMaxPendingUpdates = 3 }
        let room = "gaps"
        func connect(_ name: String) async throws -> YjsTestClient {
            let client = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: name), name: name)
            _ = try await client.serverStep1()
            return client
        }
        func log() -> String? { redis.command("LLEN", "tandem:yjs:{\(room)}:log") }
        func holds(_ client: YjsTestClient, _ yjsClient: UInt64) -> Bool {
            client.updates.contains { (try? YUpdate(decoding: $0))?.sections.contains { $0.client == yjsClient } ?? false }
        }
        let viewer = try await connect("viewer")
        let hostile = try await connect("hostile")
        // Client 9's clocks 0–9 never come: each of these waits in the room.
        for k in 1...3 { hostile.send(.update(YjsUpdates.text(client: 9, clock: 10 * k, "g"))) }
        try await waitUntil("the three were stored") { log() == "3" }
        func pending() async throws -> Double { try await node.metric("tandem_yjs_pending_updates") }
        try await waitUntil("the pending gauge at 3") { try await pending() == 3 }
        hostile.send(.update(YjsUpdates.text(client: 9, clock: 40, "g")))
        #expect(try await hostile.waitClosed() == 4429)
        #expect(try await node.metric("tandem_limit_rejections_total{reason=\"yjs_pending_updates\"}") == 1)
        #expect(log() == "3")
        // The viewer is still served: another member's update reaches it.
        let editor = try await connect("editor")
        editor.send(.update(YjsUpdates.text(client: 5, clock: 0, "e")))
        try await waitUntil("the viewer got the editor's update") { holds(viewer, 5) }
        // The gap filled (client 9's step 2 after a reconnect, here in one update): stored though the room
        // is at its limit, and a joiner's step 1 says client 9 is at 31.
        let fill = Yjs.mergeUpdates(try [
            YjsUpdates.text(client: 9, clock: 0, String(repeating: "f", count: 10)),
            YjsUpdates.text(client: 9, clock: 11, String(repeating: "f", count: 9)),
            YjsUpdates.text(client: 9, clock: 21, String(repeating: "f", count: 9)),
        ].map { try YUpdate(decoding: $0) }).encoded()
        editor.send(.update(fill))
        try await waitUntil("the fill was stored") { log() == "5" }
        try await waitUntil("nothing pending") { try await pending() == 0 }
        let joiner = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "joiner"), name: "joiner")
        #expect(try await joiner.serverStep1().clocks == [5: 1, 9: 31])
        // And the next gap is accepted again.
        let again = try await connect("again")
        again.send(.update(YjsUpdates.text(client: 9, clock: 40, "g")))
        try await waitUntil("the new gap was stored") { log() == "6" }
        #expect(again.closeCode == nil)
        try await waitUntil("one pending") { try await pending() == 1 }
        // Everyone leaves: the room is dropped, and its pending update leaves the gauge with it.
        for client in [viewer, editor, joiner, again] { await client.close() }
        try await waitUntil("the room dropped, the gauge back at 0") {
            let rooms = try await node.metric("tandem_yjs_rooms")
            let waiting = try await pending()
            return rooms == 0 && waiting == 0
        }
    }

    @Test func theLogIsCompactedIntoASnapshotWithoutLosingContentAndSurvivesARestart() async throws {
        let redis = try RedisServerProcess()
        let room = "long"
        var node: InProcessNode? = try await InProcessNode.start(redis: redis.url, nodeID: "yc1") { $0.yjsUpdateRate = 100_000 }
        let writer = try await YjsTestClient.connect(YjsTestClient.url(port: node!.port, room: room, user: "w"), name: "w")
        _ = try await writer.serverStep1()
        let count = 1_200
        for k in 0..<count { writer.send(.update(YjsUpdates.text(client: 5, clock: k, "k"))) }
        try await waitUntil("every update relayed") { writer.updates.count == count }
        try await waitUntil("the log compacted") {
            (Int(redis.command("LLEN", "tandem:yjs:{\(room)}:log")) ?? .max) < 500
                && redis.command("EXISTS", "tandem:yjs:{\(room)}:snap") == "1"
        }
        #expect(try await node!.metric("tandem_yjs_compactions_total") >= 1)
        let reader = try await YjsTestClient.connect(YjsTestClient.url(port: node!.port, room: room, user: "r"), name: "r")
        #expect(YStateVector(fromUpdate: try await reader.step2(for: YStateVector())).clocks == [5: count])
        await writer.close()
        await reader.close()
        await node!.stop()
        node = nil
        // A new node reads snapshot + log.
        let second = try await self.node(redis, "yc2")
        let late = try await YjsTestClient.connect(YjsTestClient.url(port: second.port, room: room, user: "l"), name: "l")
        #expect(try await late.serverStep1().clocks == [5: count])
        let whole = try await late.step2(for: YStateVector())
        #expect(YStateVector(fromUpdate: whole).clocks == [5: count])
        #expect(whole.sections.first?.clock == 0)
    }

    @Test func aGapInTheRoomsUpdatesIsFilledFromTheLogInOrder() async throws {
        let redis = try RedisServerProcess()
        let node = try await node(redis, "yg")
        let room = "gap"
        let alice = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "alice"), name: "alice")
        _ = try await alice.serverStep1()
        let first = YjsUpdates.text(client: 1, clock: 0, "a")
        alice.send(.update(first))
        try await waitUntil("first relayed") { alice.updates.count == 1 }
        // An update appended without its pub/sub message (as if the message were lost): seq 2 in the log.
        let missed = YjsUpdates.text(client: 9, clock: 0, "z")
        #expect(missed == [1, 1, 9, 0, 4, 1, 1, 116, 1, 122, 0])
        redis.command(
            "EVAL",
            "redis.call('RPUSH', KEYS[1], string.char(1, 1, 9, 0, 4, 1, 1, 116, 1, 122, 0)); "
                + "redis.call('HINCRBY', KEYS[2], 'bytes', 11); return redis.call('HINCRBY', KEYS[2], 'seq', 1)",
            "2", "tandem:yjs:{\(room)}:log", "tandem:yjs:{\(room)}:meta")
        // Seq 3 arrives (or the periodic check notices seq 2 first): the node reads the log and relays
        // what its clients missed, in the room's order.
        let third = YjsUpdates.text(client: 1, clock: 1, "b")
        alice.send(.update(third))
        try await waitUntil("the gap filled") { alice.updates.count == 3 }
        #expect(alice.updates == [first, missed, third])
        #expect(try await node.metric("tandem_yjs_room_reloads_total") >= 1)
    }

    @Test func aRoomRedisLostClosesItsClientsSoTheirStep2sRestoreIt() async throws {
        let redis = try RedisServerProcess()
        let node = try await node(redis, "yl")
        let room = "lost"
        let alice = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "alice"), name: "alice")
        _ = try await alice.serverStep1()
        let text = YjsUpdates.text(client: 1, clock: 0, "kept by the client")
        alice.send(.update(text))
        try await waitUntil("relayed") { alice.updates.count == 1 }
        redis.command("FLUSHALL")
        // Found by the periodic check: closed with 1013, so the provider reconnects.
        #expect(try await alice.waitClosed() == 1013)
        // The reconnecting client answers the server's step 1 with its whole document.
        let again = try await YjsTestClient.connect(YjsTestClient.url(port: node.port, room: room, user: "alice"), name: "again")
        #expect(try await again.serverStep1().clocks.isEmpty)
        again.send(.syncStep2(update: text))
        try await waitUntil("restored") { again.updates == [text] }
        #expect(redis.command("HGET", "tandem:yjs:{\(room)}:meta", "seq") == "1")
    }
}
