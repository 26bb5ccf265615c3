import Foundation

#if canImport(Glibc)
import Glibc
#endif

// Out-of-band measurements: CPU and memory from /proc, Redis `INFO`, Tandem's /metrics. All blocking
// and cheap (a file read or one short request), run once per second at most.

/// CPU time and resident memory of one process, from /proc/PID/stat and /proc/PID/status.
struct ProcSample: Sendable {
    var cpuSeconds: Double
    var rssBytes: UInt64
    var at: UInt64  // monotonic ns

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func read(pid: Int32) -> ProcSample? {
        let now = monotonicNanos()
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        // Fields after the command name (which may hold spaces) start after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        var rss: UInt64 = 0
        if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
            for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 2, let kb = UInt64(parts[1]) { rss = kb * 1024 }
            }
        }
        return ProcSample(cpuSeconds: (utime + stime) / ticksPerSecond, rssBytes: rss, at: now)
    }

    /// Percent of one core used between two samples.
    static func cpuPercent(_ a: ProcSample, _ b: ProcSample) -> Double {
        let wall = Double(b.at &- a.at) / 1e9
        return wall > 0 ? (b.cpuSeconds - a.cpuSeconds) / wall * 100 : 0
    }
}

/// Whole-machine CPU from /proc/stat: busy and total jiffies over all cores.
struct MachineSample: Sendable {
    var busy: Double
    var total: Double
    /// irq + softirq jiffies: network processing (loopback TCP included) not charged to any process.
    var interrupts: Double

    static func read() -> MachineSample? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return nil }
        let idle = values[3] + values[4]  // idle + iowait
        let total = values.prefix(8).reduce(0, +)  // user nice system idle iowait irq softirq steal
        return MachineSample(busy: total - idle, total: total, interrupts: values[5] + values[6])
    }

    /// irq + softirq share of all cores.
    static func interruptPercent(_ a: MachineSample, _ b: MachineSample) -> Double {
        let total = b.total - a.total
        return total > 0 ? (b.interrupts - a.interrupts) / total * 100 : 0
    }

    /// Busy percent of the whole machine (100 = every core busy).
    static func busyPercent(_ a: MachineSample, _ b: MachineSample) -> Double {
        let total = b.total - a.total
        return total > 0 ? (b.busy - a.busy) / total * 100 : 0
    }
}

/// CPU seconds of every process (pid → (name, seconds)), to name the other processes busy during a window.
func allProcessCPU() -> [Int32: (String, Double)] {
    var out: [Int32: (String, Double)] = [:]
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return out }
    for name in entries {
        guard let pid = Int32(name),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { continue }
        let comm = String(stat[stat.index(after: open)..<close])
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { continue }
        out[pid] = (comm, (u + s) / ProcSample.ticksPerSecond)
    }
    return out
}

func loadAverage() -> [Double] {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return [] }
    return text.split(separator: " ").prefix(3).compactMap { Double($0) }
}

// MARK: - Tiny blocking TCP requests

enum ProbeError: Error, CustomStringConvertible {
    case badURL(String)
    case connect(String)
    case protocolError(String)
    var description: String {
        switch self {
        case .badURL(let s): return "bad URL \(s)"
        case .connect(let s): return "cannot connect to \(s)"
        case .protocolError(let s): return s
        }
    }
}

/// Connects to host:port (IPv4 literal or name) with a timeout on reads and writes.
private func tcpConnect(host: String, port: Int, timeoutSeconds: Int = 5) throws -> Int32 {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
        throw ProbeError.connect("\(host):\(port) (resolve)")
    }
    defer { freeaddrinfo(result) }
    var ai: UnsafeMutablePointer<addrinfo>? = first
    while let a = ai {
        let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
        if fd >= 0 {
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
            close(fd)
        }
        ai = a.pointee.ai_next
    }
    throw ProbeError.connect("\(host):\(port)")
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { throw ProbeError.protocolError("write failed") }
        sent += n
    }
}

/// Reads until `done(bytes)` says so or EOF.
private func readUntil(_ fd: Int32, done: ([UInt8]) -> Bool) throws -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while !done(out) {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n == 0 { break }
        guard n > 0 else { throw ProbeError.protocolError("read failed (errno \(errno))") }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}

/// `redis://HOST:PORT[/DB]` → `INFO section` as key → value.
struct RedisInfoProbe: Sendable {
    let host: String
    let port: Int

    init(url: String) throws {
        guard let u = URL(string: url), u.scheme == "redis", let host = u.host else { throw ProbeError.badURL(url) }
        self.host = host
        self.port = u.port ?? 6379
    }

