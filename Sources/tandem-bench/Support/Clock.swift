#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bench's one time base: CLOCK_MONOTONIC in nanoseconds, the same clock `NIODeadline` uses, so a
/// send time put into a message and a receipt time taken in a callback on another thread are comparable.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Wall-clock seconds since 1970 (for reports only).
func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Sleeps until the monotonic clock reaches `deadline` (ns).
func sleep(untilNanos deadline: UInt64) async {
    let now = monotonicNanos()
    guard deadline > now else { return }
    try? await Task.sleep(nanoseconds: deadline - now)
}

func sleep(seconds: Double) async {
    guard seconds > 0 else { return }
    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
}

extension UInt64 {
    /// Nanoseconds as milliseconds.
    var ms: Double { Double(self) / 1e6 }
}
