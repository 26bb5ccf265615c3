/// How a session takes part in a doc's presence, chosen on `join` with `"presence"` (issue 13).
///
/// - `full` (the default): shown to everyone, receives everyone's presence.
/// - `hidden`: receives everyone else's presence but is shown to no one — not in deltas, not in `joined`
///   lists, not in the status page's member counts, not in Redis (so no other node sees it either). For
///   observers and privacy.
/// - `none`: no presence either way: receives no presence deltas at all (a `joined` lists no one) and is
///   shown to no one. For bots and back-end services that only sync.
///
/// Neither `hidden` nor `none` sessions may set a presence state (`presence_disabled`).
public enum PresenceMode: String, Sendable, CaseIterable {
    case full
    case hidden
    case none

    /// Whether others see the session (it has a presence entry, locally and in Redis).
    public var isShown: Bool { self == .full }
    /// Whether the session receives other sessions' presence.
    public var receivesPresence: Bool { self != .none }
}

/// A count per presence mode, without an array (it is summed on every tick).
public struct PresenceModeCounts: Sendable, Equatable {
    public var full = 0
    public var hidden = 0
    public var none = 0

    public init() {}

    public subscript(mode: PresenceMode) -> Int {
        get {
            switch mode {
            case .full: full
            case .hidden: hidden
            case .none: none
            }
        }
        set {
            switch mode {
            case .full: full = newValue
            case .hidden: hidden = newValue
            case .none: none = newValue
            }
        }
    }

    public static func + (a: PresenceModeCounts, b: PresenceModeCounts) -> PresenceModeCounts {
        var sum = a
        sum.full += b.full
        sum.hidden += b.hidden
        sum.none += b.none
        return sum
    }
}