    func info(_ section: String = "stats") throws -> [String: String] {
        let fd = try tcpConnect(host: host, port: port)
        defer { close(fd) }
        let cmd = "*2\r\n$4\r\nINFO\r\n$\(section.utf8.count)\r\n\(section)\r\n"
        try writeAll(fd, Array(cmd.utf8))
        // Bulk reply: $LEN\r\n<LEN bytes>\r\n
        let reply = try readUntil(fd) { bytes in
            guard let crlf = bytes.firstIndex(of: 0x0D), bytes.first == UInt8(ascii: "$"),
                let len = Int(String(decoding: bytes[1..<crlf], as: UTF8.self))
            else { return bytes.first == UInt8(ascii: "-") && bytes.contains(0x0A) }
            return bytes.count >= crlf + 2 + len + 2
        }
        guard reply.first == UInt8(ascii: "$") else {
            throw ProbeError.protocolError("redis: \(String(decoding: reply, as: UTF8.self))")
        }
        var values: [String: String] = [:]
        for line in String(decoding: reply, as: UTF8.self).split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) {
            guard let colon = line.firstIndex(of: ":"), !line.hasPrefix("#") else { continue }
            values[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return values
    }

    func commandsProcessed() -> UInt64? {
        (try? info("stats"))?["total_commands_processed"].flatMap { UInt64($0) }
    }
}

/// `GET /metrics` of the ops port: every `tandem_*` sample line as "name{labels}" → value.
struct OpsMetricsProbe: Sendable {
    let host: String
    let port: Int

    init(url: String) throws {
        guard let u = URL(string: url), u.scheme == "http", let host = u.host else { throw ProbeError.badURL(url) }
        self.host = host
        self.port = u.port ?? 80
    }

    func get(_ path: String) throws -> String {
        let fd = try tcpConnect(host: host, port: port)
        defer { close(fd) }
        let request = "GET \(path) HTTP/1.0\r\nHost: \(host)\r\nConnection: close\r\n\r\n"
        try writeAll(fd, Array(request.utf8))
        let response = try readUntil(fd) { _ in false }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw ProbeError.protocolError("no HTTP body") }
        return String(text[split.upperBound...])
    }

    func metrics() -> [String: Double]? {
        guard let body = try? get("/metrics") else { return nil }
        var out: [String: Double] = [:]
        for line in body.split(separator: "\n") where line.hasPrefix("tandem_") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }
}

/// Counter deltas between two scrapes (only the non-zero ones; gauges show up as their change too).
func metricDeltas(_ a: [String: Double]?, _ b: [String: Double]?) -> [String: Double] {
    guard let a, let b else { return [:] }
    var out: [String: Double] = [:]
    for (k, v) in b {
        let d = v - (a[k] ?? 0)
        if d != 0 && !k.contains("_bucket{") { out[k] = d }
    }
    return out
}

/// A node histogram over the window, from its bucket deltas: how many observations and where its
/// quantiles fall (Prometheus's `histogram_quantile`: linear within the bucket; past the last finite bound,
/// that bound). Milliseconds for a `_seconds` histogram, else the metric's own unit.
struct NodeHistogram: Codable, Sendable, Equatable {
    var count: Double
    var p50: Double
    var p90: Double
    var p99: Double
}

/// Every node histogram that observed something between two scrapes, keyed by its name and labels
/// without `le` (`tandem_sync_push_seconds`, `tandem_sync_push_stage_seconds{stage="commit"}`).
///
/// The node's own view of a latency: at saturation the bench's figures also hold the bench's wait for
/// CPU on the cores it shares with the node (the control ping); these do not.
func histogramDeltas(_ a: [String: Double]?, _ b: [String: Double]?) -> [String: NodeHistogram] {
    guard let a, let b else { return [:] }
    var buckets: [String: [(le: Double, count: Double)]] = [:]
    for (key, value) in b {
        guard let open = key.firstIndex(of: "{"), key[..<open].hasSuffix("_bucket"),
            let le = key.range(of: #"le=""#)
        else { continue }
        let boundText = key[le.upperBound...].prefix { $0 != "\"" }
        guard let bound = boundText == "+Inf" ? Double.infinity : Double(boundText) else { continue }
        // The key without `_bucket` and without the `le` label (and its comma).
        var labels = key[key.index(after: open)..<key.index(before: key.endIndex)]
            .split(separator: ",").filter { !$0.hasPrefix("le=") }.joined(separator: ",")
        labels = labels.isEmpty ? "" : "{\(labels)}"
        let name = String(key[..<open].dropLast("_bucket".count)) + labels
        buckets[name, default: []].append((bound, value - (a[key] ?? 0)))
    }
    var out: [String: NodeHistogram] = [:]
    for (name, raw) in buckets {
        let sorted = raw.sorted { $0.le < $1.le }
        guard let total = sorted.last?.count, total > 0 else { continue }
        let scale = name.split(separator: "{")[0].hasSuffix("_seconds") ? 1000.0 : 1
        func quantile(_ q: Double) -> Double {
            let rank = q * total
            var lower = 0.0
            var below = 0.0
            for (le, cumulative) in sorted {
                if cumulative >= rank {
                    guard le.isFinite else { return lower * scale }
                    let inBucket = cumulative - below
                    let fraction = inBucket > 0 ? (rank - below) / inBucket : 1
                    return (lower + (le - lower) * fraction) * scale
                }
                if le.isFinite { lower = le }
                below = cumulative
            }
            return lower * scale
        }
        out[name] = NodeHistogram(count: total, p50: quantile(0.5), p90: quantile(0.9), p99: quantile(0.99))
    }
    return out
}
