import Foundation
import TandemCore
@testable import TandemServer
import TandemTestSupport
import Testing

/// The status sampler with per-doc counters that go backwards (issue 7: a doc unloaded and loaded again
/// between two samples made `&-` produce ~2^64, and summing the window trapped).
@Suite struct StatusSamplerResetTests {
    private func doc(_ name: String, updates: UInt64, pushes: UInt64, conflicts: UInt64) -> DocStatus {
        DocStatus(
            doc: name, members: 1, editors: 1, viewers: 0, localMembers: 1, large: false, headClock: nil, records: nil,
            tombstones: nil, presenceUpdates: updates, pushes: pushes, conflicts: conflicts, syncLagP95Ms: nil,
            memberConnections: [])
    }

    @Test func aCounterThatRestartsCountsAsAResetNotAsAHugeNumber() {
        let sampler = StatusSampler()
        let metrics = TandemMetrics(nodeID: "sampler")
        sampler.sample(metrics: metrics, docs: [doc("d", updates: 100, pushes: 10, conflicts: 4)], outbound: [:])
        // Unloaded and loaded again between samples: every counter starts from zero.
        sampler.sample(metrics: metrics, docs: [doc("d", updates: 3, pushes: 2, conflicts: 1)], outbound: [:])
        let afterReset = sampler.rates(for: "d")
        #expect(afterReset.pushesPerSecond >= 0 && afterReset.pushesPerSecond < 1e9)
        #expect(afterReset.presenceUpdatesPerSecond >= 0 && afterReset.presenceUpdatesPerSecond < 1e9)
        // The window now holds the restart and a normal step: summing it used to overflow.
        sampler.sample(metrics: metrics, docs: [doc("d", updates: 5, pushes: 6, conflicts: 1)], outbound: [:])
        let rates = sampler.rates(for: "d")
        // Window: 0 (first sample), 2 (the restart counts its new value), 4 → 6 pushes, 1 conflict.
        #expect(abs(rates.conflictRate - 1.0 / 6.0) < 1e-9)
        #expect(rates.pushesPerSecond < 1e9)
    }

    @Test func growthTreatsAnyDecreaseAsARestart() {
        #expect(StatusSampler.growth(from: 10, to: 15) == 5)
        #expect(StatusSampler.growth(from: 10, to: 10) == 0)
        #expect(StatusSampler.growth(from: 10, to: 3) == 3)
        #expect(StatusSampler.growth(from: UInt64.max, to: 0) == 0)
        #expect(StatusSampler.growth(from: 0, to: UInt64.max) == Double(UInt64.max))
    }
}

/// A `/log` page's byte budget and bounds (pure).
@Suite struct LogPageTests {
    private func entry(_ clock: UInt64, bytes: Int) -> CommitNotice {
        CommitNotice(
            clock: clock, ops: .object(["r": .string(String(repeating: "x", count: bytes))]), by: "s", node: "n",
            pushID: .number("1"), committedAtMs: 0)
    }

    @Test func aPageStopsAtItsByteBudgetButAlwaysHoldsOneEntry() throws {
        var page = LogPage(doc: "d", head: 10, from: 0, limit: 100, byteBudget: 1_000)
        #expect(page.nextRead(batch: 16)! == (from: 1, count: 16))
        page.append([entry(1, bytes: 400), entry(2, bytes: 400), entry(3, bytes: 400)], batch: 16)
        #expect(page.count == 2)
        #expect(page.nextRead(batch: 16) == nil)
        let body = try JSON.parse(Data(page.encoded()))
        #expect(JSON.bool(body, at: "more") == true)
        #expect((JSON.array(body, at: "entries") ?? []).count == 2)

        var huge = LogPage(doc: "d", head: 10, from: 0, limit: 100, byteBudget: 1_000)
        huge.append([entry(1, bytes: 5_000), entry(2, bytes: 10)], batch: 16)
        #expect(huge.count == 1, "one entry larger than the budget still makes a page")
    }

