import Foundation

/// A child process started with a clean signal state.
///
/// Foundation's `Process` passes on the spawning thread's signal mask, and the threads of a Swift
/// program (cooperative pool, Dispatch) block most signals, so a child started that way never receives
/// SIGTERM. `posix_spawn` with an empty mask and default dispositions gives the child normal signals.
final class SpawnedProcess: @unchecked Sendable {
    // `pid` is set once in init; `exited` is only changed by `wait`, called from one task.
    let pid: pid_t
    private var exited = false

    init(executable: String, arguments: [String], stdoutPath: String? = nil) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let output = stdoutPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw EmbeddedRedisError(message: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// True while the child has not exited (reaps it if it has).
    var isRunning: Bool {
        if exited { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid || result < 0 { exited = true }
        return !exited
    }

    func signal(_ signal: Int32) { if !exited { kill(pid, signal) } }

    /// Waits for the child to exit, at most `timeout` seconds; then kills it.
    func wait(timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { usleep(10_000) }
        if isRunning {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            exited = true
        }
    }
}
