import Foundation
import TandemSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `redis-server` child process for tests.
///
/// It listens on 127.0.0.1 on a free port, keeps its data in a temporary folder, persists nothing by
/// default (`--save "" --appendonly no`), and can be stopped, killed, restarted on the same port, and
/// paused (SIGSTOP) to simulate a hung server. It is stopped in `deinit`, and any server still running
/// when the test process exits is killed by an `atexit` hook, so no orphan outlives a normal test run.
///
/// ```swift
/// let server = try RedisServerProcess()
/// let client = try RedisClient(url: server.url)
/// server.command("PUBLISH", "doc:1", "hello")
/// ```
public final class RedisServerProcess: @unchecked Sendable {
    // @unchecked: `lock` protects `server`; every other stored property is an immutable `let`.

    /// Why a server could not be started.
    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The TCP port, fixed for the life of this object (restarts reuse it).
    public let port: Int
    /// The unix socket path when created with `unixSocket: true`.
    public let unixSocketPath: String?
    /// The temporary folder holding the server's data, log and socket.
    public let directory: URL
    /// `redis://127.0.0.1:PORT`.
    public var url: String { "redis://127.0.0.1:\(port)" }
    /// `unix:///path/to/redis.sock` when created with `unixSocket: true`.
    public var unixURL: String? { unixSocketPath.map { "unix://\($0)" } }

    private let extraArguments: [String]
    private let cliAuthArguments: [String]
    private let lock = NSLock()
    /// The running server (TandemSystem's launcher, as for the embedded Redis); nil while stopped.
    private var server: RedisServerChild?

    /// Starts a server and waits (up to 10 s) until it answers `PING`.
    /// - Parameters:
    ///   - extraArguments: More `redis-server` options, e.g. `["--requirepass", "secret"]`
    ///     (a `--requirepass` is also used by ``command(_:)``).
    ///   - unixSocket: Also listen on a unix socket in the temporary folder (see ``unixSocketPath``).
    public init(extraArguments: [String] = [], unixSocket: Bool = false) throws {
        // Directly in the temporary directory, not in TestTemporaryRoot: a unix socket path must stay short
        // (redis-server shows at most 77 bytes of it in CLIENT INFO; the kernel takes 107). Removed by deinit.
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tandem-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        PidRegistry.shared.insert(directory: directory)
        unixSocketPath = unixSocket ? directory.appendingPathComponent("redis.sock").path : nil
        self.extraArguments = extraArguments
        if let index = extraArguments.firstIndex(of: "--requirepass"), index + 1 < extraArguments.count {
            cliAuthArguments = ["-a", extraArguments[index + 1], "--no-auth-warning"]
        } else {
            cliAuthArguments = []
        }
        // Another process can grab a port between our probe and redis binding it, so try a few.
        var lastError: Error = StartError(description: "no free port found")
        for _ in 0..<5 {
            guard let candidate = freeLocalPort() else { continue }
            do {
                let child = try Self.launch(
                    port: candidate, directory: directory, unixSocketPath: unixSocketPath, extraArguments: extraArguments
                )
                if child.waitUntilAnsweringBlocking(timeout: .seconds(10)) {
                    port = candidate
                    server = child
                    return
                }
                Self.reap(child, signal: SIGKILL, wait: .seconds(10))
                lastError = StartError(description: "redis-server did not answer PING on port \(candidate)")
            } catch {
                lastError = error
            }
        }
        Self.removeDirectory(directory)
        throw lastError
    }

    deinit {
        stop()
        Self.removeDirectory(directory)
    }

    /// The running server's process id, if one is running.
    public var pid: Int32? {
        lock.withLock { server?.process.isRunning == true ? server?.process.pid : nil }
    }

    /// (Re)starts the server on the same port and waits until it answers. Does nothing if it runs.
    /// Retries for up to 10 s when the port is still briefly taken.
    public func start() throws {
        if pid != nil { return }
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while true {
            let child = try Self.launch(
                port: port, directory: directory, unixSocketPath: unixSocketPath, extraArguments: extraArguments
            )
            if child.waitUntilAnsweringBlocking(timeout: deadline - ContinuousClock.now) {
                lock.withLock { server = child }
                return
            }
            Self.reap(child, signal: SIGKILL, wait: .seconds(10))
            if ContinuousClock.now >= deadline {
                throw StartError(description: "redis-server on port \(port) did not answer PING; see \(logPath)")
            }
            usleep(50_000)
        }
    }

