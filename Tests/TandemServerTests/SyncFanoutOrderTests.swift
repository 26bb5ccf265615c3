import Foundation
import TandemCore
@testable import TandemServer
import TandemTestSupport
import Testing

/// A commit's fan-out to many members of one doc (issue 8): `SyncOutbox` groups what one round sends by
/// connection — by comparing identities for the first few connections of a hop, by a dictionary past
/// that — and each member must still get every clock once, in order, with its own pushes answered at
/// their clocks.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct SyncFanoutOrderTests {
    /// Twenty members on one node (about ten per event loop: past `SyncOutbox.linearGroups`), Redis frozen
    /// while each pushes twice, so the replies come as a batch and one round sends every member several
    /// items; then more pushes with Redis running (rounds of one commit each).
    @Test func everyMemberGetsEveryClockInOrderPastTheLinearGroups() async throws {
        // Admission by waiting time would refuse pushes queued behind a frozen Redis on a slow machine:
        // the bound is raised out of the way (this test is about delivery, not admission).
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxBatchesInFlight = 1
            $0.maxPushWaitMs = 60_000
        }
        let doc = "fanout:order"
        var clients: [SyncClient] = []
        for i in 0..<20 {
            let client = try await cluster.client("member\(i)")
            try await client.join(doc)
            clients.append(client)
        }
        #expect(SyncOutbox.linearGroups < 10, "the test needs more members per loop than the linear search takes")

        cluster.redis.pause()
        clients[0].push(doc, id: 0, ops: #"{"first":["put",{}]}"#)
        let node = cluster.nodes[0]
        try await waitUntil("the first push in Redis") { try await node.metric("tandem_sync_batches_total") >= 1 }
        for (i, client) in clients.enumerated() {
            for k in 1...2 { client.push(doc, id: k, ops: #"{"m\#(i)_\#(k)":["put",{"k":\#(k)}]}"#) }
        }
        try await waitUntil("forty pushes queued") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 40 }
        cluster.redis.resume()
        for (i, client) in clients.enumerated() {
            for k in 3...4 { client.push(doc, id: k, ops: #"{"m\#(i)_\#(k)":["put",{"k":\#(k)}]}"#) }
        }

        for (i, client) in clients.enumerated() {
            var clocks: [UInt64] = []
            for k in (i == 0 ? 0 : 1)...4 {
                let answer = try await client.answer(doc, id: k)
                #expect(answer.string("action") == "commit", "member\(i) push \(k): \(answer)")
                clocks.append(answer.clock() ?? 0)
            }
            #expect(clocks == clocks.sorted() && Set(clocks).count == clocks.count, "member\(i) answered in push order: \(clocks)")
        }
        let head = SyncRedis.head(cluster.redis, doc)
        #expect(head == 81)
        try await cluster.waitConverged(doc)
        for client in clients {
            #expect(client.view(doc).liveClocks == Array(1...head), "\(client.name) got every clock once, in order")
            cluster.expectRecordsEqualRedis(client, doc)
        }
        // (`finish` also checks every client's stream for ordering violations.)
        await cluster.finish()
    }
}
