import Foundation
import TandemCore
import TandemServer
import TandemTestSupport
import Testing

/// Version history against real Redis and nodes (issue 15, docs/history.md): the state at any clock read
/// back from checkpoints, sealed segments and the live log equals what clients saw at that clock; the log
/// keeps working below its trim; restore and fork; a node and a Redis restart keep it; hostile parameters
/// get 4xx.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(4 * TestTimeouts.scale))) struct HistoryTests {
    static let token = "history-test-token-0123456789"
    static let auth = ["Authorization": "Bearer \(token)"]

    static func get(_ node: InProcessNode, _ path: String) async throws -> HTTPResult {
        try await HTTP.get(port: node.opsPort, path: path, headers: auth)
    }

    static func post(_ port: Int, _ path: String, headers: [String: String] = auth) async throws -> HTTPResult {
        try await Task.detached {
            try HTTP.request(
                port: port,
                raw: "POST \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                    + headers.map { "\($0.key): \($0.value)\r\n" }.joined() + "\r\n")
        }.value
    }

    /// The `records` of an `/at` answer.
    static func records(_ result: HTTPResult) throws -> [String: JSONValue] {
        try #require(try JSONParser.parse(result.body, maxDepth: 200).objectValue?["records"]?.objectValue, "\(result.body.prefix(300))")
    }

    static func sealed(_ cluster: SyncCluster, _ doc: String) -> UInt64 {
        UInt64(cluster.redis.command("GET", SyncRedis.key(doc, "hsealed"))) ?? 0
    }

    /// Random ops over 24 record ids: puts, patches (put, delete, append) and removes.
    static func randomOps(_ random: inout SplitMix64, writer: Int, step: Int) -> String {
        var ops: [String] = []
        var ids = Set<Int>()
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            let id = Int.random(in: 0..<24, using: &random)
            guard ids.insert(id).inserted else { continue }
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4: ops.append(#""r\#(id)":["put",{"w":\#(writer),"n":\#(step),"s":"x"}]"#)
            case 4..<6: ops.append(#""r\#(id)":["patch",{"n":["put",\#(step)],"old":["delete"]}]"#)
            case 6..<8: ops.append(#""r\#(id)":["patch",{"s":["append","\#(step % 10)",0]}]"#)
            default: ops.append(#""r\#(id)":["remove"]"#)
            }
        }
        return "{" + ops.joined(separator: ",") + "}"
    }

    /// Thousands of commits from several clients on two nodes with a small log retention: the state read
    /// at sampled clocks (ops API) equals the state a watching client had after that clock.
    @Test func historyAtSampledClocksEqualsTheModel() async throws {
        let seed = ProcessInfo.processInfo.environment["TANDEM_HISTORY_SEED"].flatMap { UInt64($0) } ?? 0x15_2026
        print("HistoryTests seed: \(seed) (rerun with TANDEM_HISTORY_SEED=\(seed))")
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.logRetention = 16
            $0.checkpointEvery = 40
            $0.opsToken = Self.token
        }
        let doc = "history:model"
        let watcher = try await cluster.client("watcher", node: 1)
        try await watcher.join(doc)
        watcher.recordStates(doc)
        var writers: [SyncClient] = []
        for i in 0..<3 {
            let writer = try await cluster.client("writer\(i)", node: i % 2)
            try await writer.join(doc)
            writers.append(writer)
        }
        var random = SplitMix64(seed: seed)
        var step = 0
        for _ in 0..<700 {
            for (i, writer) in writers.enumerated() {
                step += 1
                writer.push(doc, id: step, ops: Self.randomOps(&random, writer: i, step: step))
            }
            for (i, writer) in writers.enumerated() { _ = try await writer.answer(doc, id: step - writers.count + 1 + i) }
        }
        try await cluster.waitConverged(doc)
        let head = SyncRedis.head(cluster.redis, doc)
        #expect(head > 1_500, "most pushes commit: head \(head)")
        try await waitUntil("the sealer catches up: sealed \(Self.sealed(cluster, doc)), head \(head)", timeout: .seconds(60)) {
            Self.sealed(cluster, doc) + 16 >= head
        }
        // The live log was trimmed far past the start: the reads below come from the history.
        let retained = SyncRedis.log(cluster.redis, doc)
        #expect((retained.first?.clock ?? 0) > head / 2, "the live log starts at \(retained.first?.clock ?? 0)")

        let states = try #require(watcher.view(doc).statesByClock)
        var samples: Set<UInt64> = [0, 1, 2, 39, 40, 41, head - 1, head]
        while samples.count < 60 { samples.insert(UInt64.random(in: 0...head, using: &random)) }
        for (index, clock) in samples.sorted().enumerated() {
            let node = cluster.nodes[index % 2]
            let answer = try await Self.get(node, "/api/docs/\(doc)/at?clock=\(clock)")
            #expect(answer.status == 200, "clock \(clock): \(answer.body.prefix(200))")
            let model = try #require(states[clock], "the watcher saw clock \(clock)")
            #expect(try Self.records(answer) == model, "state at clock \(clock)")
        }

        // The log from 0: contiguous from clock 1, from sealed segments, on both nodes.
        for node in cluster.nodes {
            let page = try await Self.get(node, "/api/docs/\(doc)/log?from=0&limit=100")
            #expect(page.status == 200)
            let entries = try JSONParser.parse(page.body, maxDepth: 200).objectValue?["entries"]?.arrayValue ?? []
            #expect(entries.compactMap { $0.objectValue?["clock"]?.uint64Value } == Array(1...100))
            var replica = DocReplica()
            for entry in entries {
                let e = try #require(entry.objectValue)
                replica.apply(clock: try #require(e["clock"]?.uint64Value), ops: try Ops(json: try #require(e["ops"])))
            }
            #expect(replica.records == states[100], "the log's first 100 commits replay to the state at 100")
        }

        // Versions: newest first, checkpoints at least every 40 commits, each with its authors.
        let versions = try await Self.get(cluster.nodes[0], "/api/docs/\(doc)/versions?limit=1000")
        #expect(versions.status == 200)
        let list = try JSONParser.parse(versions.body).objectValue?["versions"]?.arrayValue ?? []
        let clocks = list.compactMap { $0.objectValue?["clock"]?.uint64Value }
        #expect(clocks == clocks.sorted(by: >) && clocks.last == 0, "\(clocks)")
        #expect(zip(clocks, clocks.dropFirst()).allSatisfy { $0 - $1 <= 40 }, "a checkpoint at least every 40 commits: \(clocks)")
        let authors = Set(list.flatMap { $0.objectValue?["by"]?.arrayValue ?? [] }.compactMap(\.stringValue))
        #expect(authors == Set(writers.map(\.session)))
        let page = try await Self.get(cluster.nodes[1], "/api/docs/\(doc)/versions?before=\(clocks[2])&limit=2")
        let paged = try JSONParser.parse(page.body).objectValue
        #expect(paged?["versions"]?.arrayValue?.compactMap { $0.objectValue?["clock"]?.uint64Value } == Array(clocks[3...4]))
        #expect(paged?["more"] == .bool(true))

        // By time: the state after the last commit at or before it, with commit times taken as monotonic
        // (two nodes' batches interleave, so a commit may carry a time a few ms before its predecessor's:
        // it counts as no earlier than that one). The expected clock is computed from the whole log.
        var times: [UInt64] = []
        var after: UInt64 = 0
        while after < head {
            let page = try JSONParser.parse(try await Self.get(cluster.nodes[0], "/api/docs/\(doc)/log?from=\(after)&limit=5000").body, maxDepth: 200)
            let entries = page.objectValue?["entries"]?.arrayValue ?? []
            #expect(!entries.isEmpty)
            for entry in entries {
                times.append(entry.objectValue?["at"]?.uint64Value ?? 0)
                after = entry.objectValue?["clock"]?.uint64Value ?? after
            }
            if entries.isEmpty { break }
        }
        #expect(times.count == Int(head), "the whole log reads back from the history and the live log")
        for probe in [head / 3, head / 2, head - 3] {
            let at = times[Int(probe)]  // the time of commit probe + 1
            var expected: UInt64 = 0
            var seen: UInt64 = 0
            for (index, time) in times.enumerated() {
                seen = max(seen, time)
                if seen > at { break }
                expected = UInt64(index + 1)
            }
            let byTime = try await Self.get(cluster.nodes[1], "/api/docs/\(doc)/at?time=\(at)")
            #expect(byTime.status == 200, "\(byTime.body.prefix(200))")
            let clockAtTime = try JSONParser.parse(byTime.body, maxDepth: 200).objectValue?["clock"]?.uint64Value
            #expect(clockAtTime == expected, "time \(at)")
            #expect(try Self.records(byTime) == states[expected])
        }
        #expect(try await cluster.nodes[0].metric(#"tandem_history_reads_total{route="at"}"#) > 0)
        let written = try await cluster.nodes[0].metric("tandem_history_written_bytes_total")
            + (try await cluster.nodes[1].metric("tandem_history_written_bytes_total"))
        #expect(written > 0)
        _ = try await cluster.nodes[0].metric("tandem_history_seal_lag_commits")
        let sealedByNodes = try await cluster.nodes[0].metric("tandem_history_sealed_commits_total")
            + (try await cluster.nodes[1].metric("tandem_history_sealed_commits_total"))
        #expect(sealedByNodes >= Double(head - 16))
        await cluster.finish()
    }

    /// Restore is one ordinary commit every client receives as a patch; fork makes a new doc; both refuse
    /// what they should.
    @Test func restoreAndForkThroughTheOpsAPI() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.logRetention = 4
            $0.opsToken = Self.token
        }
        let doc = "history:restore"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)
        bob.recordStates(doc)
        for i in 1...12 {
            let ops =
                i % 5 == 0 ? #"{"r\#(i)":["remove"]}"# : #"{"r\#(i + 1)":["put",{"v":\#(i)}],"r0":["put",{"last":\#(i)}]}"#
            alice.push(doc, id: i, ops: ops)
            _ = try await alice.answer(doc, id: i)
        }
        try await cluster.waitConverged(doc)
        let before = try #require(bob.view(doc).statesByClock)
        let port = cluster.nodes[0].opsPort

        let restored = try await Self.post(port, "/api/docs/\(doc)/restore?clock=3")
        #expect(restored.status == 200, "\(restored.body)")
        let body = try JSONParser.parse(restored.body).objectValue
        #expect(body?["clock"] == .number(UInt64(13)) && body?["restoredFrom"] == .number(UInt64(3)))
        try await bob.waitHead(doc, 13)
        try await alice.waitHead(doc, 13)
        #expect(bob.view(doc).records == before[3], "bob (other node) got the restore as a patch")
        #expect(alice.view(doc).records == before[3])
        cluster.expectRecordsEqualRedis(alice, doc)
        // Nothing of the past is rewritten: clock 12 reads as before, 13 as 3.
        try await waitUntil("sealed past the restore") { Self.sealed(cluster, doc) >= 12 }
        #expect(try Self.records(try await Self.get(cluster.nodes[1], "/api/docs/\(doc)/at?clock=12")) == before[12])
        #expect(try Self.records(try await Self.get(cluster.nodes[1], "/api/docs/\(doc)/at?clock=13")) == before[3])
        // The doc's history size: in /api/docs/{id} and in the status page's doc rows.
        let info = try JSONParser.parse(try await Self.get(cluster.nodes[0], "/api/docs/\(doc)").body).objectValue?["history"]?.objectValue
        #expect((info?["bytes"]?.intValue ?? 0) > 0 && (info?["segments"]?.intValue ?? 0) >= 1, "\(String(describing: info))")
        #expect((info?["sealedThrough"]?.uint64Value ?? 0) >= 12 && (info?["versions"]?.intValue ?? 0) >= 1)
        // A node shows the size it measured when it last sealed the doc, and both hold it open: whichever
        // sealed it (a ThreadSanitizer run waited 50 s on node 0's row alone: node 1 can seal every segment).
        try await waitUntil("a status page's doc row shows the history size") {
            for node in cluster.nodes {
                let status = try JSONParser.parse(try await node.get("/api/status").body).objectValue
                let row = status?["docs"]?.arrayValue?.first { $0.objectValue?["doc"] == .string(doc) }
                if (row?.objectValue?["historyBytes"]?.intValue ?? 0) > 0 { return true }
            }
            return false
        }
        // Restoring the state it has: nothing to commit.
        let again = try await Self.post(port, "/api/docs/\(doc)/restore?clock=13")
        let unchanged = try JSONParser.parse(again.body).objectValue?["changed"]
        #expect(again.status == 200 && unchanged == .bool(false))

        let fork = try await Self.post(port, "/api/docs/\(doc)/fork?clock=7&to=history:fork")
        #expect(fork.status == 201, "\(fork.body)")
        let carol = try await cluster.client("carol", node: 1)
        try await carol.join("history:fork")
        #expect(carol.view("history:fork").records == before[7])
        #expect(carol.view("history:fork").head == 1)
        let firstLog = try JSONParser.parse(try await Self.get(cluster.nodes[1], "/api/docs/history:fork/log?from=0").body, maxDepth: 200)
        #expect(firstLog.objectValue?["entries"]?.arrayValue?.first?.objectValue?["id"] == json(#"{"clock":7,"forkOf":"history:restore"}"#))
        #expect(SyncRedis.head(cluster.redis, doc) == 13, "the source is untouched")

        // Refusals.
        #expect(try await Self.post(port, "/api/docs/\(doc)/fork?clock=7&to=history:fork").status == 409)
        #expect(try await Self.post(port, "/api/docs/\(doc)/restore?clock=14").status == 400)
        #expect(try await Self.post(port, "/api/docs/\(doc)/fork?clock=99&to=history:x").status == 400)
        #expect(try await Self.post(port, "/api/docs/history:none/restore?clock=1").status == 404)
        #expect(try await Self.post(port, "/api/docs/history:none/fork?clock=0&to=history:y").status == 404)
        #expect(try await Self.post(port, "/api/docs/\(doc)/restore?clock=3", headers: [:]).status == 401)
        #expect(try await Self.post(port, "/api/docs/\(doc)/restore?clock=3", headers: ["Authorization": "Bearer wrong-token-0123456789"]).status == 401)
        #expect(try await Self.get(cluster.nodes[0], "/api/docs/\(doc)/restore?clock=3").status == 405)
        #expect(try await Self.post(port, "/api/docs/\(doc)/at?clock=3").status == 405)
        #expect(SyncRedis.head(cluster.redis, doc) == 13)
        await cluster.finish()
    }

    /// Without an --ops-token the ops API is read-only: restore and fork are refused.
    @Test func writesNeedAnOpsToken() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let doc = "history:ro"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.push(doc, id: 1, ops: #"{"a":["put",{}]}"#)
        _ = try await alice.answer(doc, id: 1)
        let port = cluster.nodes[0].opsPort
        let refused = try await Self.post(port, "/api/docs/\(doc)/restore?clock=0", headers: [:])
        #expect(refused.status == 403 && refused.body.contains("read_only"))
        #expect(try await Self.post(port, "/api/docs/\(doc)/fork?clock=1&to=x", headers: [:]).status == 403)
        #expect(try await cluster.nodes[0].get("/api/docs/\(doc)/at?clock=1").status == 200, "reads stay open, as /log")
        #expect(SyncRedis.head(cluster.redis, doc) == 1)
        await cluster.finish()
    }

    /// Hostile or wrong parameters get 4xx, and the node keeps serving.
    @Test func hostileParametersGet4xx() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) { $0.opsToken = Self.token }
        let node = cluster.nodes[0]
        let alice = try await cluster.client("alice")
        try await alice.join("h")
        alice.push("h", id: 1, ops: #"{"a":["put",{}]}"#)
        _ = try await alice.answer("h", id: 1)
        let cases: [(String, Int)] = [
            ("/api/docs/h/at?clock=-1", 400), ("/api/docs/h/at?clock=18446744073709551616", 400),
            ("/api/docs/h/at?clock=9007199254740991", 400), ("/api/docs/h/at?clock=2", 400), ("/api/docs/h/at?clock=1.5", 400),
            ("/api/docs/h/at", 400), ("/api/docs/h/at?time=-1", 400), ("/api/docs/h/at?time=1&clock=1", 400),
            ("/api/docs/h/at?time=99999999999999999999999", 400),
            ("/api/docs/h/versions?limit=0", 400), ("/api/docs/h/versions?limit=1000000", 400),
            ("/api/docs/h/versions?before=-3", 400), ("/api/docs/nope/at?clock=0", 404), ("/api/docs/nope/versions", 404),
            ("/api/docs/nope/at?time=5", 404), ("/api/docs/%00/at?clock=1", 400), ("/api/docs/a%2Fb/at?clock=1", 404),
            ("/api/docs/" + String(repeating: "x", count: 200) + "/at?clock=1", 400), ("/api/docs/h/history", 404),
        ]
        for (path, status) in cases {
            let answer = try await Self.get(node, path)
            #expect(answer.status == status, "\(path): \(answer.status) \(answer.body.prefix(200))")
        }
        #expect(try await Self.get(node, "/api/docs/h/at?clock=1").status == 200)
        #expect(try await Self.get(node, "/api/docs/h/at?clock=0").status == 200)
        // Before the first commit: the empty state at clock 0 (the history starts there).
        let early = try await Self.get(node, "/api/docs/h/at?time=1")
        #expect(early.status == 200 && early.body.contains(#""clock":0"#))
        #expect(try await node.get("/healthz").status == 200)
        await cluster.finish()
    }

    /// The checkpoint grid is the doc's own: every `--checkpoint-every` commits from clock 0, and
    /// `--checkpoint-interval` counted from the doc's first commit (the base version at 0 carries its
    /// time). Before, the base's time was 0, so the first segment's end — wherever housekeeping's tick cut
    /// it — always got a checkpoint by interval, and the grid counted from there (3, 13, 23 here).
    @Test func checkpointsFallOnTheDocsGrid() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.logRetention = 3
            $0.checkpointEvery = 10
        }
        let doc = "history:grid"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        for i in 1...25 {
            alice.push(doc, id: i, ops: #"{"r\#(i % 3)":["put",{"v":\#(i)}]}"#)
            _ = try await alice.answer(doc, id: i)
            // A first segment that ends before the first checkpoint is due.
            if i == 3 { #expect(try await cluster.nodes[0].sealHistory(doc) == 3) }
        }
        let node = cluster.nodes[0]
        #expect(try await node.sealHistory(doc) == 25)
        let list = try JSONParser.parse(try await node.get("/api/docs/\(doc)/versions").body).objectValue?["versions"]?.arrayValue ?? []
        #expect(list.compactMap { $0.objectValue?["clock"]?.uint64Value } == [20, 10, 0])
        let first = try JSONParser.parse(try await node.get("/api/docs/\(doc)/at?clock=1").body).objectValue?["at"]?.uint64Value
        #expect(first != nil && list.last?.objectValue?["at"]?.uint64Value == first, "version 0 carries the first commit's time")
        await cluster.finish()
    }

    /// Commits that leave the live log before any node sealed them (a node of a version before history
    /// trims by `--log-retention` alone) are never silently missing: the history restarts at the head,
    /// `tandem_history_lost_commits_total` counts them, and reads of them answer 404 `not_in_history`
    /// (not 503 `busy`, as if a sealer were behind); the history on either side still reads.
    @Test func commitsTrimmedBeforeSealingAreReported() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) { $0.checkpointEvery = 10 }
        let doc = "history:lost"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.recordStates(doc)
        func commit(_ ids: ClosedRange<Int>) async throws {
            for i in ids {
                alice.push(doc, id: i, ops: #"{"r\#(i % 3)":["put",{"v":\#(i)}]}"#)
                _ = try await alice.answer(doc, id: i)
            }
        }
        let node = cluster.nodes[0]
        try await commit(1...30)
        #expect(try await node.sealHistory(doc) == 30)
        try await commit(31...50)
        // An old node's trim: 31…45 leave the log unsealed (one commit per entry here: pushes one at a time).
        _ = cluster.redis.command("XTRIM", SyncRedis.key(doc, "log"), "MINID", "46")
        #expect(try await node.sealHistory(doc) == 50)
        #expect(try await node.metric("tandem_history_lost_commits_total") == 20)
        let states = try #require(alice.view(doc).statesByClock)
        for clock in [UInt64(0), 20, 30, 50] {
            #expect(try Self.records(try await node.get("/api/docs/\(doc)/at?clock=\(clock)")) == states[clock], "clock \(clock)")
        }
        for clock in [31, 40, 49] {
            let gap = try await node.get("/api/docs/\(doc)/at?clock=\(clock)")
            #expect(gap.status == 404 && gap.body.contains("not_in_history"), "clock \(clock): \(gap.status) \(gap.body)")
        }
        let list = try JSONParser.parse(try await node.get("/api/docs/\(doc)/versions").body).objectValue?["versions"]?.arrayValue ?? []
        #expect(list.first?.objectValue?["clock"]?.uint64Value == 50, "the restart is a version")
        await cluster.finish()
    }

    /// `--history-retention`: history older than it is dropped, from the newest full checkpoint before
    /// the cutoff on (the deltas after it stand on it); what is kept still reads exactly.
    @Test func historyRetentionDropsOldVersions() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            // Log retention = checkpoint spacing: housekeeping seals once that many commits wait, so the first
            // segment, whenever its tick comes, ends at clock 5. (The first checkpoint after the one at clock 0
            // falls at the first segment's end whatever its clock: --checkpoint-interval counts from that
            // checkpoint's time, 0. With a retention of 4 a tick after the 4th push put it at 4, and the grid
            // became 4, 9, … 39.)
            $0.logRetention = 5
            $0.checkpointEvery = 5
            $0.historyRetentionMs = 1  // everything is older than 1 ms by the next seal
        }
        let doc = "history:retention"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.recordStates(doc)
        for i in 1...50 {
            alice.push(doc, id: i, ops: #"{"r\#(i % 3)":["put",{"v":\#(i)}]}"#)
            _ = try await alice.answer(doc, id: i)
        }
        let states = try #require(alice.view(doc).statesByClock)
        let node = cluster.nodes[0]
        // Every commit is older than the cutoff once the clock has moved past the last one's millisecond
        // (a seal drops a checkpoint when its successor was committed before now − 1 ms) …
        let answeredAtMs = UInt64(Date().timeIntervalSince1970 * 1000)
        try await waitUntil("the clock past the last commit") { UInt64(Date().timeIntervalSince1970 * 1000) > answeredAtMs + 1 }
        // … and sealed to the head at once (housekeeping's tick may have stopped a segment short of it, or
        // be between two segments when the versions are read). Checkpoints fall every 5 commits, a full
        // one every 8 (0 and 40), deltas between: everything before the full one at 40 is dropped, and
        // the deltas at 45 and 50 that stand on it are kept (dropping checkpoints one by one, as before
        // deltas, would have left them standing on nothing).
        #expect(try await node.sealHistory(doc) == 50)
        let list = try JSONParser.parse(try await node.get("/api/docs/\(doc)/versions").body).objectValue?["versions"]?.arrayValue ?? []
        #expect(list.compactMap { $0.objectValue?["clock"]?.uint64Value } == [50, 45, 40], "old versions dropped")
        let oldest: UInt64 = 40
        let before = try await node.get("/api/docs/\(doc)/at?clock=\(oldest - 1)")
        #expect(before.status == 404 && before.body.contains("not_in_history"), "\(before.body)")
        #expect(before.body.contains("starts at clock \(oldest)"))
        #expect(try Self.records(try await node.get("/api/docs/\(doc)/at?clock=\(oldest)")) == states[oldest])
        for clock in oldest...50 {
            #expect(try Self.records(try await node.get("/api/docs/\(doc)/at?clock=\(clock)")) == states[clock], "clock \(clock)")
        }
        // The kept checkpoints and their versions' authors (`a:CLOCK`); the dropped ones' authors went with them.
        #expect(cluster.redis.command("HLEN", SyncRedis.key(doc, "hckpts")) == "6")
        for field in ["\(oldest)", "a:\(oldest)", "d:45", "d:50"] {
            #expect(cluster.redis.command("HEXISTS", SyncRedis.key(doc, "hckpts"), field) == "1", "\(field)")
        }
        #expect(cluster.redis.command("ZCOUNT", SyncRedis.key(doc, "hindex"), "-inf", "\(oldest)") == "0", "segments before the kept checkpoint dropped")
        await cluster.finish()
    }

    /// A doc no node holds open is still sealed to its head: the commits that waited in the live log
    /// when the last client left (fewer than a segment) are flushed by the node that held the doc, and a
    /// restore from the ops port of a doc nobody holds is sealed by the node that wrote it. Then the log
    /// is trimmed (small `--log-retention`) and every clock still reads back.
    @Test func docsNobodyHoldsAreSealed() async throws {
        // Small stream nodes, so the approximate trim (`MINID ~`) trims at this size.
        let cluster = try await SyncCluster.start(nodes: 1, redisArguments: ["--stream-node-max-entries", "4"]) {
            $0.logRetention = 20
            $0.checkpointEvery = 100
            $0.opsToken = Self.token
        }
        let doc = "history:closed"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.recordStates(doc)
        for i in 1...30 {
            alice.push(doc, id: i, ops: #"{"r\#(i % 6)":["put",{"v":\#(i)}]}"#)
            _ = try await alice.answer(doc, id: i)
        }
        var states = try #require(alice.view(doc).statesByClock)
        alice.socket.abort()
        // 30 commits with a retention of 20: one segment of 20 while open, the last 10 only once closed.
        try await waitUntil("the tail sealed after the doc closed") { Self.sealed(cluster, doc) == 30 }
        let node = cluster.nodes[0]
        let restored = try await Self.post(node.opsPort, "/api/docs/\(doc)/restore?clock=5")
        #expect(restored.status == 200, "\(restored.body)")
        states[31] = states[5]
        try await waitUntil("the restore sealed with no node holding the doc") { Self.sealed(cluster, doc) == 31 }
        // The restore's commit trimmed the log (retention 20): the early clocks come from segments only.
        let firstLogged = cluster.redis.command("XRANGE", SyncRedis.key(doc, "log"), "-", "+", "COUNT", "1")
        #expect(!firstLogged.hasPrefix("1-"), "the live log was trimmed: \(firstLogged.prefix(40))")
        for clock: UInt64 in 0...31 {
            let answer = try await Self.get(node, "/api/docs/\(doc)/at?clock=\(clock)")
            #expect(answer.status == 200, "\(answer.body.prefix(200))")
            #expect(try Self.records(answer) == states[clock], "clock \(clock)")
        }
        await cluster.finish()
    }

    /// History survives a node restart and a Redis restart with AOF.
    @Test func historySurvivesNodeAndRedisRestarts() async throws {
        let cluster = try await SyncCluster.start(nodes: 1, redisArguments: ["--appendonly", "yes", "--appendfsync", "always"]) {
            $0.logRetention = 8
            $0.checkpointEvery = 10
        }
        let doc = "history:restart"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.recordStates(doc)
        for i in 1...40 {
            alice.push(doc, id: i, ops: #"{"r\#(i % 7)":["put",{"v":\#(i)}]}"#)
            _ = try await alice.answer(doc, id: i)
        }
        let states = try #require(alice.view(doc).statesByClock)
        try await waitUntil("sealed") { Self.sealed(cluster, doc) >= 32 }
        alice.socket.abort()
        await cluster.nodes[0].stop()
        cluster.redis.stop()
        try cluster.redis.start()
        let node = try await InProcessNode.start(redis: cluster.redis.url, nodeID: "history-restarted") {
            $0.logRetention = 8
            $0.checkpointEvery = 10
        }
        Cleanup.current.add { await node.stop() }
        for clock: UInt64 in [0, 5, 17, 30, 40] {
            let answer = try await node.get("/api/docs/\(doc)/at?clock=\(clock)")
            #expect(answer.status == 200, "\(answer.body.prefix(200))")
            #expect(try Self.records(answer) == states[clock], "clock \(clock) after the restarts")
        }
        await cluster.finish()
    }
}

/// The same history through protocol v1: `history` and `at` for viewers, `restore` for editors only.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct HistoryProtocolTests {
    static let secret = "history-protocol-secret-0123456789abcdef"

    @Test func viewersReadHistoryAndEditorsRestore() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.jwtSecret = Self.secret
            // Log retention = checkpoint spacing, so checkpoints fall at 10, 20, 30 whenever housekeeping's
            // ticks come (see historyRetentionDropsOldVersions: with 4, a tick after the 6th push made them
            // 6, 16, 26 — what ThreadSanitizer's slowness showed).
            $0.logRetention = 10
            $0.checkpointEvery = 10
        }
        let doc = "doc-history"
        let editorToken = try await makeToken(secret: Self.secret, user: "ed", docs: ["doc-*": "editor"])
        let viewerToken = try await makeToken(secret: Self.secret, user: "vera", docs: ["doc-*": "viewer"])
        let editor = try await SyncClient.connect("\(cluster.nodes[0].wsBase)?token=\(editorToken)", name: "ed")
        cluster.track(editor)
        try await editor.join(doc)
        editor.recordStates(doc)
        for i in 1...30 {
            editor.push(doc, id: i, ops: #"{"r\#(i % 6)":["put",{"v":\#(i)}],"n":["put",{"i":\#(i)}]}"#)
            _ = try await editor.answer(doc, id: i)
        }
        let states = try #require(editor.view(doc).statesByClock)
        // Sealed to the head now: housekeeping's tick may have ended a segment between two checkpoints
        // (at 27, say), and the 3 commits after it would wait for `--checkpoint-interval` (1 h).
        #expect(try await cluster.nodes[0].sealHistory(doc) == 30)
        #expect(HistoryTests.sealed(cluster, doc) == 30)

        let viewer = try await TestClient.connect("\(cluster.nodes[1].wsBase)?token=\(viewerToken)", name: "vera")
        #expect(JSON.string(try await viewer.join(doc), at: "role") == "viewer")
        viewer.send(["t": "history", "doc": doc, "limit": 2])
        let history = try await viewer.next("history", doc: doc)
        #expect(JSON.int(history, at: "head") == 30)
        let versions = (JSON.array(history, at: "versions") ?? []).compactMap { $0 as? [String: Any] }
        #expect(versions.compactMap { JSON.int($0, at: "clock") } == [30, 20], "newest first, every 10 commits")
        #expect(JSON.bool(history, at: "more") == true)

        for clock in [0, 7, 23, 30] {
            viewer.send(["t": "at", "doc": doc, "clock": clock])
            let answer = try await viewer.next("at", doc: doc)
            #expect(JSON.int(answer, at: "clock") == clock && JSON.bool(answer, at: "more") == false)
            let raw = try #require(viewer.rawMessages.last { $0.hasPrefix(#"{"t":"at""#) && $0.contains(#""clock":\#(clock),"#) })
            #expect(try JSONParser.parse(raw).objectValue?["records"]?.objectValue == states[UInt64(clock)], "at \(clock)")
        }
        viewer.send(["t": "at", "doc": doc, "clock": 31])
        #expect(JSON.string(try await viewer.next("error", doc: doc), at: "code") == "bad_message")
        viewer.send(["t": "at", "doc": doc])
        #expect(JSON.string(try await viewer.next("error", doc: doc), at: "code") == "bad_message")
        viewer.send(["t": "restore", "doc": doc, "clock": 3])
        #expect(JSON.string(try await viewer.next("error", doc: doc), at: "code") == "forbidden")
        viewer.send(["t": "history", "doc": "doc-other"])
        #expect(JSON.string(try await viewer.next("error", doc: "doc-other"), at: "code") == "not_joined")

        // The editor restores clock 7: one new commit, which the viewer on the other node gets as a patch.
        editor.sendJSON(json(#"{"t":"restore","doc":"doc-history","clock":7}"#))
        try await editor.waitHead(doc, 31)
        #expect(editor.view(doc).records == states[7])
        let patch = try await viewer.next("patch", doc: doc) { JSON.int($0, at: "clock") == 31 }
        #expect(JSON.string(patch, at: "by") == "ops-restore")
        #expect(editor.socket.rawMessages.contains { $0.hasPrefix(#"{"t":"restored""#) && $0.contains(#""clock":31"#) })
        #expect(SyncRedis.head(cluster.redis, doc) == 31)
        await cluster.finish()
    }
}

/// History on a real Redis Cluster (issue 11's harness): every history key is tagged `{D}`, so sealing,
/// reads, restore and fork work for docs on every shard, and a fork may land on another shard.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct HistoryClusterTests {
    @Test func historyWorksOnEveryShard() async throws {
        let serving = try await ClusterServing.start(nodes: 2) {
            $0.logRetention = 4
            $0.checkpointEvery = 10
            $0.opsToken = HistoryTests.token
        }
        var docs: [String] = []
        for port in await serving.primaryPorts() { docs += await serving.docs(ownedBy: port, count: 1, prefix: "history-shard-") }
        #expect(docs.count == 3)
        for (index, doc) in docs.enumerated() {
            let alice = try await serving.client("alice\(index)", node: index % 2)
            try await alice.join(doc)
            alice.recordStates(doc)
            for i in 1...24 {
                alice.push(doc, id: i, ops: #"{"r\#(i % 5)":["put",{"v":\#(i)}]}"#)
                #expect(try await alice.answer(doc, id: i).string("action") == "commit")
            }
            let states = try #require(alice.view(doc).statesByClock)
            let node = serving.nodes[(index + 1) % 2]
            try await waitUntil("\(doc) sealed") {
                let info = try JSONParser.parse(try await HistoryTests.get(node, "/api/docs/\(doc)").body).objectValue
                return (info?["history"]?.objectValue?["sealedThrough"]?.uint64Value ?? 0) >= 20
            }
            for clock: UInt64 in [0, 3, 11, 20, 24] {
                let answer = try await HistoryTests.get(node, "/api/docs/\(doc)/at?clock=\(clock)")
                #expect(answer.status == 200, "\(doc) at \(clock): \(answer.body.prefix(200))")
                #expect(try HistoryTests.records(answer) == states[clock], "\(doc) at \(clock)")
            }
            let restored = try await HistoryTests.post(node.opsPort, "/api/docs/\(doc)/restore?clock=3")
            #expect(restored.status == 200, "\(restored.body)")
            try await alice.waitHead(doc, 25)
            #expect(alice.view(doc).records == states[3])
            let target = docs[(index + 1) % docs.count] + "-fork"
            let fork = try await HistoryTests.post(node.opsPort, "/api/docs/\(doc)/fork?clock=11&to=\(target)")
            #expect(fork.status == 201, "\(fork.body)")
            #expect(try HistoryTests.records(try await HistoryTests.get(node, "/api/docs/\(target)/at?clock=1")) == states[11])
        }
    }
}
