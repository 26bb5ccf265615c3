import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

/// Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
typealias LatencyHistogram = Histogram<UInt64>

func makeLatencyHistogram() -> LatencyHistogram {
    var h = LatencyHistogram(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
    h.autoResize = true
    return h
}

extension LatencyHistogram {
    @inline(__always)
    mutating func recordNanos(_ ns: UInt64) {
        _ = record(Swift.max(1, ns / 1000))
    }
}

/// Percentiles of a latency histogram in milliseconds.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var p50: Double
    var p90: Double
    var p95: Double
    var p99: Double
    var p999: Double
    var max: Double
    var mean: Double

    init(_ h: LatencyHistogram) {
        count = h.totalCount
        func ms(_ us: UInt64) -> Double { (Double(us) / 1000 * 1000).rounded() / 1000 }
        if count == 0 {
            p50 = 0; p90 = 0; p95 = 0; p99 = 0; p999 = 0; max = 0; mean = 0
        } else {
            p50 = ms(h.valueAtPercentile(50))
            p90 = ms(h.valueAtPercentile(90))
            p95 = ms(h.valueAtPercentile(95))
            p99 = ms(h.valueAtPercentile(99))
            p999 = ms(h.valueAtPercentile(99.9))
            max = ms(h.max)
            mean = (h.mean / 1000 * 1000).rounded() / 1000
        }
    }

    var row: String {
        count == 0
            ? "no samples"
            : String(
                format: "p50 %.1f  p95 %.1f  p99 %.1f  p99.9 %.1f  max %.1f ms  (n=%llu)", p50, p95, p99, p999, max, count)
    }
}

/// One target of the issue and whether this run met it.
struct TargetCheck: Codable, Sendable {
    var name: String
    var limit: String
    var measured: String
    var met: Bool
}

/// Options every scenario shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Tandem WebSocket endpoint.")
    var url = "ws://127.0.0.1:7070/v1/ws"

    @Option(help: "Redis the server uses (redis://HOST:PORT), for INFO stats deltas.")
    var redis: String?

    @Option(help: "Tandem ops endpoint (http://127.0.0.1:7071), for /metrics deltas.")
    var ops: String?

    @Option(name: .customLong("server-pid"), help: "PID of the tandem process (CPU and RSS from /proc).")
    var serverPID: Int32?

    @Option(name: .customLong("redis-pid"), help: "PID of the redis-server (CPU and RSS from /proc).")
    var redisPID: Int32?

    @Option(name: .customLong("connect-rate"), help: "Ramp-up handshakes per second (the server admits 500/s by default).")
    var connectRate = 400.0

    @Option(help: "Event loop threads of the bench (default: one per core).")
    var threads = System.coreCount

    @Option(name: .customLong("run-id"), help: "Prefix of doc and user names (default: random), so runs never share docs.")
    var runID: String?

    @Flag(help: "Print the result as JSON instead of the table.")
    var json = false

    @Option(name: .customLong("json-out"), help: "Also write the JSON result to this file.")
    var jsonOut: String?

    var resolvedRunID: String {
        runID ?? String(UInt32.random(in: 0...UInt32.max), radix: 36)
    }

    var monitorOptions: ResourceMonitor.Options {
        .init(serverPID: serverPID, redisPID: redisPID, redisURL: redis, opsURL: ops)
    }
}

/// Writes the result: a table (or JSON) to stdout and optionally JSON to a file.
func emit<R: Encodable>(_ result: R, table: String, options: CommonOptions) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(result)
    if let path = options.jsonOut {
        let url = URL(fileURLWithPath: path)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }
    if options.json {
        print(String(decoding: data, as: UTF8.self))
    } else {
        print(table)
    }
}

/// A plain two-column table with section headings.
struct TextTable {
    private var lines: [String] = []
    private let width: Int

    init(title: String, width: Int = 34) {
        self.width = width
        lines.append(title)
        lines.append(String(repeating: "=", count: title.count))
    }

    mutating func section(_ name: String) {
        lines.append("")
        lines.append("[\(name)]")
    }

    mutating func row(_ key: String, _ value: String) {
        let pad = max(1, width - key.count)
        lines.append("  " + key + String(repeating: " ", count: pad) + value)
    }

