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

extension PresenceMode {
    /// The mode's position in `allCases` (for per-mode counters kept in arrays).
    public var index: Int {
        switch self {
        case .full: 0
        case .hidden: 1
        case .none: 2
        }
    }
}
