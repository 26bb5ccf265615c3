import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Catch-up in chunks: more than 5,000 records or entries arrive in several `snapshot` / `log` chunks,
/// only the last with `more: false`; explicit `sync` requests page through the log.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncCatchUpTests {
    @Test(
        .disabled(
            if: RunningSanitizer.current == .thread,
            """
            5,100 pushes queued at once: under ThreadSanitizer on two shared cores the doc's estimated wait \
            passes 60 s, the upper bound of --max-push-wait-ms, and the tail is refused busy (seen: 68 s). \
            Catch-up chunking runs under AddressSanitizer and in the normal build.
            """))
    func largeDocsAndLongHistoriesArriveInChunks() async throws {
        // 5,100 pushes are fired at once to build a long history quickly: let them all queue.
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.maxQueuedPushes = 10_000
            $0.maxPushWaitMs = 60_000
        }
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
        let last = try await writer.answer(doc, id: 100 + commits, timeout: .seconds(60))
        #expect(last.string("action") == "commit", "\(last)")
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

    /// Reads of the Redis log — a join's catch-up, an explicit `sync` — stop at about 1 MiB (whole entries,
    /// at least one), whatever the entries' and batches' sizes, and go on from where they stopped: a log of
    /// megabytes never becomes one reply of megabytes in Redis or in the node, and nothing is skipped.
    @Test func logReadsStopAtAboutOneMebibyteAndGoOnFromThere() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) { $0.maxPushWaitMs = 60_000 }
        let doc = "catchup:bytes"
        let writer = try await cluster.client("writer", node: 0)
        try await writer.join(doc)
        func ops(_ k: Int) -> JSONValue {
            // Three records of 50,000 characters: about 150 KB of ops per push.
            let text = String(repeating: String(k % 10), count: 50_000)
            return json(#"{"a\#(k)":["put",{"t":"\#(text)"}],"b\#(k)":["put",{"t":"\#(text)"}],"c\#(k)":["put",{"t":"\#(text)"}]}"#)
        }
        // Sixteen commits one at a time (a log entry each), then sixteen pushes at once (group commits of
        // several pushes: larger entries).
        for k in 1...16 {
            writer.push(doc, id: .number(UInt64(k)), ops: ops(k))
            #expect(try await writer.answer(doc, id: k).string("action") == "commit")
        }
        for k in 17...32 { writer.push(doc, id: .number(UInt64(k)), ops: ops(k)) }
        for k in 17...32 { #expect(try await writer.answer(doc, id: k, timeout: .seconds(30)).string("action") == "commit") }
        let head = SyncRedis.head(cluster.redis, doc)
        #expect(head == 32)
        #expect(SyncRedis.log(cluster.redis, doc).count == 32)

        // Node 1 has not loaded the doc: a join from 0 reads the whole ~4.8 MB log from Redis, in pieces.
        let back = try await cluster.client("back", node: 1)
        try await back.join(doc, since: 0, timeout: .seconds(30))
        #expect(back.view(doc).chunks.allSatisfy { $0.type == "log" }, "\(back.view(doc).chunks)")
        #expect(back.view(doc).chunks.count >= 5, "no chunk is much over 1 MiB")
        #expect(back.view(doc).catchUpEntries.keys.sorted() == Array(1...head))
        #expect(back.view(doc).complete)
        cluster.expectRecordsEqualRedis(back, doc)

        // Explicit syncs on node 1 read Redis too (its replica keeps no history). Each reply, and what Redis
        // sends the node for it, is about 1 MiB; asking on from each reply's end gets every clock once.
        // What Redis sent is read off its server-wide counter, which also counts whatever else reads Redis in
        // the window (node 0's history sealer reading the log to seal it: a whole log's 5 MB once, in a fresh
        // clone's run). So a read that looks too large is repeated (a sync is a pure read), up to three times,
        // and the smallest of its measurements is the read's own.
        var clocks: [UInt64] = []
        var from: UInt64 = 0
        var replies = 0
        var reads = 0
        while true {
            var sent = Int.max
            var reply: [String: JSONValue] = [:]
            for _ in 0..<3 {
                let before = Int(cluster.redis.info("stats")["total_net_output_bytes"] ?? "") ?? -1
                back.sendJSON(.object(["t": .string("sync"), "doc": .string(doc), "from": .number(from)]))
                try await waitUntil("sync reply \(replies + 1)") { back.view(doc).explicitReplies.count == replies + 1 }
                sent = min(sent, (Int(cluster.redis.info("stats")["total_net_output_bytes"] ?? "") ?? -1) - before)
                reply = back.view(doc).explicitReplies[replies]
                replies += 1
                if sent < 1_400_000 { break }
            }
            reads += 1
            let got = (reply["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["clock"]?.uint64Value }
            #expect(!got.isEmpty && got.count < 16, "read \(reads): \(got)")
            #expect(sent > 100_000 && sent < 1_400_000, "read \(reads): Redis sent \(sent) bytes for one read")
            clocks += got
            guard reply["more"] == .bool(true), let last = got.last else { break }
            from = last
        }
        #expect(clocks == Array(1...head))
        #expect(reads >= 5)
        await cluster.finish()
    }
}
