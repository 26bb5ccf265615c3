import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Catch-up in chunks: more than 5,000 records or entries arrive in several `snapshot` / `log` chunks,
/// only the last with `more: false`; explicit `sync` requests page through the log.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncCatchUpTests {
    @Test func largeDocsAndLongHistoriesArriveInChunks() async throws {
        // 5,100 pushes are fired at once to build a long history quickly: let them all queue.
        let cluster = try await SyncCluster.start(nodes: 2) { $0.maxQueuedPushes = 10_000 }
        let doc = "catchup:big"
        let writer = try await cluster.client("writer", node: 0)
        try await writer.join(doc)

        // 6,000 records in six pushes of 1,000 ops.
        for p in 0..<6 {
            let ops = (0..<1000).map { #""rec\#(p * 1000 + $0)":["put",{"i":\#(p * 1000 + $0)}]"# }.joined(separator: ",")
            writer.push(doc, id: .number(p), ops: json("{\(ops)}"))
        }
        for p in 0..<6 { #expect(try await writer.answer(doc, id: p).string("action") == "commit") }
        let base = writer.view(doc).head
        #expect(base == 6)

        for node in [0, 1] {
            let fresh = try await cluster.client("snap\(node)", node: node)
            try await fresh.join(doc)
            let view = fresh.view(doc)
            #expect(view.chunks.map(\.type) == ["snapshot", "snapshot"])
            #expect(view.chunks.map(\.items) == [5000, 1000])
            #expect(view.chunks.map(\.more) == [true, false])
            #expect(view.records.count == 6000)
            cluster.expectRecordsEqualRedis(fresh, doc)
        }

        // 5,100 more commits: a client coming back from `base` needs more than one log chunk.
        let commits = 5100
        for k in 1...commits {
            writer.push(doc, id: .number(100 + k), ops: json(#"{"counter":["put",{"k":\#(k)}]}"#))
        }
        #expect(try await writer.answer(doc, id: 100 + commits, timeout: .seconds(60)).string("action") == "commit")
        let head = SyncRedis.head(cluster.redis, doc)
        #expect(head == base + UInt64(commits))

        // Node 0 serves the tail from memory, node 1 (which has not loaded the doc) all of it from Redis.
        for node in [0, 1] {
            let back = try await cluster.client("back\(node)", node: node)
            try await back.join(doc, since: base, timeout: .seconds(30))
            let view = back.view(doc)
            #expect(view.chunks.allSatisfy { $0.type == "log" }, "\(view.chunks)")
            #expect(view.chunks.count >= 2)
            #expect(view.chunks.first?.items == 5000)
            #expect(view.chunks.dropLast().allSatisfy(\.more) && view.chunks.last?.more == false, "\(view.chunks.map(\.more))")
            #expect(view.chunks.reduce(0) { $0 + $1.items } == commits)
            #expect(view.head == head)
        }

        // Explicit sync pages: at most `limit` (default and cap 5,000) entries after `from`.
        let reader = try await cluster.client("reader", node: 1)
        try await reader.join(doc)
        // (One at a time: replies carry no request id, and one served from memory may overtake one read
        // from Redis.)
        let requests = [
            #"{"t":"sync","doc":"\#(doc)","from":\#(base)}"#, #"{"t":"sync","doc":"\#(doc)","from":\#(base + 5000),"limit":10}"#,
            #"{"t":"sync","doc":"\#(doc)","from":\#(base),"limit":999999}"#, #"{"t":"sync","doc":"\#(doc)","from":\#(head - 2),"limit":10}"#,
        ]
        for (index, request) in requests.enumerated() {
            reader.sendJSON(json(request))
            try await waitUntil("sync reply \(index + 1)") { reader.view(doc).explicitReplies.count == index + 1 }
        }
        let replies = reader.view(doc).explicitReplies
        func clocks(_ reply: [String: JSONValue]) -> [UInt64] {
            (reply["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["clock"]?.uint64Value }
        }
        #expect(clocks(replies[0]) == Array((base + 1)...(base + 5000)))
        #expect(replies[0]["more"] == .bool(true))
        #expect(clocks(replies[1]) == Array((base + 5001)...(base + 5010)))
        #expect(replies[1]["more"] == .bool(true))
        #expect(clocks(replies[2]).count == 5000, "limit is capped at 5,000")
        #expect(clocks(replies[3]) == [head - 1, head])
        #expect(replies[3]["more"] == .bool(false))
        #expect(replies.allSatisfy { $0["head"]?.uint64Value == head })
        await cluster.finish()
    }
}
