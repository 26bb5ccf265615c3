import Foundation
import NIOConcurrencyHelpers

/// What the server, its Redis, the bench itself and the whole machine did over the measured window.
struct ResourceReport: Codable, Sendable {
    struct Process: Codable, Sendable {
        var pid: Int32
        /// Average CPU over the window, percent of one core.
        var cpuPercent: Double
        /// Highest 1-second CPU, percent of one core.
        var cpuPeakPercent: Double
        var rssMB: Double
        var rssPeakMB: Double
        /// CPU of each ~1 s step of the window, percent of one core.
        var cpuPerSecond: [Double]
    }
    var windowSeconds: Double
    var server: Process?
    var redis: Process?
    var bench: Process?
    /// Busy share of all cores of the machine (100 = every core busy), whoever used them.
    var machineBusyPercent: Double?
    /// Machine busy share of each ~1 s step (100 = every core busy).
    var machineBusyPerSecond: [Double]
    /// irq + softirq time (mostly loopback TCP for this workload), percent of one core; charged to no process.
    var interruptCpuPercent: Double?
    /// CPU the machine spent on anything but server, Redis, bench and interrupts, percent of one core
    /// (other engineers' builds and tests).
    var othersCpuPercent: Double?
    /// The other processes that used the most CPU during the window: "name (pid)" → percent of one core.
    var topOtherProcesses: [String: Double]
    var cores: Int
    var loadAverageBefore: [Double]
    var loadAverageAfter: [Double]
    var redisCommands: UInt64?
    var redisCommandsPerSecond: Double?
    /// Non-zero changes of Tandem's own metrics over the window.
    var serverMetricDeltas: [String: Double]
    /// Tandem's own histograms over the window (`histogramDeltas`).
    var serverHistograms: [String: NodeHistogram] = [:]
}

/// Samples the processes once per second from `start()` until `stop()`; the window's averages come from
/// the first and last sample, the peaks from the 1-second steps.
final class ResourceMonitor: Sendable {
    struct Options: Sendable {
        var serverPID: Int32?
        var redisPID: Int32?
        var redisURL: String?
        var opsURL: String?
    }

    private struct Track {
        var first: ProcSample?
        var last: ProcSample?
        var peakCPU = 0.0
        var peakRSS: UInt64 = 0
        var steps: [Double] = []
        mutating func add(_ s: ProcSample?) {
            guard let s else { return }
            if let last {
                let step = ProcSample.cpuPercent(last, s)
                peakCPU = max(peakCPU, step)
                steps.append((step * 10).rounded() / 10)
            }
            if first == nil { first = s }
            last = s
            peakRSS = max(peakRSS, s.rssBytes)
        }
        func report(pid: Int32) -> ResourceReport.Process? {
            guard let first, let last else { return nil }
            return .init(
                pid: pid, cpuPercent: ProcSample.cpuPercent(first, last), cpuPeakPercent: peakCPU,
                rssMB: Double(last.rssBytes) / 1_048_576, rssPeakMB: Double(peakRSS) / 1_048_576, cpuPerSecond: steps)
        }
    }

    private struct State {
        var server = Track()
        var redis = Track()
        var bench = Track()
        var machineFirst: MachineSample?
        var machineLast: MachineSample?
        var machineSteps: [Double] = []
        var redisFirst: UInt64?
        var redisLast: UInt64?
        var metricsFirst: [String: Double]?
        var metricsLast: [String: Double]?
        var loadBefore: [Double] = []
        var processesBefore: [Int32: (String, Double)] = [:]
        var startNs: UInt64 = 0
        var endNs: UInt64 = 0
        var running = false
    }

    let options: Options
    private let redisProbe: RedisInfoProbe?
    private let opsProbe: OpsMetricsProbe?
    private let state = NIOLockedValueBox(State())

    init(options: Options) {
        self.options = options
        redisProbe = options.redisURL.flatMap { try? RedisInfoProbe(url: $0) }
        opsProbe = options.opsURL.flatMap { try? OpsMetricsProbe(url: $0) }
    }

