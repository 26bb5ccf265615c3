#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit (RLIMIT_NOFILE). Every client socket, pending handshake and ops
/// connection is a file descriptor; with the common default soft limit of 1,024 a node could hold about a
/// thousand sockets whatever `--max-connections` says, and then stops accepting (EMFILE) — clients and
/// health checks alike. Servers raise the soft limit to the hard limit at start-up (as Go's runtime and
/// nginx's `worker_rlimit_nofile` do); the hard limit is the operator's to set.
public enum FileDescriptorLimit {
    /// The current soft and hard limits.
    public static func current() -> (soft: UInt64, hard: UInt64) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard limit (at most `cap`: an "unlimited" hard limit is not a number of
    /// descriptors the kernel will hand out). Returns the soft limit before and after.
    @discardableResult
    public static func raiseToHardLimit(cap: UInt64 = 1 << 20) -> (before: UInt64, after: UInt64) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        let before = UInt64(limit.rlim_cur)
        let target = min(UInt64(limit.rlim_max), cap)
        guard target > before else { return (before, before) }
        limit.rlim_cur = rlim_t(target)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (before, before) }
        return (before, target)
    }
}
