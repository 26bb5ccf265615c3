#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Prometheus's standard process metrics, read from /proc at scrape time — the figures operators watch
/// in a flood: `process_open_fds`, `process_max_fds`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_cpu_seconds_total`, `process_start_time_seconds`, with the
/// names, types and meanings of the Go and Java clients' process collectors (so existing dashboards and
/// alerts work unchanged).
///
/// swift-prometheus 2.4.1 has no process collector (nor does swift-metrics 2.13), and its registry has no
/// hook to compute values at scrape time, so these are rendered as exposition text and appended to the
/// registry's. Linux only; elsewhere (and for any file that cannot be read) a metric is left out rather
/// than reported wrong.
enum ProcessMetrics {
    /// The exposition text for the current process, read now.
    static func exposition() -> [UInt8] {
        #if os(Linux)
        var sample = Sample()
        if let stat = readSmallFile("/proc/self/stat").flatMap({ ProcStat(statLine: $0) }),
           let bootTime = readSmallFile("/proc/stat").flatMap(Self.bootTime(procStat:))
        {
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
            if ticks > 0, pageSize > 0 {
                sample.cpuSeconds = Double(stat.userTicks + stat.systemTicks) / ticks
                sample.startTimeSeconds = Double(bootTime) + Double(stat.startTicks) / ticks
                sample.virtualMemoryBytes = Double(stat.virtualMemoryBytes)
                sample.residentMemoryBytes = Double(stat.residentPages) * pageSize
            }
        }
        sample.openFDs = countOpenFileDescriptors().map(Double.init)
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            // RLIM_INFINITY (all ones on Linux) as 2^53, the largest exactly representable count.
            sample.maxFDs = limit.rlim_cur >= rlim_t(1 << 53) ? Double(1 << 53) : Double(limit.rlim_cur)
        }
        return Array(sample.render().utf8)
        #else
        return []
        #endif
    }

    /// One reading; nil fields are left out of the exposition.
    struct Sample: Equatable {
        var cpuSeconds: Double?
        var openFDs: Double?
        var maxFDs: Double?
        var virtualMemoryBytes: Double?
        var residentMemoryBytes: Double?
        var startTimeSeconds: Double?

        func render() -> String {
            var text = ""
            func add(_ name: String, _ type: String, _ help: String, _ value: Double?) {
                guard let value, value.isFinite else { return }
                text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(format(value))\n"
            }
            add("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpuSeconds)
            add("process_open_fds", "gauge", "Number of open file descriptors.", openFDs)
            add("process_max_fds", "gauge", "Maximum number of open file descriptors.", maxFDs)
            add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", virtualMemoryBytes)
            add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", residentMemoryBytes)
            add("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", startTimeSeconds)
            return text
        }

        /// Integers without a fraction (exact up to 2^53), everything else as Swift prints a Double
        /// (shortest round-trip form, which Prometheus parses, exponent included).
        private func format(_ value: Double) -> String {
            if value == value.rounded(), abs(value) <= Double(1 << 53) { return String(Int64(value)) }
            return String(value)
        }
    }

    /// The fields of /proc/self/stat that the metrics need (proc(5)).
    struct ProcStat: Equatable {
        var userTicks: UInt64
        var systemTicks: UInt64
        var startTicks: UInt64
        var virtualMemoryBytes: UInt64
        var residentPages: UInt64

        /// Parses a stat line. The command name (field 2) is in parentheses and may itself contain spaces
        /// and parentheses, so fields are counted from the last `)`. Nil for anything malformed or out of
        /// range (each value must fit comfortably below 2^53 once converted).
        init?(statLine: String) {
            guard let close = statLine.lastIndex(of: ")") else { return nil }
            // Field 3 (state) is first after the name.
            let fields = statLine[statLine.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
            func field(_ number: Int) -> UInt64? {
                let index = number - 3
                guard index >= 0, index < fields.count, let value = UInt64(fields[index]), value < (1 << 53) else { return nil }
                return value
            }
            guard let utime = field(14), let stime = field(15), let start = field(22), let vsize = field(23),
                  let rss = field(24)
            else { return nil }
            userTicks = utime
            systemTicks = stime
            startTicks = start
            virtualMemoryBytes = vsize
            residentPages = rss
        }
    }

    /// `btime` (boot time, seconds since the epoch) from /proc/stat.
    static func bootTime(procStat: String) -> UInt64? {
        for line in procStat.split(separator: "\n") where line.hasPrefix("btime ") {
            return UInt64(line.dropFirst("btime ".count).trimmed(" "))
        }
        return nil
    }

    /// Entries of /proc/self/fd (the directory handle used to count them included, as in other clients).
    private static func countOpenFileDescriptors() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return count
    }

    /// A /proc file (their size is reported as 0, so read until end of file), at most 1 MiB.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private extension Substring {
    func trimmed(_ character: Character) -> Substring {
        var result = self
        while result.first == character { result.removeFirst() }
        while result.last == character { result.removeLast() }
        return result
    }
}