    /// Starts the window: first samples now, then one per second in the background.
    func start() {
        let redisCount = redisProbe?.commandsProcessed()
        let metrics = opsProbe?.metrics()
        let processes = allProcessCPU()
        sampleProcesses()
        state.withLockedValue {
            $0.processesBefore = processes
            $0.redisFirst = redisCount
            $0.metricsFirst = metrics
            $0.loadBefore = loadAverage()
            $0.startNs = monotonicNanos()
            $0.running = true
        }
        let thread = Thread { [self] in
            while state.withLockedValue({ $0.running }) {
                Thread.sleep(forTimeInterval: 1)
                if state.withLockedValue({ $0.running }) { sampleProcesses() }
            }
        }
        thread.start()
    }

    /// Ends the window with a last sample and returns the report.
    func stop() -> ResourceReport {
        sampleProcesses()
        let redisCount = redisProbe?.commandsProcessed()
        let metrics = opsProbe?.metrics()
        let processesAfter = allProcessCPU()
        let end = monotonicNanos()
        return state.withLockedValue { s in
            s.running = false
            s.redisLast = redisCount
            s.metricsLast = metrics
            s.endNs = end
            let seconds = Double(s.endNs &- s.startNs) / 1e9
            var redisCommands: UInt64?
            if let a = s.redisFirst, let b = s.redisLast, b >= a { redisCommands = b - a }
            let server = options.serverPID.flatMap { s.server.report(pid: $0) }
            let redis = options.redisPID.flatMap { s.redis.report(pid: $0) }
            let bench = s.bench.report(pid: getpid())
            let cores = ProcessInfo.processInfo.activeProcessorCount
            var machine: Double?
            var others: Double?
            var interrupts: Double?
            if let a = s.machineFirst, let b = s.machineLast {
                let busy = MachineSample.busyPercent(a, b)
                machine = busy
                interrupts = MachineSample.interruptPercent(a, b) * Double(cores)
                let ours = (server?.cpuPercent ?? 0) + (redis?.cpuPercent ?? 0) + (bench?.cpuPercent ?? 0)
                others = max(0, busy * Double(cores) - ours - (interrupts ?? 0))
            }
            let ourPIDs = Set([options.serverPID, options.redisPID, getpid()].compactMap { $0 })
            var top: [(String, Double)] = []
            for (pid, (name, after)) in processesAfter where !ourPIDs.contains(pid) {
                let before = s.processesBefore[pid]?.1 ?? 0
                let pct = seconds > 0 ? (after - before) / seconds * 100 : 0
                if pct >= 1 { top.append(("\(name) (\(pid))", (pct * 10).rounded() / 10)) }
            }
            top.sort { $0.1 > $1.1 }
            return ResourceReport(
                windowSeconds: seconds, server: server, redis: redis, bench: bench, machineBusyPercent: machine,
                machineBusyPerSecond: s.machineSteps,
                interruptCpuPercent: interrupts, othersCpuPercent: others,
                topOtherProcesses: Dictionary(top.prefix(6).map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a }),
                cores: cores, loadAverageBefore: s.loadBefore, loadAverageAfter: loadAverage(),
                redisCommands: redisCommands,
                redisCommandsPerSecond: redisCommands.map { seconds > 0 ? Double($0) / seconds : 0 },
                serverMetricDeltas: metricDeltas(s.metricsFirst, s.metricsLast),
                serverHistograms: histogramDeltas(s.metricsFirst, s.metricsLast))
        }
    }

    private func sampleProcesses() {
        let server = options.serverPID.flatMap { ProcSample.read(pid: $0) }
        let redis = options.redisPID.flatMap { ProcSample.read(pid: $0) }
        let bench = ProcSample.read(pid: getpid())
        let machine = MachineSample.read()
        state.withLockedValue { s in
            s.server.add(server)
            s.redis.add(redis)
            s.bench.add(bench)
            if s.machineFirst == nil { s.machineFirst = machine }
            if let machine {
                if let last = s.machineLast { s.machineSteps.append((MachineSample.busyPercent(last, machine) * 10).rounded() / 10) }
                s.machineLast = machine
            }
        }
    }
}
