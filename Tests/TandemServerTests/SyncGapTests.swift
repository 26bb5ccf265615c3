import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Commits travel between nodes over pub/sub, which loses messages when a subscriber connection drops.
/// Nodes notice the gap and fill it from the Redis log: every client still gets every clock, in order.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncGapTests {
    @Test func lostPubSubMessagesAreFilledFromTheLog() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "gap:1"
        var writers: [SyncClient] = []
        var readers: [SyncClient] = []
        for node in [0, 1] {
            let writer = try await cluster.client("writer\(node)", node: node)
            let reader = try await cluster.client("reader\(node)", node: node)
            try await writer.join(doc)
            try await reader.join(doc)
            writers.append(writer)
            readers.append(reader)
        }
        // Both writers push steadily while the nodes' pub/sub connections are killed again and again.
        let perWriter = 150
        let killed = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (w, writer) in writers.enumerated() {
                group.addTask {
                    for k in 1...perWriter {
                        writer.push(doc, id: .number(k), ops: json(#"{"w\#(w)":["put",{"k":\#(k)}],"all":["put",{"last":"\#(w)-\#(k)"}]}"#))
                        if k % 5 == 0 { _ = try await writer.answer(doc, id: k) }
                        try await Task.sleep(for: .milliseconds(2))
                    }
                }
            }
            group.addTask {
                for _ in 0..<6 {
                    try await Task.sleep(for: .milliseconds(80))
                    let count = Int(cluster.redis.command("CLIENT", "KILL", "TYPE", "pubsub")) ?? 0
                    killed.withLock { $0 += count }
                }
            }
            try await group.waitForAll()
        }
        #expect(killed.value >= 6, "subscriber connections killed while commits flowed: \(killed.value)")
        for writer in writers {
            for k in 1...perWriter {
                let answer = try await writer.answer(doc, id: k, timeout: .seconds(20))
                #expect(answer.string("action") == "commit", "\(writer.name) push \(k): \(answer)")
            }
        }
        #expect(SyncRedis.head(cluster.redis, doc) == UInt64(2 * perWriter))
        try await cluster.waitConverged(doc)
        for client in writers + readers {
            cluster.expectRecordsEqualRedis(client, doc)
            #expect(client.view(doc).liveClocks == Array(1...UInt64(2 * perWriter)), "\(client.name) got every clock once, in order")
        }
        await cluster.finish()
    }
}
