import NIOConcurrencyHelpers
import NIOCore

/// The node's connections by session id, so a `?resume=` on this node can find the connection it
/// replaces, plus connection counts for admission control. Lock-protected: handshakes on any event loop
/// and the ops threads read it.
final class SessionRegistry: Sendable {
    private struct State {
        var bySession: [String: ClientConnection] = [:]
        var perUser: [String: Int] = [:]
        var total = 0
        /// Owners of sessions whose connection ended recently, with when it ended. A lost socket's presence
        /// outlives the connection (for the presence TTL), so until then a `?resume=` of the session must
        /// still be refused to other users; without this record the session looked unowned once its
        /// connection was gone and anyone could take its id.
        var ended: [String: (user: String, atNanos: UInt64)] = [:]
        /// `ended` in the order entries were made, for pruning (`endedHead` is the oldest live one).
        var endedOrder: [(sid: String, atNanos: UInt64)] = []
        var endedHead = 0
    }

    /// How long an ended session's owner is remembered (well beyond any presence TTL).
    static let endedRetentionNanos: UInt64 = 60_000_000_000

    private let state = NIOLockedValueBox(State())
    private let clock = NodeClock()
    /// `endedOrder` is compacted once this many entries at its front are dead (and they are most of it).
    static let compactionThreshold = 1024

    /// Counts a handshake in progress or an open connection of `user`, unless a limit is reached.
    /// Returns the rejection reason, or nil when the slot was taken (release it with `releaseSlot`).
    func reserveSlot(user: String, maxTotal: Int, maxPerUser: Int) -> AdmissionRejection? {
        state.withLockedValue { state in
            if state.total >= maxTotal { return .nodeFull }
            if state.perUser[user, default: 0] >= maxPerUser { return .userFull }
            state.total += 1
            state.perUser[user, default: 0] += 1
            return nil
        }
    }

    func releaseSlot(user: String) {
        state.withLockedValue { state in
            state.total -= 1
            let count = state.perUser[user, default: 1] - 1
            state.perUser[user] = count > 0 ? count : nil
        }
    }

    /// Registers an open connection; returns the connection it replaces (same session id), if any.
    func register(_ connection: ClientConnection) -> ClientConnection? {
        state.withLockedValue { $0.bySession.updateValue(connection, forKey: connection.sessionID) }
    }

    func remove(_ connection: ClientConnection) {
        let now = clock.nowNanos()
        state.withLockedValue { state in
            if state.bySession[connection.sessionID] === connection {
                state.bySession.removeValue(forKey: connection.sessionID)
                state.ended[connection.sessionID] = (connection.identity.user, now)
                state.endedOrder.append((connection.sessionID, now))
            }
            Self.pruneEnded(&state, now: now)
        }
    }

    /// The open connection of a session on this node, if any.
    func connection(of sessionID: String) -> ClientConnection? {
        state.withLockedValue { $0.bySession[sessionID] }
    }

    /// The user a session belongs to on this node: its open connection's, or the one whose connection
    /// ended within the last minute. Nil when this node does not know the session.
    func owner(of sessionID: String) -> String? {
        let now = clock.nowNanos()
        return state.withLockedValue { state in
            if let open = state.bySession[sessionID] { return open.identity.user }
            guard let ended = state.ended[sessionID], now < ended.atNanos + Self.endedRetentionNanos else { return nil }
            return ended.user
        }
    }

    private static func pruneEnded(_ state: inout State, now: UInt64) {
        while state.endedHead < state.endedOrder.count,
            now >= state.endedOrder[state.endedHead].atNanos + endedRetentionNanos
        {
            let (sid, at) = state.endedOrder[state.endedHead]
            if state.ended[sid]?.atNanos == at { state.ended.removeValue(forKey: sid) }
            state.endedHead += 1
        }
        if state.endedHead > compactionThreshold && state.endedHead * 2 > state.endedOrder.count {
            state.endedOrder.removeFirst(state.endedHead)
            state.endedHead = 0
        }
    }

    var allConnections: [ClientConnection] { state.withLockedValue { Array($0.bySession.values) } }
    var count: Int { state.withLockedValue { $0.bySession.count } }
}
