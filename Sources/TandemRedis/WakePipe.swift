#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A non-blocking pipe that lets any thread interrupt the owner thread's `poll()`.
///
/// Both ends are set once in `init` and closed in `deinit`; `write(2)` and `read(2)` are thread-safe,
/// so this is `Sendable` without a lock. Callers only `wake()`; the owner thread only `drain()`s.
final class WakePipe: Sendable {
    let readEnd: Int32
    private let writeEnd: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            fatalError("TandemRedis: cannot create a wake pipe (errno \(errno))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Makes the owner thread's next (or current) `poll()` return. If the pipe is full a wake-up is
    /// already pending, so EAGAIN is fine to ignore.
    func wake() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Empties the pipe. Called by the owner thread *before* it takes queued work, so a wake-up
    /// written after the take is never lost.
    func drain() {
        var buffer: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        while withUnsafeMutableBytes(of: &buffer, { read(readEnd, $0.baseAddress, $0.count) }) > 0 {}
    }
}