    @Test func aPageEndsWithTheLogAndNeverReadsPastTheLargestClock() {
        var page = LogPage(doc: "d", head: 3, from: 0, limit: 100, byteBudget: 1 << 20)
        page.append([entry(1, bytes: 1), entry(2, bytes: 1), entry(3, bytes: 1)], batch: 16)
        #expect(page.nextRead(batch: 16) == nil, "fewer than asked: the log ended")
        #expect(String(decoding: page.encoded(), as: UTF8.self).hasSuffix(#""more":false}"#))

        let top = LogPage(doc: "d", head: 0, from: OpsRoute.maxClock, limit: 100, byteBudget: 1 << 20)
        #expect(top.nextRead(batch: 16) == nil)
        var limited = LogPage(doc: "d", head: 50, from: 0, limit: 20, byteBudget: 1 << 20)
        limited.append((1...16).map { entry($0, bytes: 1) }, batch: 16)
        #expect(limited.nextRead(batch: 16)! == (from: 17, count: 4))
        #expect(OpsRoutes.after(UInt64.max) == UInt64.max)
        #expect(OpsRoutes.after(5) == 6)
    }
}

/// The standard process metrics, read from /proc at scrape time.
@Suite(.serialized, .cleanup) struct ProcessMetricsTests {
    @Test func statLinesAreParsedFromTheLastParenthesis() throws {
        let line = "4242 (tan dem) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 125 0 0 20 0 9 0 12345 987654321 2048 "
            + "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        let stat = try #require(ProcessMetrics.ProcStat(statLine: line))
        #expect(stat.userTicks == 250 && stat.systemTicks == 125 && stat.startTicks == 12345)
        #expect(stat.virtualMemoryBytes == 987_654_321 && stat.residentPages == 2048)
        #expect(ProcessMetrics.ProcStat(statLine: "garbage") == nil)
        #expect(ProcessMetrics.ProcStat(statLine: "1 (x) S 1 2 3") == nil)
        #expect(ProcessMetrics.bootTime(procStat: "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n") == 1_700_000_000)
        #expect(ProcessMetrics.bootTime(procStat: "cpu 1\n") == nil)
        let text = ProcessMetrics.Sample(cpuSeconds: 1.5, openFDs: 12, maxFDs: 1024).render()
        #expect(text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"))
        #expect(text.contains("# TYPE process_open_fds gauge\nprocess_open_fds 12\n"))
        #expect(!text.contains("process_resident_memory_bytes"), "an unknown value is left out, not reported as 0")
    }

    #if os(Linux)
    @Test func aNodeExportsThemAndTheyFollowTheProcess() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "proc", stopWhenDone: true)
        let text = try await node.get("/metrics").body
        for (name, type) in [
            ("process_open_fds", "gauge"), ("process_max_fds", "gauge"), ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"), ("process_cpu_seconds_total", "counter"),
            ("process_start_time_seconds", "gauge"),
        ] {
            #expect(text.contains("# TYPE \(name) \(type)\n"), "\(name)")
        }
        // The node runs in this test process: its figures are this process's.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        #expect(try await node.value("process_max_fds") == Double(limit.rlim_cur))
        let before = try await node.value("process_open_fds")
        let files = (0..<50).map { _ in open("/dev/null", O_RDONLY) }
        let during = try await node.value("process_open_fds")
        for fd in files { close(fd) }
        #expect(during >= before + 50 - 5, "fds open: \(before) → \(during)")
        let rss = try await node.value("process_resident_memory_bytes")
        #expect(rss > 1_000_000)
        #expect(try await node.value("process_virtual_memory_bytes") >= rss)
        #expect(try await node.value("process_cpu_seconds_total") > 0)
        let started = try await node.value("process_start_time_seconds")
        #expect(started <= Date().timeIntervalSince1970 && started > Date().timeIntervalSince1970 - 24 * 3600)
    }
    #endif
}
