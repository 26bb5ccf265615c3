/// Decides when a connection is abusive and must be closed with 1008 (policy violation).
///
/// Two rules (protocol v1): more than `maxBadFrames` bad frames within `badFrameWindowMs`, or more than
/// `maxMessagesPerSecond` messages in each of `floodSeconds` consecutive seconds. A cursor flood below
/// that is not abuse: it is rate-limited per (user, doc) instead.
public struct AbuseMonitor: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxBadFrames = 10
        public var badFrameWindowMs: UInt64 = 10_000
        public var maxMessagesPerSecond = 1_000
        public var floodSeconds = 5
        public init() {}
    }

    public enum Verdict: Equatable, Sendable {
        case ok
        case tooManyBadFrames
        case flooding
    }

    public let limits: Limits
    private var badFrameTimes: [UInt64] = []
    private var currentSecond: UInt64 = 0
    private var messagesThisSecond = 0
    private var floodedSeconds = 0

    public init(limits: Limits) { self.limits = limits }

    /// Counts one received message (good or bad).
    public mutating func message(nowMs: UInt64) -> Verdict {
        let second = nowMs / 1000
        if second != currentSecond {
            // A quiet second in between breaks the streak.
            let over = messagesThisSecond > limits.maxMessagesPerSecond
            floodedSeconds = over && second == currentSecond + 1 ? floodedSeconds + 1 : 0
            currentSecond = second
            messagesThisSecond = 0
        }
        messagesThisSecond += 1
        if messagesThisSecond == limits.maxMessagesPerSecond + 1 && floodedSeconds + 1 >= limits.floodSeconds {
            return .flooding
        }
        return .ok
    }

    /// Counts one bad frame (invalid JSON, unknown type, bad fields).
    public mutating func badFrame(nowMs: UInt64) -> Verdict {
        badFrameTimes.append(nowMs)
        if nowMs >= limits.badFrameWindowMs {
            let windowStart = nowMs - limits.badFrameWindowMs
            badFrameTimes.removeAll { $0 <= windowStart }
        }
        return badFrameTimes.count > limits.maxBadFrames ? .tooManyBadFrames : .ok
    }
}