    /// Stops the server gracefully (SIGCONT in case it is paused, then SIGTERM) and waits for it to
    /// exit, falling back to SIGKILL after 5 s.
    public func stop() {
        guard let child = lock.withLock({ server }) else { return }
        child.stopBlocking(grace: .seconds(5))
        lock.withLock { if server === child { server = nil } }
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits for it to be gone.
    public func kill() {
        terminate(signal: SIGKILL)
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered. Returns once the
    /// kernel reports the process stopped.
    public func pause() {
        guard let pid else { return }
        sendSignal(pid, SIGSTOP)
        waitForProcessState(pid) { $0 == "T" }
    }

    /// Resumes a paused server (SIGCONT).
    public func resume() {
        guard let pid else { return }
        sendSignal(pid, SIGCONT)
        waitForProcessState(pid) { $0 != "T" }
    }

    /// Runs `redis-cli -p PORT args...` and returns its standard output without the trailing newline.
    /// Gives up (returning what was printed) after 10 s, e.g. against a paused server.
    @discardableResult
    public func command(_ arguments: String...) -> String {
        command(arguments: arguments)
    }

    /// Runs `redis-cli -p PORT arguments...`; see ``command(_:)``.
    @discardableResult
    public func command(arguments: [String]) -> String {
        // Output goes to a file rather than a pipe, so a large reply cannot block redis-cli while we wait.
        let output = directory.appendingPathComponent("cli-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        guard
            let cli = try? SpawnedProcess(
                executable: Self.executable("redis-cli"), arguments: ["-p", "\(port)"] + cliAuthArguments + arguments,
                output: .file(path: output, append: false, standardError: false))
        else { return "" }
        cli.terminateBlockingUnlessExited(within: .seconds(10))
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `redis-cli MONITOR` into a file: every command the server runs from now on, one line each, for
    /// tests that check which commands a node sends. Stopped by ``RedisMonitor/stop()`` or at exit.
    public func monitor() throws -> RedisMonitor {
        let path = directory.appendingPathComponent("monitor-\(UUID().uuidString).out").path
        let cli = try SpawnedProcess(
            executable: Self.executable("redis-cli"), arguments: ["-p", "\(port)"] + cliAuthArguments + ["monitor"],
            output: .file(path: path, append: false, standardError: false))
        PidRegistry.shared.insert(cli)
        return RedisMonitor(process: cli, path: path)
    }

    // MARK: - Private

    private var logPath: String { directory.appendingPathComponent("redis.log").path }

    private static func launch(
        port: Int, directory: URL, unixSocketPath: String?, extraArguments: [String]
    ) throws -> RedisServerChild {
        let child = try RedisServerChild(
            executable: executable("redis-server"), directory: directory.path, port: port, unixSocket: unixSocketPath,
            arguments: ["--appendonly", "no"] + extraArguments)
        PidRegistry.shared.insert(child.process)
        return child
    }

    /// Sends `signal` to the current server and waits up to `wait` for it to be reaped.
    @discardableResult
    private func terminate(signal: Int32, wait: Duration = .seconds(10)) -> Bool {
        guard let child = lock.withLock({ server }) else { return true }
        guard Self.reap(child, signal: signal, wait: wait) else { return false }
        lock.withLock { if server === child { server = nil } }
        return true
    }

    /// Sends `signal` to `child` and waits up to `wait` for it to be reaped.
    @discardableResult
    private static func reap(_ child: RedisServerChild, signal: Int32, wait: Duration) -> Bool {
        child.process.signal(signal)
        return child.process.waitForExitBlocking(timeout: wait) != nil
    }

    private static func removeDirectory(_ directory: URL) {
        try? FileManager.default.removeItem(at: directory)
        PidRegistry.shared.remove(directory: directory)
    }

    private static func executable(_ name: String) -> String {
        SpawnedProcess.locate(name) ?? "/usr/bin/\(name)"
    }
}

// MARK: - Processes

extension SpawnedProcess {
    /// Waits up to `timeout` for the child to exit, SIGKILLs it if it has not (redis-cli against a paused
    /// server), and reaps it.
    func terminateBlockingUnlessExited(within timeout: Duration) {
        if waitForExitBlocking(timeout: timeout) == nil {
            signal(SIGKILL)
            _ = waitForExitBlocking(timeout: .seconds(10))
        }
    }
}

/// Servers not stopped yet, SIGKILLed by an `atexit` hook if the test process ends without stopping them
/// (a test failed before its `stop()`, or a server object leaked), and the directories of servers not
/// freed yet, removed by the same hook. A server object still alive at exit (held by a task that never
/// ended, a cycle, a static) is never deinitialized: its directory (outside ``TestTemporaryRoot``, see
/// `init`) stayed in /tmp — hundreds of `tandem-redis-*` after a day of runs, most with a cluster's
/// `nodes.conf`.
private final class PidRegistry: @unchecked Sendable {
    // @unchecked: `lock` protects `processes` and `directories`.
    static let shared: PidRegistry = {
        atexit {
            let (processes, directories) = PidRegistry.shared.snapshot()
            for process in processes where process.isRunning { process.signal(SIGKILL) }
            for process in processes { _ = process.waitForExitBlocking(timeout: .seconds(2)) }
            for directory in directories { try? FileManager.default.removeItem(at: directory) }
        }
        return PidRegistry()
    }()

    private let lock = NSLock()
    private var processes: [SpawnedProcess] = []
    private var directories: Set<URL> = []

    func insert(_ process: SpawnedProcess) {
        lock.withLock {
            processes.removeAll { !$0.isRunning }
            processes.append(process)
        }
    }

    func insert(directory: URL) { _ = lock.withLock { directories.insert(directory) } }

    func remove(directory: URL) { _ = lock.withLock { directories.remove(directory) } }

    func snapshot() -> ([SpawnedProcess], Set<URL>) { lock.withLock { (processes, directories) } }
}

private func sendSignal(_ pid: Int32, _ signal: Int32) {
    #if canImport(Glibc)
    _ = Glibc.kill(pid, signal)
    #else
    _ = Darwin.kill(pid, signal)
    #endif
}

/// Waits (up to 5 s) until the state letter in /proc/PID/stat satisfies `condition` (Linux only;
/// elsewhere it returns at once).
private func waitForProcessState(_ pid: Int32, _ condition: (Character) -> Bool) {
    let deadline = Date().addingTimeInterval(5)
    while Date() < deadline {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return }
        // Format: "pid (comm) S ...": the state follows the last ')' and a space.
        let state = stat[stat.index(after: close)...].dropFirst().first
        if let state, condition(state) { return }
        usleep(1_000)
    }
}

/// A port that is free right now on 127.0.0.1.
///
/// Tries random ports *below* the kernel's ephemeral range first: a port handed out by `bind(0)` lies
/// inside that range, where an outgoing connection (a reconnecting client, redis-cli) may take it as
/// its local port while the server is down, so a restart on the same port could fail. Falls back to
/// `bind(0)`.
private func freeLocalPort() -> Int? {
    let ephemeralLow = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first }
        .flatMap { Int($0) } ?? 32768
    let low = 20000
    if ephemeralLow > low + 1000 {
        for _ in 0..<50 {
            let candidate = Int.random(in: low..<ephemeralLow)
            if LoopbackPort.probe(candidate) != nil { return candidate }
        }
    }
    return LoopbackPort.probe(0)
}

/// A running `redis-cli MONITOR` (``RedisServerProcess/monitor()``).
public final class RedisMonitor: Sendable {
    private let process: SpawnedProcess
    private let path: String

    init(process: SpawnedProcess, path: String) {
        self.process = process
        self.path = path
    }

    /// The commands seen so far, one per line as MONITOR prints them (`"evalsha" "…" "1" "key" …`).
    public func lines() -> [Substring] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
    }

    public func stop() {
        _ = process.terminateBlocking(grace: .seconds(5))
    }
}
