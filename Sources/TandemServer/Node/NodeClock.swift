import Foundation
import NIOCore

/// Time as the node uses it: a monotonic clock for limits, ticks and TTLs (immune to wall-clock steps),
/// and wall-clock milliseconds only where other machines compare it (commit timestamps).
struct NodeClock: Sendable {
    func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
    func nowMs() -> UInt64 { nowNanos() / 1_000_000 }
    func wallMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}
