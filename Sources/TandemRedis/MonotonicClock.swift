import TandemSystem

/// Nanoseconds on the monotonic clock: deadlines and round-trip times must not jump with wall-clock
/// adjustments. Tandem's one clock (TandemSystem's `TandemClock`), under the name this module's code uses.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    TandemClock.monotonicNanos()
}
