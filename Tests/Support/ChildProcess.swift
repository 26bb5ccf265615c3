import Foundation
import TandemSystem

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
/// test that fails or forgets to stop it leaves no orphans behind. Started with TandemSystem's
/// `SpawnedProcess` (posix_spawn with a clean signal mask), as the embedded redis-server is.
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
public final class ChildProcess: Sendable {
    /// How a child ended: `.exited(code)` or `.signaled(signal)`.
    public typealias ExitStatus = SpawnedProcess.ExitStatus

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
    /// `directory` was made here (no `directory` given), so it goes with this object.
    private let ownsDirectory: Bool
    /// stdout and stderr, interleaved as written.
    public let logURL: URL

    /// The child itself (TandemSystem's spawner: clean signal mask, own process group).
    private let process: SpawnedProcess

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
        self.ownsDirectory = directory == nil
        self.directory = try directory ?? makeTemporaryDirectory(prefix: "tandem-\(name)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.logURL = self.directory.appendingPathComponent("\(name).log")

        var childEnvironment = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
        childEnvironment.merge(environment) { _, new in new }
        // The child writes straight into the file: no pipe to drain, nothing lost if it crashes.
        self.process = try SpawnedProcess(
            executable: executable, arguments: arguments, environment: childEnvironment,
            workingDirectory: (workingDirectory ?? self.directory).path,
            output: .file(path: self.logURL.path, append: false), newProcessGroup: true)
    }

    deinit {
        // Also when the child itself has ended: whatever it left running in its group goes too.
        self.process.signalGroup(SIGKILL)
        self.process.signal(SIGKILL)
        // SIGKILL cannot be caught; reap the child before the object goes.
        _ = self.process.waitForExitBlocking(timeout: .seconds(5))
        // The log has been read by now (failures carry it); whatever is left would pile up in /tmp.
        if self.ownsDirectory { try? FileManager.default.removeItem(at: self.directory) }
    }

    public var pid: Int32 {
        self.process.pid
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
        self.process.exitStatus
    }

    /// Sends `signal` (`SIGTERM`, `SIGINT`, `SIGSTOP`, ...) to the child itself.
    public func signal(_ signal: Int32) {
        self.process.signal(signal)
    }

    /// SIGKILLs the child's whole process group (the child and anything it started).
    public func kill() {
        self.process.signalGroup(SIGKILL)
        self.process.signal(SIGKILL)
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
        let timeout = TestTimeouts.scaled(timeout)
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
        let timeout = TestTimeouts.scaled(timeout)
        guard let status = await self.process.waitForExit(timeout: timeout) else {
            throw Failure.exitTimeout(timeout: timeout, log: self.logText)
        }
        return status
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
