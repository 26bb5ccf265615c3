import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TandemCore
import TandemRedis
import TandemTestSupport
import Testing

@testable import TandemServer

/// A node that dies in the middle of sealing (docs/history.md, "Crashes"): every seal is one Lua script
/// that writes the segment, its checkpoints, their version entries and `hsealed` together, only if
/// `hsealed` is still what the round read, and the live log is never trimmed past `hsealed`. So a node
/// that dies before the write leaves nothing (the next sealer redoes the round), one that dies after it
/// leaves all of it (the next sealer continues after it), and the same write sent again — a retry after
/// a lost reply — writes nothing. Kill points: `HistorySealer.KillHook`; real Redis and a real node.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct HistorySealerCrashTests {
    /// A sealer of its own on the test's Redis connection (a node of its own, as far as Redis can tell),
    /// with small segments: 20 commits, a checkpoint every 10.
    static func sealer(
        _ redis: RedisClient, killHook: HistorySealer.KillHook? = nil, fullCheckpointEvery: Int = HistoryPolicy.defaultFullCheckpointEvery,
        retentionMs: UInt64 = 0, metrics: TandemMetrics = TandemMetrics(nodeID: "sealer-test"), keepsStates: Bool = true
    ) -> HistorySealer {
        let store = HistoryStore(
            redis: redis,
            policy: HistoryPolicy(
                segmentCommits: 20, checkpointEvery: 10, checkpointIntervalMs: 3_600_000, retention: 10_000, fullCheckpointEvery: fullCheckpointEvery),
            retentionMs: retentionMs, metrics: HistoryMetrics(registry: metrics.registry))
        return HistorySealer(store: store, logger: Logger(label: "sealer-test"), killHook: killHook, keepsStates: keepsStates)
    }

    /// A counter's value in `metrics`' text exposition.
    static func counter(_ metrics: TandemMetrics, _ name: String) -> Double {
        var buffer: [UInt8] = []
        metrics.registry.emit(into: &buffer)
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    /// A seal round that loses the race to another sealer's `--history-retention` drop — the checkpoint it
    /// stood on is gone by the time it reads it — counts as a race and is sealed again, never as a failure
    /// (which waits and, for a doc no node holds, counts towards giving the doc up); nothing is missing
    /// from the history after it.
    @Test func aSealLosingToARetentionDropIsReadAgain() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let doc = "history:retention-race"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.recordStates(doc)
        for id in 1...60 {
            alice.push(doc, id: id, ops: #"{"r\#(id % 6)":["put",{"v":\#(id)}]}"#)
            _ = try await alice.answer(doc, id: id)
        }
        let redis = try RedisClient(url: cluster.redis.url)
        redis.start()
        defer { redis.shutdown() }
        try await waitUntil("connected to Redis") { redis.isConnected }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        // The other sealer's own loop: the racer's hook blocks the racer's loop while it runs.
        let otherLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        func sealed() -> UInt64 { UInt64(cluster.redis.command("GET", SyncRedis.key(doc, "hsealed"))) ?? 0 }

        // Full checkpoints only, and everything older than 1 ms dropped: each seal keeps its newest.
        let other = Self.sealer(redis, fullCheckpointEvery: 1, retentionMs: 1)
        // The racer's first round reads `hsealed` (the base at 0), then — before it reads the checkpoint
        // it stands on — the other sealer seals to the head, dropping that checkpoint.
        let ran = NIOLockedValueBox(false)
        let racerMetrics = TandemMetrics(nodeID: "racer")
        let racer = Self.sealer(
            redis,
            killHook: { point, _, _ in
                guard point == .afterRead, !ran.withLockedValue({ let was = $0; $0 = true; return was }) else { return false }
                let done = DispatchSemaphore(value: 0)
                other.sealToHead(doc, on: otherLoop.next()).whenComplete { _ in done.signal() }
                done.wait()
                return false
            }, fullCheckpointEvery: 1, retentionMs: 1, metrics: racerMetrics)
        racer.tick(heads: [doc: 60], nowMs: NodeClock().wallMs(), on: loop)
        try await waitUntil("the racer's round ends") {
            Self.counter(racerMetrics, "tandem_history_seal_races_total") + Self.counter(racerMetrics, "tandem_history_seal_failures_total") > 0
        }
        #expect(ran.withLockedValue { $0 } && sealed() == 60)
        #expect(Self.counter(racerMetrics, "tandem_history_seal_races_total") == 1, "a lost race, read again")
        #expect(Self.counter(racerMetrics, "tandem_history_seal_failures_total") == 0, "not a failure")
        // The next tick finds nothing left to seal, and the kept history reads.
        racer.tick(heads: [doc: 60], nowMs: NodeClock().wallMs(), on: loop)
        let states = try #require(alice.view(doc).statesByClock)
        let records = try JSONParser.parse(try await cluster.nodes[0].get("/api/docs/\(doc)/at?clock=60").body).objectValue?["records"]?.objectValue
        #expect(records == states[60])
        try await otherLoop.shutdownGracefully()
        await cluster.finish()
    }

    /// The first time the hook is asked at `point` after `skip` earlier asks there, it kills the round and
    /// keeps the seal write's arguments.
    final class Killer: Sendable {
        let point: HistorySealer.KillPoint
        private let state: NIOLockedValueBox<(seen: Int, args: [any RedisArgument]?)>
        private let skip: Int

        init(at point: HistorySealer.KillPoint, after skip: Int) {
            self.point = point
            self.skip = skip
            state = NIOLockedValueBox((0, nil))
        }

        var hook: HistorySealer.KillHook {
            { point, _, args in
                guard point == self.point else { return false }
                return self.state.withLockedValue { state in
                    state.seen += 1
                    guard state.seen == self.skip + 1 else { return false }
                    state.args = args
                    return true
                }
            }
        }

        var args: [any RedisArgument]? { state.withLockedValue { $0.args } }
    }

    @Test func aSealerDyingBeforeOrAfterItsWriteLosesAndDuplicatesNothing() async throws {
        // The node's own sealer stays out of the way: with the default log retention and segment size it
        // seals nothing of fewer than 2,048 commits within the hour (it may write the base checkpoint).
        let cluster = try await SyncCluster.start(nodes: 1)
        let doc = "history:crash"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.recordStates(doc)
        for id in 1...95 {
            alice.push(doc, id: id, ops: #"{"r\#(id % 6)":["put",{"v":\#(id)}]}"#)
            _ = try await alice.answer(doc, id: id)
        }
        let head = SyncRedis.head(cluster.redis, doc)
        #expect(head == 95)

        let redis = try RedisClient(url: cluster.redis.url)
        redis.start()
        defer { redis.shutdown() }
        try await waitUntil("connected to Redis") { redis.isConnected }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        func sealed() -> UInt64 { UInt64(cluster.redis.command("GET", SyncRedis.key(doc, "hsealed"))) ?? 0 }
        func history() -> [String] {
            ["hsealed", "hsegs", "hindex", "hckpts", "hversions"].map { name in
                let key = SyncRedis.key(doc, name)
                switch cluster.redis.command("TYPE", key) {
                case "hash": return cluster.redis.command("HKEYS", key).split(whereSeparator: \.isNewline).sorted().joined(separator: ",")
                case "zset": return cluster.redis.command("ZRANGE", key, "0", "-1", "WITHSCORES")
                default: return cluster.redis.command("GET", key)
                }
            }
        }

        // 1. Dies with its third segment computed, before writing it: nothing of that round is in Redis.
        let beforeWrite = Killer(at: .beforeWrite, after: 2)
        let first = Self.sealer(redis, killHook: beforeWrite.hook)
        try await waitUntil("the first sealer dies before its third write") {
            first.tick(heads: [doc: head], nowMs: NodeClock().wallMs(), on: loop)
            return beforeWrite.args != nil
        }
        let lost = try #require(beforeWrite.args)
        #expect(sealed() == 40, "two 20-commit segments landed, the third did not")
        #expect(String(describing: lost[0]) == "40" && String(describing: lost[1]) == "41")
        let afterFirst = history()
        first.tick(heads: [doc: head], nowMs: NodeClock().wallMs(), on: loop)
        #expect(history() == afterFirst, "a dead sealer writes nothing more")

        // 2. A second sealer (another node) redoes that round and dies after its second write ran: the
        //    write landed whole, its reply never came back.
        let afterWrite = Killer(at: .afterWrite, after: 1)
        let second = Self.sealer(redis, killHook: afterWrite.hook)
        try await waitUntil("the second sealer dies after its second write") {
            second.tick(heads: [doc: head], nowMs: NodeClock().wallMs(), on: loop)
            return afterWrite.args != nil
        }
        let landed = try #require(afterWrite.args)
        #expect(sealed() == 80, "the killed write landed whole: \(sealed())")
        let afterSecond = history()
        // The same write sent again (a retry after the lost reply) finds `hsealed` moved and writes nothing.
        let retry = try await redis.evalScript(HistoryScripts.sealWrite, keys: HistoryStore.keys(doc), args: landed, on: loop).get()
        #expect(retry.array?.first?.string == "moved")
        #expect(history() == afterSecond, "the retried write changed nothing")

        // 3. A third sealer finishes the job (flushing: the last 15 commits fill no segment).
        let third = Self.sealer(redis)
        third.wrote(doc, head: head)
        try await waitUntil("sealed to the head") {
            third.tick(heads: [:], nowMs: NodeClock().wallMs(), on: loop)
            return sealed() == head
        }

        // Segments tile 1…head with no gap and no overlap, each with its blob; checkpoints every 10 with
        // one version entry each (and the base at 0).
        let index = cluster.redis.command("ZRANGE", SyncRedis.key(doc, "hindex"), "0", "-1").split(whereSeparator: \.isNewline)
        var reached: UInt64 = 0
        for member in index {
            let parts = member.split(separator: ":").compactMap { UInt64($0) }
            #expect(parts.count == 3 && parts[0] == reached + 1, "segment \(member) after \(reached)")
            reached = parts.count == 3 ? parts[1] : reached
        }
        #expect(reached == head)
        let segments = cluster.redis.command("HKEYS", SyncRedis.key(doc, "hsegs")).split(whereSeparator: \.isNewline)
        #expect(segments.count == index.count)
        let versions = cluster.redis.command("ZRANGE", SyncRedis.key(doc, "hversions"), "0", "-1", "WITHSCORES")
            .split(whereSeparator: \.isNewline).enumerated().filter { $0.offset % 2 == 1 }.compactMap { UInt64($0.element) }
        #expect(versions == Array(stride(from: 0, through: 90, by: 10)), "\(versions)")
        // One checkpoint per version entry: full ones every `fullCheckpointEvery` (8), deltas (`d:CLOCK`) between.
        let fields = cluster.redis.command("HKEYS", SyncRedis.key(doc, "hckpts")).split(whereSeparator: \.isNewline)
            .filter { !$0.hasPrefix("a:") }
        let full = fields.compactMap { UInt64($0) }
        let deltas = fields.filter { $0.hasPrefix("d:") }.compactMap { UInt64($0.dropFirst(2)) }
        #expect((full + deltas).sorted() == versions)
        #expect(full.sorted() == [0, 80], "a full checkpoint every \(HistoryPolicy.defaultFullCheckpointEvery)")

        // Sealed but not trimmed (the log keeps every commit here): each clock is read once, from the
        // segments, and every state is the one the client saw.
        let states = try #require(alice.view(doc).statesByClock)
        let node = cluster.nodes[0]
        for clock in 0...head {
            let records = try JSONParser.parse(try await node.get("/api/docs/\(doc)/at?clock=\(clock)").body).objectValue?["records"]?.objectValue
            #expect(records == states[clock], "clock \(clock)")
        }
        let log = try JSONParser.parse(try await node.get("/api/docs/\(doc)/log?from=0&limit=1000").body, maxDepth: 200)
        let clocks = (log.objectValue?["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["clock"]?.uint64Value }
        #expect(clocks == Array(1...head))
        await cluster.finish()
    }

    /// A sealer that starts each round of a doc from what its last round left (`SealedState`, issue 8 stop
    /// 25) writes the history one that reads every start back from Redis writes: the same segments, the
    /// same checkpoints (full and delta at the same clocks), the same version entries, and every state
    /// reads back as the client saw it. Two docs get the same commits, sealed in steps of 7 commits (so
    /// rounds end between checkpoints and carry commits over) with a long text appended to all along.
    @Test func aKeptStateWritesWhatAReadBackWrites() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let (kept, read) = ("history:kept", "history:read-back")
        let alice = try await cluster.client("alice")
        for doc in [kept, read] {
            try await alice.join(doc)
            alice.recordStates(doc)
        }
        let redis = try RedisClient(url: cluster.redis.url)
        redis.start()
        defer { redis.shutdown() }
        try await waitUntil("connected to Redis") { redis.isConnected }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let keeping = Self.sealer(redis)
        let reading = Self.sealer(redis, keepsStates: false)
        let head: UInt64 = 97
        var id = 0
        for clock in 1...head {
            let ops: String
            switch clock % 4 {
            case 1: ops = #"{"r\#(clock % 5)":["put",{"v":\#(clock)}]}"#
            case 2 where clock > 2: ops = #"{"text":["patch",{"s":["append","ab\#(clock)",0]}]}"#
            case 3: ops = #"{"text":["patch",{"n":["put",\#(clock)]}]}"#
            default: ops = #"{"text":["put",{"s":""}],"x\#(clock % 3)":["put",{"k":\#(clock)}]}"#
            }
            for doc in [kept, read] {
                id += 1
                alice.push(doc, id: id, ops: ops)
                _ = try await alice.answer(doc, id: id)
            }
            if clock % 7 == 0 || clock == head {
                #expect(try await keeping.sealToHead(kept, on: loop).get() == clock)
                #expect(try await reading.sealToHead(read, on: loop).get() == clock)
            }
        }
        #expect(SyncRedis.head(cluster.redis, kept) == head && SyncRedis.head(cluster.redis, read) == head)
        #expect(keeping.keptRounds.withLockedValue { $0 } >= 10, "rounds after the first start from the kept state")
        #expect(reading.keptRounds.withLockedValue { $0 } == 0)

        // Segments by clocks, checkpoints by clock and kind, versions by clock and commits (times differ).
        func history(_ doc: String) -> [String] {
            let index = cluster.redis.command("ZRANGE", SyncRedis.key(doc, "hindex"), "0", "-1").split(whereSeparator: \.isNewline)
                .map { $0.split(separator: ":").prefix(2).joined(separator: ":") }
            let checkpoints = cluster.redis.command("HKEYS", SyncRedis.key(doc, "hckpts")).split(whereSeparator: \.isNewline).map(String.init).sorted()
            let versions = cluster.redis.command("ZRANGE", SyncRedis.key(doc, "hversions"), "0", "-1").split(whereSeparator: \.isNewline)
                .map { member in
                    let fields = member.split(separator: ":")
                    return fields.count == 4 ? "\(fields[0]):\(fields[2]):\(fields[3])" : String(member)
                }
            return [index.joined(separator: ","), checkpoints.joined(separator: ","), versions.joined(separator: ",")]
        }
        let keptHistory = history(kept)
        #expect(keptHistory == history(read))
        #expect(keptHistory[1].contains("d:"), "deltas were written: \(keptHistory[1])")
        for doc in [kept, read] {
            let states = try #require(alice.view(doc).statesByClock)
            for clock in 0...head {
                let answer = try await cluster.nodes[0].get("/api/docs/\(doc)/at?clock=\(clock)").body
                let records = try JSONParser.parse(answer, maxDepth: 200).objectValue?["records"]?.objectValue
                #expect(records == states[clock], "\(doc) at \(clock)")
            }
        }
        await cluster.finish()
    }
}
