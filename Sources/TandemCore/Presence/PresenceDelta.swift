/// The presence changes of one document in one tick, as every subscriber receives them:
/// `{"t":"presence","doc":D,"joined":[ENTRY…],"updated":[ENTRY…],"left":[sid…]}`.
///
/// Built and encoded once per doc per tick; the same bytes go to every subscriber. The structured form is
/// kept so a slow consumer can merge deltas it could not receive yet instead of queueing them.
public final class PresenceDelta: Sendable {
    public let doc: String
    public let joined: [PresenceEntry]
    public let updated: [PresenceEntry]
    public let left: [String]
    /// The complete message, ready to send as a text frame.
    public let encoded: [UInt8]

    public init(doc: String, joined: [PresenceEntry], updated: [PresenceEntry], left: [String]) {
        self.doc = doc
        self.joined = joined
        self.updated = updated
        self.left = left
        self.encoded = ServerMessage.presenceDelta(doc: doc, joined: joined, updated: updated, left: left)
    }

    public var isEmpty: Bool { joined.isEmpty && updated.isEmpty && left.isEmpty }
}

/// Presence a client has not received yet because its socket is backed up, merged so that memory is
/// bounded by the number of sessions in the doc, not by how long the client stalls (latest state wins).
public struct PendingPresence: Sendable {
    private enum Change {
        /// The client has not seen this session before the first pending change (`knew` false) or has.
        case present(PresenceEntry, knew: Bool)
        /// Gone. Always sent as `left`, even after a `joined` that is still pending: `joined` entries
        /// are upserts, so the client may already know the session from its `joined` list, and a
        /// join + leave that cancelled out left it a ghost (found by Fuzz/fuzz-presence). A `left` of
        /// a session the client does not know is a no-op.
        case absent(knew: Bool)
    }

    private var changes: [String: Change] = [:]
    private var order: [String] = []

    public init() {}

    public var isEmpty: Bool { changes.isEmpty }

    public mutating func merge(_ delta: PresenceDelta) {
        for entry in delta.joined { record(entry.sid, entry, knewIfNew: false) }
        for entry in delta.updated { record(entry.sid, entry, knewIfNew: true) }
        for sid in delta.left { record(sid, nil, knewIfNew: true) }
    }

    private mutating func record(_ sid: String, _ entry: PresenceEntry?, knewIfNew: Bool) {
        let knew: Bool
        switch changes[sid] {
        case .present(_, let k)?, .absent(let k)?: knew = k
        case nil:
            knew = knewIfNew
            order.append(sid)
        }
        changes[sid] = entry.map { .present($0, knew: knew) } ?? .absent(knew: knew)
    }

    /// The merged delta (nil if everything cancelled out), clearing the pending state.
    public mutating func drain(doc: String) -> PresenceDelta? {
        var joined: [PresenceEntry] = []
        var updated: [PresenceEntry] = []
        var left: [String] = []
        for sid in order {
            switch changes[sid] {
            case .present(let entry, let knew)?: if knew { updated.append(entry) } else { joined.append(entry) }
            case .absent?: left.append(sid)
            case nil: break
            }
        }
        changes.removeAll(keepingCapacity: false)
        order.removeAll(keepingCapacity: false)
        let delta = PresenceDelta(doc: doc, joined: joined, updated: updated, left: left)
        return delta.isEmpty ? nil : delta
    }
}
