import Testing
import TandemServer
import TandemTestSupport
import TandemYjs

/// `--yjs-relay-ms` (on by default; the test harness turns it off for the tests that count messages): a
/// room's updates arriving within the window reach each member as one merged update, every update exactly
/// once, on every node.
@Suite(.serialized) struct YjsCoalescingTests {
    @Test func aBurstOfConcurrentUpdatesReachesEveryClientMergedAndExactlyOnce() async throws {
        let redis = try RedisServerProcess()
        // The widest window: a burst of 100 updates cannot fit in fewer than several batches' worth of them.
        let nodes = [
            try await InProcessNode.start(redis: redis.url, nodeID: "yc-a") { $0.yjsRelayMs = 100 },
            try await InProcessNode.start(redis: redis.url, nodeID: "yc-b") { $0.yjsRelayMs = 100 },
        ]
        let room = "burst"
        var clients: [YjsTestClient] = []
        for i in 0..<4 {
            let client = try await YjsTestClient.connect(
                YjsTestClient.url(port: nodes[i % 2].port, room: room, user: "u\(i)"), name: "u\(i)")
            _ = try await client.serverStep1()
            clients.append(client)
        }
        let perClient = 25
        var sent: [[UInt8]] = []
        for i in clients.indices {
            for k in 0..<perClient { sent.append(YjsUpdates.text(client: UInt64(100 + i), clock: k, "x")) }
        }
        await withTaskGroup(of: Void.self) { group in
            for (i, client) in clients.enumerated() {
                let mine = Array(sent[(i * perClient)..<((i + 1) * perClient)])
                group.addTask { for update in mine { client.send(.update(update)) } }
            }
        }
        let everything: [UInt64: Int] = [100: perClient, 101: perClient, 102: perClient, 103: perClient]
        let whole = Yjs.mergeUpdates(try sent.map { try YUpdate(decoding: $0) })
        for client in clients {
            try await waitUntil("\(client.name) has every update") {
                let received = client.updates.compactMap { try? YUpdate(decoding: $0) }
                return !received.isEmpty && YStateVector(fromUpdate: Yjs.mergeUpdates(received)).clocks == everything
            }
            let received = try client.updates.map { try YUpdate(decoding: $0) }
            // Exactly once: as many structs as updates sent, in fewer messages; and the same document. Skips
            // are not counted: at a cold start a connection's appends can be stored out of order (EVALSHA's
            // NOSCRIPT retry), and a batch then holds a gap that the next one fills.
            #expect(
                received.reduce(0) { $0 + $1.sections.reduce(0) { $0 + $1.structs.count { !$0.isSkip } } } == sent.count, "\(client.name)")
            #expect(received.count < sent.count, "\(client.name): merged")
            #expect(Yjs.mergeUpdates(received) == whole, "\(client.name)")
        }
        let coalesced = try await nodes[0].metric("tandem_yjs_coalesced_updates_total")
            + nodes[1].metric("tandem_yjs_coalesced_updates_total")
        #expect(coalesced > 0)
        // A late joiner gets the same document in its step 2.
        let late = try await YjsTestClient.connect(YjsTestClient.url(port: nodes[1].port, room: room, user: "late"), name: "late")
        #expect(YStateVector(fromUpdate: try await late.step2(for: YStateVector())).clocks == everything)
        for client in clients { await client.close() }
        await late.close()
        for node in nodes { await node.stop() }
    }
}
