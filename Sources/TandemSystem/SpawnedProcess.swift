#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with `posix_spawn` and a clean signal state: the one way Tandem starts
/// programs (the embedded redis-server; redis-server, redis-cli and `tandem` in the tests).
///
/// Foundation's `Process` passes on the spawning thread's signal mask, and the threads of a Swift program
/// (cooperative pool, Dispatch) block most signals, so a child started that way never receives SIGTERM.
/// Here the mask is emptied and every signal gets its default action; descriptors other than 0–2 are
/// not inherited (a long-lived child holding a copy of some socket would keep that connection open).
///
/// The child is reaped by whoever asks for its status first (`exitStatus`, `isRunning`, the waits), and
/// until then keeps its pid, so `signal` can never hit a recycled pid.
public final class SpawnedProcess: @unchecked Sendable {
    // @unchecked Sendable: `pid` is immutable; `reaped` is only touched under `lock`.

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

    /// Where the child's standard output and error go.
    public enum Output: Sendable {
        case discard
        /// To this file, created if needed (`append` keeps what it holds); standard error too unless
        /// `standardError` is false (then it is discarded: a tool's warnings stay out of its answer).
        case file(path: String, append: Bool, standardError: Bool = true)
    }

    public struct SpawnError: Error, CustomStringConvertible {
        public var description: String
    }

    public let pid: pid_t
    public let executable: String
    private let lock = Lock()
    private var reaped: ExitStatus?

    /// Starts `executable` (a path) at once.
    ///
    /// - Parameters:
    ///   - environment: The child's whole environment; nil passes on this process's.
    ///   - workingDirectory: The child's current directory; nil keeps this process's.
    ///   - newProcessGroup: Put the child in a process group of its own (pgid = pid), so
    ///     `signalGroup` reaches whatever it starts.
    public init(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        workingDirectory: String? = nil, output: Output = .discard, newProcessGroup: Bool = false
    ) throws(SpawnError) {
        self.executable = executable
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
        switch output {
        case .discard:
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .file(let path, let append, let standardError):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
            if standardError {
                posix_spawn_file_actions_adddup2(&actions, 1, 2)
            } else {
                posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            }
        }
        #if os(Linux)
        // glibc ≥ 2.34 (closefrom) and ≥ 2.29 (chdir) have these, but Swift's Glibc module does not
        // declare them, so look them up.
        if let closeFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(closeFrom, to: CloseFrom.self)(&actions, 3)
        }
        if let workingDirectory {
            guard let chdir = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else {
                throw SpawnError(description: "cannot start \(executable) in \(workingDirectory): no posix_spawn_file_actions_addchdir_np")
            }
            typealias ChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
            _ = unsafeBitCast(chdir, to: ChangeDirectory.self)(&actions, workingDirectory)
        }
        #else
        if let workingDirectory { posix_spawn_file_actions_addchdir_np(&actions, workingDirectory) }
        #endif

        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid: pid_t = 0
        let result = envp.map { posix_spawn(&pid, executable, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// How the child ended; nil while it runs (a stopped child still runs).
    public var exitStatus: ExitStatus? {
        lock.withLock {
            if let reaped { return reaped }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                let signal = status & 0x7f
                reaped = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
            } else if result < 0 && errno == ECHILD {
                reaped = .exited(-1)  // reaped elsewhere: gone, status unknown
            }
            return reaped
        }
    }

    public var isRunning: Bool { exitStatus == nil }

    /// Sends `signal` to the child, unless it has been reaped.
    public func signal(_ signal: Int32) {
        lock.withLock { if reaped == nil { _ = kill(pid, signal) } }
    }

    /// Sends `signal` to the child's process group (see `newProcessGroup`), even once the child itself has
    /// ended: whatever it left running in its group goes too. While the group has members its id cannot be
    /// reused, so this cannot hit a stranger.
    public func signalGroup(_ signal: Int32) {
        _ = kill(-pid, signal)
    }

    /// How often the waits look at the child.
    static let pollInterval: Duration = .milliseconds(10)

    /// Waits until the child has ended, at most `timeout`; returns its status, or nil if it still runs.
    /// Suspends between looks, so it never holds a thread.
    public func waitForExit(timeout: Duration) async -> ExitStatus? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            if let status = exitStatus { return status }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: Self.pollInterval)
        }
    }

    /// `waitForExit` for synchronous callers (a `deinit`, test helpers with a blocking API): blocks the
    /// calling thread, so never call it from async code.
    public func waitForExitBlocking(timeout: Duration) -> ExitStatus? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            if let status = exitStatus { return status }
            if ContinuousClock.now >= deadline { return nil }
            usleep(UInt32(Self.pollInterval / .microseconds(1)))
        }
    }

    /// Ends the child: `signal`, then SIGKILL if it is still running after `grace`. Returns how it ended.
    @discardableResult
    public func terminate(signal: Int32 = SIGTERM, grace: Duration) async -> ExitStatus? {
        self.signal(signal)
        if let status = await waitForExit(timeout: grace) { return status }
        self.signal(SIGKILL)
        return await waitForExit(timeout: .seconds(10))
    }

    /// `terminate` for synchronous callers; blocks the calling thread.
    @discardableResult
    public func terminateBlocking(signal: Int32 = SIGTERM, grace: Duration) -> ExitStatus? {
        self.signal(signal)
        if let status = waitForExitBlocking(timeout: grace) { return status }
        self.signal(SIGKILL)
        return waitForExitBlocking(timeout: .seconds(10))
    }

    /// The path of `program`: itself when it contains a `/`, else the first executable of that name on
    /// `PATH` or in the usual system directories. Nil when there is none.
    public static func locate(_ program: String, path: String? = nil) -> String? {
        if program.contains("/") { return program }
        let searchPath = path ?? getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        let directories = searchPath.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/opt/homebrew/bin"]
        return directories.map { "\($0)/\(program)" }.first { access($0, X_OK) == 0 }
    }
}

/// A pthread mutex (Foundation-free, so this module needs nothing but the C library).
final class Lock: @unchecked Sendable {
    // @unchecked Sendable: the mutex is the synchronisation.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
