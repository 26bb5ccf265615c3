import Foundation

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
    // @unchecked: `lock` protects `process`; every other stored property is an immutable `let`.

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
    private var process: SpawnedProcess?

    /// Starts a server and waits (up to 10 s) until it answers `PING`.
    /// - Parameters:
    ///   - extraArguments: More `redis-server` options, e.g. `["--requirepass", "secret"]`
    ///     (a `--requirepass` is also used by ``command(_:)``).
    ///   - unixSocket: Also listen on a unix socket in the temporary folder (see ``unixSocketPath``).
    public init(extraArguments: [String] = [], unixSocket: Bool = false) throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tandem-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
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
                if Self.waitUntilAnswering(child, port: candidate, deadline: Date().addingTimeInterval(10)) {
                    port = candidate
                    process = child
                    return
                }
                Self.reap(child, signal: SIGKILL, wait: 10)
                lastError = StartError(description: "redis-server did not answer PING on port \(candidate)")
            } catch {
                lastError = error
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// The running server's process id, if one is running.
    public var pid: Int32? {
        lock.withLock { process?.isRunning == true ? process?.pid : nil }
    }

    /// (Re)starts the server on the same port and waits until it answers. Does nothing if it runs.
    /// Retries for up to 10 s when the port is still briefly taken.
    public func start() throws {
        if pid != nil { return }
        let deadline = Date().addingTimeInterval(10)
        while true {
            let child = try Self.launch(
                port: port, directory: directory, unixSocketPath: unixSocketPath, extraArguments: extraArguments
            )
            if Self.waitUntilAnswering(child, port: port, deadline: deadline) {
                lock.withLock { process = child }
                return
            }
            Self.reap(child, signal: SIGKILL, wait: 10)
            if Date() >= deadline {
                throw StartError(description: "redis-server on port \(port) did not answer PING; see \(logPath)")
            }
            usleep(50_000)
        }
    }

    /// Stops the server gracefully (SIGCONT in case it is paused, then SIGTERM) and waits for it to
    /// exit, falling back to SIGKILL after 5 s.
    public func stop() {
        guard let pid else { return }
        sendSignal(pid, SIGCONT)
        if !terminate(signal: SIGTERM, wait: 5) {
            terminate(signal: SIGKILL)
        }
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
                Self.executable("redis-cli"), ["-p", "\(port)"] + cliAuthArguments + arguments, stdout: output)
        else { return "" }
        if !cli.waitForExit(timeout: 10) {
            cli.signal(SIGKILL)
            _ = cli.waitForExit(timeout: 10)
        }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: - Private

    private var logPath: String { directory.appendingPathComponent("redis.log").path }

    private static func launch(
        port: Int, directory: URL, unixSocketPath: String?, extraArguments: [String]
    ) throws -> SpawnedProcess {
        var arguments = [
            "--port", "\(port)",
            "--bind", "127.0.0.1",
            "--dir", directory.path,
            "--logfile", directory.appendingPathComponent("redis.log").path,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]
        if let unixSocketPath {
            arguments += ["--unixsocket", unixSocketPath, "--unixsocketperm", "700"]
        }
        arguments += extraArguments
        return try SpawnedProcess(executable("redis-server"), arguments, stdout: nil)
    }

    /// Polls with `PING` over a raw socket until the server answers `+PONG`, it exits, or `deadline`.
    private static func waitUntilAnswering(_ child: SpawnedProcess, port: Int, deadline: Date) -> Bool {
        while Date() < deadline {
            if !child.isRunning { return false }
            if pingAnswers(port: port) { return true }
            usleep(10_000)
        }
        return false
    }

    /// Sends `signal` to the current server and waits up to `wait` seconds for it to be reaped.
    @discardableResult
    private func terminate(signal: Int32, wait: TimeInterval = 10) -> Bool {
        guard let child = lock.withLock({ process }) else { return true }
        guard Self.reap(child, signal: signal, wait: wait) else { return false }
        lock.withLock { if process === child { process = nil } }
        return true
    }

    /// Sends `signal` to `child` and waits up to `wait` seconds for it to be reaped.
    @discardableResult
    private static func reap(_ child: SpawnedProcess, signal: Int32, wait: TimeInterval) -> Bool {
        child.signal(signal)
        return child.waitForExit(timeout: wait)
    }

    private static func executable(_ name: String) -> String {
        for directory in ["/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return "/usr/bin/\(name)"
    }
}

// MARK: - Processes and sockets

/// A child started with `posix_spawn` rather than Foundation's `Process`.
///
/// `Process` spawns from whatever thread calls it, and the child inherits that thread's signal mask:
/// from a Dispatch worker thread (where async tests run) SIGTERM arrives blocked, so redis-server would
/// ignore a graceful stop. Here the mask is cleared and the default dispositions are restored.
/// Children still running when the test process exits are SIGKILLed by an `atexit` hook.
private final class SpawnedProcess: @unchecked Sendable {
    // @unchecked: `lock` protects `exited`; `pid` is immutable.
    let pid: pid_t
    private let lock = NSLock()
    private var exited = false

    init(_ path: String, _ arguments: [String], stdout: String?) throws {
        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t?
        var attributes: posix_spawnattr_t?
        #else
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        #if os(Linux)
        // Other threads' descriptors (say a socket opened without FD_CLOEXEC) must not leak into the
        // child: a long-lived redis-server holding a copy would keep that connection open.
        // glibc ≥ 2.34 has the call, but Swift's Glibc module does not declare it, so look it up.
        if let closeFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(closeFrom, to: CloseFrom.self)(&actions, 3)
        }
        #endif
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard status == 0 else {
            throw RedisServerProcess.StartError(description: "cannot start \(path): error \(status)")
        }
        self.pid = pid
        SpawnedProcess.unreaped.insert(pid)
    }

    /// Whether the child has not exited yet (reaps it once it has; a stopped child is still running).
    var isRunning: Bool {
        lock.withLock {
            if !exited {
                var status: Int32 = 0
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid || (result == -1 && errno == ECHILD) {
                    exited = true
                    SpawnedProcess.unreaped.remove(pid)
                }
            }
            return !exited
        }
    }

    /// Sends `signal` unless the child was already reaped (so a recycled pid is never hit: an unreaped
    /// child keeps its pid).
    func signal(_ signal: Int32) {
        lock.withLock {
            if !exited { sendSignal(pid, signal) }
        }
    }

    /// Polls until the child has exited or `timeout` seconds pass; returns whether it exited.
    func waitForExit(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning {
            if Date() >= deadline { return false }
            usleep(1_000)
        }
        return true
    }

    /// Children not reaped yet, SIGKILLed at exit.
    private static var unreaped: PidRegistry { PidRegistry.shared }
}

