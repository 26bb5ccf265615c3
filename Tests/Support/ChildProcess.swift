import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process for a test (a `tandem` server, `redis-server`, a shell command), with its
/// stdout and stderr going to one log file so a failing test can print what it said.
///
/// The child gets its own process group; ``kill()`` and `deinit` SIGKILL the whole group, so a
/// test that fails or forgets to stop it leaves no orphans behind.
///
/// ```swift
/// let server = try ChildProcess(
///     executable: try BuiltProducts.executable(named: "tandem"),
///     arguments: ["--port", "\(freeTCPPort())"],
///     environment: ["TANDEM_LOG_LEVEL": "debug"]
/// )
/// let line = try await server.waitForOutput(matching: #"listening on .*:\d+"#)
/// server.signal(SIGTERM)
/// #expect(try await server.waitForExit() == 0)
/// ```
public final class ChildProcess: @unchecked Sendable {
    // @unchecked Sendable: `process` (Foundation's Process is not Sendable) is configured and
    // launched in init and afterwards only queried through its thread-safe status accessors;
    // the only mutable state of our own, `cachedStatus`, is guarded by `lock`.

    /// How a child ended.
    public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
        /// Returned from `main` or called `exit` with this code.
        case exited(Int32)
        /// Killed by this signal (SIGTERM is 15, SIGKILL is 9).
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): return "exited with status \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        case outputTimeout(pattern: String, timeout: Duration, log: String)
        case exitedBeforeOutput(pattern: String, status: ExitStatus, log: String)
        case exitTimeout(timeout: Duration, log: String)
        case invalidPattern(String, underlying: any Error)

        public var description: String {
            switch self {
            case .outputTimeout(let pattern, let timeout, let log):
                return "no output line matched /\(pattern)/ within \(timeout). Log:\n\(log)"
            case .exitedBeforeOutput(let pattern, let status, let log):
                return "process \(status) before any output line matched /\(pattern)/. Log:\n\(log)"
            case .exitTimeout(let timeout, let log):
                return "process still running after \(timeout). Log:\n\(log)"
            case .invalidPattern(let pattern, let underlying):
                return "invalid regular expression /\(pattern)/: \(underlying)"
            }
        }
    }

    public let executable: String
    public let arguments: [String]
    /// This child's own temporary directory; the log lives here.
    public let directory: URL
    /// stdout and stderr, interleaved as written.
    public let logURL: URL

    private let process: Process
    private let lock = NSLock()
    private var cachedStatus: ExitStatus?

    /// Starts `executable` at once.
    ///
    /// - Parameters:
    ///   - environment: Variables set for the child, on top of this process's environment
    ///     unless `inheritEnvironment` is `false`.
    ///   - directory: Where to put the log; a new temporary directory when `nil`.
    ///   - workingDirectory: The child's current directory; `directory` when `nil`.
    public init(
        executable: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        inheritEnvironment: Bool = true,
        directory: URL? = nil,
        workingDirectory: URL? = nil
    ) throws {
        self.executable = executable
        self.arguments = arguments
        let name = URL(fileURLWithPath: executable).lastPathComponent
        self.directory = try directory ?? makeTemporaryDirectory(prefix: "tandem-\(name)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.logURL = self.directory.appendingPathComponent("\(name).log")

        guard FileManager.default.createFile(atPath: self.logURL.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: self.logURL.path])
        }
        // The child writes straight into the file: no pipe to drain, nothing lost if it crashes.
        let log = try FileHandle(forWritingTo: self.logURL)
        defer { try? log.close() }

        var childEnvironment = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
        childEnvironment.merge(environment) { _, new in new }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = childEnvironment
        process.currentDirectoryURL = workingDirectory ?? self.directory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try runWithUnblockedSignals { try process.run() }
        self.process = process
    }

    deinit {
        // Also when the child itself has ended: whatever it left running in its group goes too.
        self.killProcessGroup()
        // SIGKILL cannot be caught; give the child a moment to die before the object goes.
        let deadline = Date().addingTimeInterval(5)
        while self.isRunning && Date() < deadline {
            usleep(1_000)
        }
    }

    public var pid: Int32 {
        self.process.processIdentifier
    }

    /// `false` once the child has ended (see ``exitStatus``).
    public var isRunning: Bool {
        self.exitStatus == nil
    }

    /// Everything the child has written so far.
    public var logText: String {
        let data = (try? Data(contentsOf: self.logURL)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// How the child ended; `nil` while it runs.
    public var exitStatus: ExitStatus? {
        self.lock.lock()
        defer { self.lock.unlock() }
        if let status = self.cachedStatus {
            return status
        }
        var status: ExitStatus?
        if !self.process.isRunning {
            status =
                self.process.terminationReason == .uncaughtSignal
                ? .signaled(self.process.terminationStatus)
                : .exited(self.process.terminationStatus)
        } else {
            status = exitedChildStatus(pid: self.pid)
        }
        self.cachedStatus = status
        return status
    }

    /// Sends `signal` (`SIGTERM`, `SIGINT`, `SIGSTOP`, ...) to the child itself.
    public func signal(_ signal: Int32) {
        guard self.isRunning else { return }
        _ = sendSignal(self.pid, signal)
    }

    /// SIGKILLs the child's whole process group (the child and anything it started).
    public func kill() {
        self.killProcessGroup()
    }

    private func killProcessGroup() {
        // On Linux, Foundation's Process puts the child in a process group of its own
        // (pgid == pid): signal the group, and the child directly in case that ever changes.
        // While the group has members its id cannot be reused, so this cannot hit a stranger.
        _ = sendSignal(-self.pid, SIGKILL)
        if self.isRunning {
            _ = sendSignal(self.pid, SIGKILL)
        }
    }

    /// Polls the log until a complete line matches the regular expression `pattern`, and returns
    /// that line (without its newline). Lines are checked from the start of the log, so a line
    /// written before the call counts.
    ///
    /// - Throws: ``Failure/outputTimeout(pattern:timeout:log:)``, or
    ///   ``Failure/exitedBeforeOutput(pattern:status:log:)`` as soon as the child has exited
    ///   without printing it; both carry the log.
    public func waitForOutput(
        matching pattern: String,
        timeout: Duration = .seconds(10),
        poll: Duration = .milliseconds(20)
    ) async throws -> String {
        let regex: Regex<AnyRegexOutput>
        do {
            regex = try Regex(pattern)
        } catch {
            throw Failure.invalidPattern(pattern, underlying: error)
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            // Read the exit status first: if it says "exited", the log is already complete.
            let status = self.exitStatus
            let text = self.logText
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            // The last piece is an unfinished line (or empty); match it only once nothing more can come,
            // so /port \d+/ cannot match "port 80" of "port 8080" half written.
            let unfinished = lines.popLast() ?? ""
            if status != nil {
                lines.append(unfinished)
            }
            if let line = lines.first(where: { $0.firstMatch(of: regex) != nil }) {
                return String(line)
            }
            if let status {
                throw Failure.exitedBeforeOutput(pattern: pattern, status: status, log: text)
            }
            if clock.now >= deadline {
                throw Failure.outputTimeout(pattern: pattern, timeout: timeout, log: text)
            }
            try await Task.sleep(for: poll)
        }
    }

    /// Waits for the child to end and tells how.
    /// - Throws: ``Failure/exitTimeout(timeout:log:)`` if it is still running after `timeout`
    ///   (it is left running; `deinit` or ``kill()`` stops it).
    public func waitForTermination(timeout: Duration = .seconds(10)) async throws -> ExitStatus {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let status = self.exitStatus {
                return status
            }
            if clock.now >= deadline {
                throw Failure.exitTimeout(timeout: timeout, log: self.logText)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits for the child to end and returns its exit code, or, when a signal killed it, the
    /// signal number (as `Process.terminationStatus` does). ``exitStatus`` or
    /// ``waitForTermination(timeout:)`` tell the two apart.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(10)) async throws -> Int32 {
        switch try await self.waitForTermination(timeout: timeout) {
        case .exited(let code): return code
        case .signaled(let signal): return signal
        }
    }
}

/// How the child `pid` ended if it has ended but is not yet reaped (a zombie), else `nil`.
///
/// Needed on Linux, where Foundation notices a child's end only once every process holding a
/// descriptor it gave the child has closed it: after `sh -c 'echo ready; sleep 30'` gets
/// SIGTERM, the shell is dead but its `sleep` keeps `Process.isRunning` true for 30 s.
/// `/proc/<pid>/stat` has the state (field 3) and the wait status (field 52, `exit_code`).
private func exitedChildStatus(pid: Int32) -> ChildProcess.ExitStatus? {
    #if os(Linux)
    // procfs files claim size 0, so read until EOF rather than through FileManager.
    let descriptor = open("/proc/\(pid)/stat", O_RDONLY)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { break }
        bytes += chunk[..<count]
    }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let commandEnd = text.lastIndex(of: ")") else {
        return nil
    }
    // Fields after "pid (command)" start with field 3.
    let fields = text[text.index(after: commandEnd)...].split(separator: " ")
    guard fields.count >= 50, fields[0] == "Z" || fields[0] == "X",
        let waitStatus = Int32(fields[49].trimmingCharacters(in: .whitespacesAndNewlines))
    else {
        return nil
    }
    let signal = waitStatus & 0x7f
    return signal == 0 ? .exited((waitStatus >> 8) & 0xff) : .signaled(signal)
    #else
    return nil
    #endif
}

/// `kill(2)`, outside the class so the name does not resolve to ``ChildProcess/kill()``.
private func sendSignal(_ pid: Int32, _ signal: Int32) -> Int32 {
    kill(pid, signal)
}

/// Runs `body` (which spawns a child) with every signal unblocked on the calling thread.
///
/// Children inherit the spawning thread's signal mask, and Swift's cooperative pool and Dispatch
/// threads block most signals: a child spawned from async test code would otherwise ignore SIGTERM.
public func runWithUnblockedSignals<T>(_ body: () throws -> T) rethrows -> T {
    var all = sigset_t()
    sigfillset(&all)
    var previous = sigset_t()
    pthread_sigmask(SIG_UNBLOCK, &all, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    return try body()
}
