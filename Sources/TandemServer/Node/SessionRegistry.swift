import NIOConcurrencyHelpers

/// The node's connections by session id, so a `?resume=` on this node can find the connection it
/// replaces, plus connection counts for admission control. Lock-protected: handshakes on any event loop
/// and the ops threads read it.
final class SessionRegistry: Sendable {
    private struct State {
        var bySession: [String: ClientConnection] = [:]
        var perUser: [String: Int] = [:]
        var total = 0
    }

    private let state = NIOLockedValueBox(State())

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
        state.withLockedValue { state in
            if state.bySession[connection.sessionID] === connection {
                state.bySession.removeValue(forKey: connection.sessionID)
            }
        }
    }

    func connection(for sessionID: String) -> ClientConnection? {
        state.withLockedValue { $0.bySession[sessionID] }
    }

    var allConnections: [ClientConnection] { state.withLockedValue { Array($0.bySession.values) } }
    var count: Int { state.withLockedValue { $0.bySession.count } }
}