/// Pids of children still running, killed by an `atexit` hook if the test process ends without stopping
/// them (a test failed before its `stop()`, or a server object leaked).
private final class PidRegistry: @unchecked Sendable {
    // @unchecked: `lock` protects `pids`.
    static let shared: PidRegistry = {
        atexit {
            for pid in PidRegistry.shared.snapshot() { sendSignal(pid, SIGKILL) }
        }
        return PidRegistry()
    }()

    private let lock = NSLock()
    private var pids: Set<pid_t> = []

    func insert(_ pid: pid_t) { _ = lock.withLock { pids.insert(pid) } }
    func remove(_ pid: pid_t) { _ = lock.withLock { pids.remove(pid) } }
    func snapshot() -> Set<pid_t> { lock.withLock { pids } }
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
            if bindLoopback(port: candidate) != nil { return candidate }
        }
    }
    return bindLoopback(port: 0)
}

/// Binds a TCP socket to 127.0.0.1:`port` (0 = any), closes it, and returns the port it got.
private func bindLoopback(port: Int) -> Int? {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var address = loopbackAddress(port: port)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0 else { return nil }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { return nil }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Connects to 127.0.0.1:`port`, sends an inline `PING` and checks for an answer (200 ms timeouts):
/// `+PONG`, or `-NOAUTH` from a server started with `--requirepass`.
private func pingAnswers(port: Int) -> Bool {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = loopbackAddress(port: port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { return false }
    let request = Array("PING\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return false }
    var reply = [UInt8](repeating: 0, count: 64)
    let count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    guard count > 0 else { return false }
    let text = String(decoding: reply[0..<count], as: UTF8.self)
    return text.hasPrefix("+PONG") || text.hasPrefix("-NOAUTH")
}

private func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}
