#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Time as every Tandem module reads it (the node, the Redis client, the bench): a monotonic clock for
/// limits, ticks, deadlines and latencies (immune to wall-clock steps), and the wall clock only where
/// other machines compare it (commit timestamps) or people read it (reports).
///
/// The monotonic clock is `CLOCK_MONOTONIC`, the clock SwiftNIO's `NIODeadline.now()` reads on Linux, so a
/// time taken here and one taken from NIO on another thread are comparable. A value type with no state, so
/// a component can be handed one (and a test, later, another).
public struct TandemClock: Sendable {
    public init() {}

    /// Nanoseconds on the monotonic clock.
    @inline(__always)
    public func nowNanos() -> UInt64 { Self.monotonicNanos() }

    /// Milliseconds on the monotonic clock.
    public func nowMs() -> UInt64 { Self.monotonicNanos() / 1_000_000 }

    /// Milliseconds since 1970 on the wall clock.
    public func wallMs() -> UInt64 { UInt64(Self.wallSeconds() * 1000) }

    /// Nanoseconds on the monotonic clock (for code that keeps no clock value).
    @inline(__always)
    public static func monotonicNanos() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Seconds since 1970 on the wall clock.
    public static func wallSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
