import TandemSystem

/// The bench's time base: Tandem's one clock (TandemSystem's `TandemClock`), CLOCK_MONOTONIC in
/// nanoseconds, the same clock `NIODeadline` uses, so a send time put into a message and a receipt time
/// taken in a callback on another thread are comparable.
@inline(__always)
func monotonicNanos() -> UInt64 {
    TandemClock.monotonicNanos()
}

/// Wall-clock seconds since 1970 (for reports only).
func wallClockSeconds() -> Double {
    TandemClock.wallSeconds()
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
