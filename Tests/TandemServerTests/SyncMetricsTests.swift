import Foundation
import TandemCore
@testable import TandemServer
import TandemTestSupport
import Testing

/// Sync metrics and the ops API's doc routes.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncMetricsTests {
    private static let series = [
        #"tandem_sync_pushes_total{action="commit"}"#, #"tandem_sync_pushes_total{action="rebase"}"#,
        #"tandem_sync_pushes_total{action="discard"}"#, #"tandem_sync_pushes_total{action="error"}"#,
        "tandem_sync_conflicts_total", "tandem_sync_concurrent_pushes_total", "tandem_sync_lag_seconds_count",
        "tandem_sync_lag_clocks_count", "tandem_sync_lag_clocks_sum", "tandem_sync_push_seconds_count",
        #"tandem_sync_push_stage_seconds_count{stage="queue"}"#, #"tandem_sync_push_stage_seconds_count{stage="commit"}"#,
    ]

    private func read(_ node: InProcessNode) async throws -> [String: Double] {
        var values: [String: Double] = [:]
        for name in Self.series { values[name] = try await node.metric(name) }
        return values
    }

    @Test func pushOutcomesConflictsLagAndQueueDepthAreCounted() async throws {
        // (One batch in Redis at a time: the queue depth below counts everything behind it.)
        let cluster = try await SyncCluster.start(nodes: 1) { $0.maxBatchesInFlight = 1 }
        let node = cluster.nodes[0]
        let doc = "metrics:1"
        let alice = try await cluster.client("alice")
        let bob = try await cluster.client("bob")
        let carol = try await cluster.client("carol")
        for client in [alice, bob, carol] { try await client.join(doc) }
        let before = try await read(node)
        func delta(_ name: String) async throws -> Double { try await node.metric(name) - before[name]! }

        alice.push(doc, id: 1, ops: #"{"r":["put",{"text":"ab"}]}"#)
        let c1 = try #require(try await alice.answer(doc, id: 1).clock())
        try await bob.waitHead(doc, c1)
        try await carol.waitHead(doc, c1)
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"text":["append","cd",2]}]}"#)
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")
        // Bob pushes from c1 (behind the head: concurrent) at an offset Alice's append made stale: a
        // rebase caused by a concurrent change (a conflict).
        bob.push(doc, id: 1, base: c1, ops: #"{"r":["patch",{"text":["append","x",2]}]}"#)
        #expect(try await bob.answer(doc, id: 1).string("action") == "rebase")
        // Carol, up to date, patches a record that never existed: void, but neither concurrent nor a conflict.
        try await carol.waitHead(doc, c1 + 2)
        carol.push(doc, id: 1, ops: #"{"nope":["patch",{"a":["put",1]}]}"#)
        #expect(try await carol.answer(doc, id: 1).string("reason") == "void")
        // Alice removes r; Bob, still at c1, patches it: a void discard caused by a concurrent change.
        alice.push(doc, id: 3, ops: #"{"r":["remove"]}"#)
        #expect(try await alice.answer(doc, id: 3).string("action") == "commit")
        bob.push(doc, id: 2, base: c1, ops: #"{"r":["patch",{"text":["put","y"]}]}"#)
        #expect(try await bob.answer(doc, id: 2).string("reason") == "void")
        // A malformed push is an error.
        carol.push(doc, id: 2, ops: #"{"r":["frob"]}"#)
        #expect(try await carol.answer(doc, id: 2).string("code") == "bad_message")

        #expect(try await delta(#"tandem_sync_pushes_total{action="commit"}"#) == 3)
        #expect(try await delta(#"tandem_sync_pushes_total{action="rebase"}"#) == 1)
        #expect(try await delta(#"tandem_sync_pushes_total{action="discard"}"#) == 2)
        #expect(try await delta(#"tandem_sync_pushes_total{action="error"}"#) == 1)
        #expect(try await delta("tandem_sync_conflicts_total") == 2, "Bob's rebase and discard, not Carol's void patch")
        #expect(try await delta("tandem_sync_concurrent_pushes_total") == 2, "Bob's two pushes from c1")
        #expect(try await delta("tandem_sync_push_seconds_count") == 6, "every decided push is timed")
        for stage in ["queue", "commit"] {
            #expect(try await delta(#"tandem_sync_push_stage_seconds_count{stage="\#(stage)"}"#) == 4, "the 3 commits and the rebase, by stage")
        }
        // Four commits, each written as a patch to the two members that did not push it.
        try await waitUntil("lag recorded for 8 patch deliveries") { try await delta("tandem_sync_lag_seconds_count") >= 8 }
        #expect(try await delta("tandem_sync_lag_seconds_count") == 8)

        // Acks feed the lag in clocks: Carol 2 behind, Bob up to date.
        let head = SyncRedis.head(cluster.redis, doc)
        try await carol.waitHead(doc, head)
        carol.sendJSON(json(#"{"t":"ack","doc":"\#(doc)","clock":\#(head - 2)}"#))
        bob.sendJSON(json(#"{"t":"ack","doc":"\#(doc)","clock":\#(head)}"#))
        try await waitUntil("two acks recorded") { try await delta("tandem_sync_lag_clocks_count") == 2 }
        #expect(try await delta("tandem_sync_lag_clocks_sum") == 2)
        #expect(bob.view(doc).violations.isEmpty && !bob.socket.rawMessages.contains { $0.contains(#""t":"error""#) }, "ack has no answer")

        // Pushes wait in the push queue while one is being committed (Redis frozen).
        #expect(try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 0)
        cluster.redis.pause()
        for k in 10..<20 { alice.push(doc, id: .number(k), ops: json(#"{"q\#(k)":["put",{}]}"#)) }
        try await waitUntil("nine pushes queued behind the one in flight") {
            try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 9
        }
        cluster.redis.resume()
        for k in 10..<20 { #expect(try await alice.answer(doc, id: k).string("action") == "commit") }
        // (The gauge is summed at each presence tick.)
        try await waitUntil("the push queue is empty again") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 0 }
        await cluster.finish()
    }

    /// Redis's own work is exported beside the commit counters (commands, those scripts run included, and
    /// CPU), so an operator can read Redis commands and Redis CPU per commit without access to Redis.
    @Test func redisCommandsAndCPUAreCounted() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let node = cluster.nodes[0]
        let doc = "metrics:redis"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        // (Sampled every 5 s; the first sample is the baseline.)
        var k = 0
        try await waitUntil("Redis's commands counted", timeout: .seconds(20), poll: .milliseconds(250)) {
            k += 1
            alice.push(doc, id: k, ops: #"{"r":["put",{"k":\#(k)}]}"#)
            _ = try await alice.answer(doc, id: k)
            return try await node.metric("tandem_redis_commands_processed_total") > 0
        }
        try await waitUntil("Redis's CPU counted", timeout: .seconds(20)) {
            try await node.metric("tandem_redis_cpu_seconds_total") > 0
        }
        await cluster.finish()
    }

    /// Redis's totals become counter increments: the first reading is a baseline, a total that went down
    /// (a restarted Redis, CONFIG RESETSTAT) a new one.
    @Test func redisTotalsBecomeIncrementsFromABaseline() {
        var work = RedisWorkCounters()
        #expect(work.advance(commands: 1_000, cpuSeconds: 2.5) == (0, 0))
        #expect(work.advance(commands: 1_250, cpuSeconds: 3.0) == (250, 0.5))
        #expect(work.advance(commands: nil, cpuSeconds: nil) == (0, 0), "a reply without the fields changes nothing")
        #expect(work.advance(commands: 40, cpuSeconds: 0.25) == (0, 0), "reset: a new baseline")
        #expect(work.advance(commands: 50, cpuSeconds: 0.5) == (10, 0.25))
    }

    @Test func aFullPushQueueRefusesNewPushesAsUnavailable() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxQueuedPushes = 3
            $0.maxBatchesInFlight = 1
        }
        let doc = "queue:full"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        let node = cluster.nodes[0]
        cluster.redis.pause()
        for k in 1...6 { alice.push(doc, id: .number(k), ops: json(#"{"q\#(k)":["put",{}]}"#)) }
        // One in flight, three queued, the last two refused at once (retryable).
        for k in 5...6 {
            let refused = try await alice.answer(doc, id: k)
            #expect(refused.string("code") == "unavailable")
        }
        // (The gauge is summed at each presence tick.)
        try await waitUntil("three pushes queued") { try await node.metric(#"tandem_queue_depth{queue="push"}"#) == 3 }
        cluster.redis.resume()
        for k in 1...4 { #expect(try await alice.answer(doc, id: k).string("action") == "commit") }
        #expect(SyncRedis.head(cluster.redis, doc) == 4)
        await cluster.finish()
    }

    @Test func opsAPIDescribesDocsAndTheirLog() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) { $0.logRetention = 2 }
        let doc = "ops:doc-1"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)
        alice.push(doc, id: 1, ops: #"{"r1":["put",{"v":1}],"r2":["put",{"v":2}],"r3":["put",{"v":3}]}"#)
        _ = try await alice.answer(doc, id: 1)
        alice.push(doc, id: 2, ops: #"{"r2":["remove"]}"#)
        _ = try await alice.answer(doc, id: 2)
        bob.push(doc, id: .string("b-1"), ops: json(#"{"r1":["patch",{"v":["put",10]}]}"#))
        #expect(try await bob.answer(doc, id: .string("b-1")).clock() == 3)
        let startedMs = UInt64(Date().timeIntervalSince1970 * 1000) - 60_000

        for node in cluster.nodes {
            let response = try await node.get("/api/docs/\(doc)")
            #expect(response.status == 200)
            let info = try JSON.parse(response.body)
            #expect(JSON.string(info, at: "doc") == doc)
            #expect(JSON.int(info, at: "head") == 3)
            #expect(JSON.int(info, at: "records") == 2)
            #expect(JSON.int(info, at: "tombstones") == 1)
            // Retention 2: clocks 2 and 3 are kept at least; the log is trimmed in whole stream nodes, so
            // clock 1 may still be there.
            #expect((1...2).contains(JSON.int(info, at: "retainedFrom") ?? 0), "retention 2: clocks 2 and 3 are kept")
            let members = (JSON.array(info, at: "members") ?? []).compactMap { $0 as? [String: Any] }
            let bySID = Dictionary(uniqueKeysWithValues: members.map { (JSON.string($0, at: "sid") ?? "", $0) })
            #expect(Set(bySID.keys) == [alice.session, bob.session], "members on both nodes: \(members)")
            #expect(JSON.string(bySID[alice.session] ?? [:], at: "user") == "alice")
            #expect(JSON.string(bySID[alice.session] ?? [:], at: "name") == "alice")
            #expect(JSON.string(bySID[alice.session] ?? [:], at: "role") == "editor")
            #expect(JSON.string(bySID[alice.session] ?? [:], at: "node") == "node-0")
            #expect(JSON.string(bySID[bob.session] ?? [:], at: "node") == "node-1")
        }

        let page = try JSON.parse(try await cluster.nodes[1].get("/api/docs/\(doc)/log?from=1&limit=1").body)
        #expect(JSON.string(page, at: "doc") == doc)
        #expect(JSON.int(page, at: "head") == 3)
        #expect(JSON.bool(page, at: "more") == true)
        let entries = try #require(JSON.array(page, at: "entries") as? [[String: Any]])
        #expect(entries.count == 1)
        #expect(JSON.int(entries[0], at: "clock") == 2)
        #expect(try JSON.string(from: entries[0]["ops"] as Any) == #"{"r2":["remove"]}"#)
        #expect(JSON.string(entries[0], at: "by") == alice.session)
        #expect(JSON.int(entries[0], at: "id") == 2)
        #expect(JSON.string(entries[0], at: "node") == "node-0")
        #expect((JSON.int(entries[0], at: "at") ?? 0) > Int(startedMs), "commit time in ms")
        let all = try JSON.parse(try await cluster.nodes[0].get("/api/docs/\(doc)/log?from=0").body)
        let allEntries = (JSON.array(all, at: "entries") ?? []).compactMap { $0 as? [String: Any] }
        let retainedFrom = allEntries.first.flatMap { JSON.int($0, at: "clock") } ?? 0
        #expect((1...2).contains(retainedFrom))
        #expect(allEntries.compactMap { JSON.int($0, at: "clock") } == Array(retainedFrom...3), "the retained history")
        #expect(JSON.string(allEntries.last ?? [:], at: "id") == "b-1")
        #expect(JSON.string(allEntries.last ?? [:], at: "node") == "node-1")
        #expect(JSON.bool(all, at: "more") == false)

        // Unknown docs are empty; bad ids and bad parameters are refused.
        let unknown = try JSON.parse(try await cluster.nodes[0].get("/api/docs/never-used").body)
        #expect(JSON.int(unknown, at: "head") == 0)
        #expect(JSON.int(unknown, at: "records") == 0 && JSON.int(unknown, at: "tombstones") == 0)
        #expect(JSON.array(unknown, at: "members")?.isEmpty == true)
        let unknownLog = try JSON.parse(try await cluster.nodes[0].get("/api/docs/never-used/log").body)
        #expect(JSON.int(unknownLog, at: "head") == 0)
        #expect(JSON.array(unknownLog, at: "entries")?.isEmpty == true)
        #expect(JSON.bool(unknownLog, at: "more") == false)
        for path in ["/api/docs/bad*id", "/api/docs/", "/api/docs/\(String(repeating: "x", count: 129))", "/api/docs/a%20b/log"] {
            #expect(try await cluster.nodes[0].get(path).status == 400, "\(path)")
        }
        for query in ["from=-1", "from=x", "limit=0", "limit=5001"] {
            #expect(try await cluster.nodes[0].get("/api/docs/\(doc)/log?\(query)").status == 400, "\(query)")
        }
        await cluster.finish()
    }
}