    mutating func resources(_ r: ResourceReport) {
        section("resources over \(fmt(r.windowSeconds, 1)) s")
        func proc(_ name: String, _ p: ResourceReport.Process?) {
            guard let p else { return }
            row(name, "CPU \(fmt(p.cpuPercent, 1)) % of a core (peak \(fmt(p.cpuPeakPercent, 0)) %), RSS \(fmt(p.rssMB, 1)) MB (peak \(fmt(p.rssPeakMB, 1)))")
        }
        proc("server (tandem)", r.server)
        proc("redis-server", r.redis)
        proc("bench (this process)", r.bench)
        if let steps = r.server?.cpuPerSecond, !steps.isEmpty {
            row("  server CPU % per second", steps.map { String(Int($0.rounded())) }.joined(separator: " "))
        }
        if !r.machineBusyPerSecond.isEmpty {
            row("  machine busy % per second", r.machineBusyPerSecond.map { String(Int($0.rounded())) }.joined(separator: " "))
        }
        if let m = r.machineBusyPercent {
            row("machine busy", "\(fmt(m, 1)) % of \(r.cores) cores")
            row("  irq/softirq (loopback TCP)", "\(fmt(r.interruptCpuPercent ?? 0, 0)) % of a core")
            row("  other processes", "\(fmt(r.othersCpuPercent ?? 0, 0)) % of a core")
            for (name, pct) in r.topOtherProcesses.sorted(by: { $0.value > $1.value }) {
                row("    " + name, "\(fmt(pct, 0)) %")
            }
        }
        row("load average before/after", "\(r.loadAverageBefore.map { fmt($0, 2) }.joined(separator: " ")) / \(r.loadAverageAfter.map { fmt($0, 2) }.joined(separator: " "))")
        if let c = r.redisCommands, let s = r.redisCommandsPerSecond {
            row("redis commands", "\(c) (\(fmt(s, 0))/s)")
        }
        // The node's view of the latencies the bench measures end to end (its histograms' bucket deltas;
        // bucket-rounded): what is not here is outside the node — the socket and the bench's own queues.
        let shown: [(String, String)] = [
            // (sync_push is from the doc's admission, not the read: the read → admission part is the next.)
            ("tandem_sync_push_seconds", "admission → result"),
            ("tandem_sync_push_read_delay_seconds", "read → admission"),
            ("tandem_sync_push_sojourn_seconds", "read → result (+ lag)"),
            ("tandem_sync_push_overrun_seconds", "overrun of estimate"),
            ("tandem_sync_admission_margin_seconds", "admission margin"),
            ("tandem_presence_delivery_seconds", "presence delivery"),
            ("tandem_presence_inbound_hop_seconds", "presence inbound hop"),
            ("tandem_event_loop_lag_seconds", "event loop lag"),
        ]
        for (key, label) in shown {
            guard let h = r.serverHistograms[key] else { continue }
            row("node: " + label, "p50 \(fmt(h.p50, 1))  p90 \(fmt(h.p90, 1))  p99 \(fmt(h.p99, 1)) ms  (n=\(Int(h.count)))")
        }
    }

    mutating func counts(_ name: String, _ dict: [String: Int]) {
        row(name, dict.isEmpty ? "none" : dict.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
    }

    mutating func targets(_ checks: [TargetCheck]) {
        section("targets")
        for c in checks {
            row(c.name, "\(c.met ? "MET   " : "MISSED") \(c.measured) (target \(c.limit))")
        }
    }

    var text: String { lines.joined(separator: "\n") }
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

/// Merges per-loop string counters.
func mergeCounts(_ a: inout [String: Int], _ b: [String: Int]) {
    for (k, v) in b { a[k, default: 0] += v }
}

/// Latency per second of the measured window (by send time), to tell a steady tail from bursts.
struct LatencyTimeline: Sendable {
    private(set) var seconds: [LatencyHistogram] = []

    @inline(__always)
    mutating func record(_ ns: UInt64, sentAt: UInt64, window: Window) {
        guard sentAt >= window.start else { return }
        let i = Int((sentAt - window.start) / 1_000_000_000)
        if i >= seconds.count { grow(to: i) }
        seconds[i].recordNanos(ns)
    }

    private mutating func grow(to i: Int) {
        while seconds.count <= i {
            var h = LatencyHistogram(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .two)
            h.autoResize = true
            seconds.append(h)
        }
    }

    mutating func merge(_ o: LatencyTimeline) {
        if o.seconds.count > seconds.count { grow(to: o.seconds.count - 1) }
        for (i, h) in o.seconds.enumerated() { seconds[i].add(h) }
    }

    var summary: [SecondSummary] {
        seconds.enumerated().map { i, h in
            let s = LatencySummary(h)
            return SecondSummary(second: i, count: s.count, p50: s.p50, p99: s.p99, max: s.max)
        }
    }
}

struct SecondSummary: Codable, Sendable {
    var second: Int
    var count: UInt64
    var p50: Double
    var p99: Double
    var max: Double
}

extension TextTable {
    /// One row of per-second p99s (ms, rounded), and the seconds over `limit`.
    mutating func timeline(_ name: String, _ seconds: [SecondSummary], limit: Double) {
        guard !seconds.isEmpty else { return }
        row(name, seconds.map { String(Int($0.p99.rounded())) }.joined(separator: " "))
        let over = seconds.filter { $0.p99 > limit }.count
        row("  seconds with p99 over \(fmt(limit, 0)) ms", "\(over) of \(seconds.count)")
    }
}
