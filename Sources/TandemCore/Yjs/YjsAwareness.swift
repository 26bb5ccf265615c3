import TandemYjs

/// A room's awareness on one node (y-protocols awareness: per Yjs clientID a clock and a JSON state),
/// as presence: which connection or node owns each entry, what changed since the last tick (one
/// message for all of it), and what this node must write to Redis. Pure: no I/O, no time.
///
/// Rules beyond y-protocols', because a relay must not let one client rewrite another's presence:
/// an entry belongs to the connection that announced it first (or to the node it came from), and
/// only its owner changes it; a connection announces at most `maxClientsPerConnection` clientIDs.
struct YjsAwareness: Sendable {
    enum Owner: Hashable, Sendable {
        case member(ObjectIdentifier)
        case node(String)
    }

    struct Known: Sendable {
        var clock: UInt64
        var stateJSON: String
        var owner: Owner
    }

    /// One Yjs client per document per provider; a page with a few editors of the same room has a few.
    static let maxClientsPerConnection = 8

    private(set) var known: [UInt64: Known] = [:]
    /// Changed since the last `drain`, for this node's members.
    private var changed: [UInt64: YAwarenessUpdate.Entry] = [:]
    /// Changes of entries this node owns since the last `drain`, for Redis and the other nodes.
    private var ownChanges: [UInt64: YAwarenessUpdate.Entry] = [:]
    /// When each node that owns entries here was last heard of (its changes or its refresh heartbeat).
    private var heard: [String: UInt64] = [:]

    var hasChanges: Bool { !changed.isEmpty }
    /// Entries this node's connections own (live ones: not removals).
    var localCount: Int { known.values.filter { if case .member = $0.owner { $0.stateJSON != "null" } else { false } }.count }
    var hasRemote: Bool { known.values.contains { if case .node = $0.owner { true } else { false } } }

    /// What of a member's awareness update would change anything: its own entries with a newer clock (or
    /// a removal at the same clock, as y-protocols applies them) and new clientIDs up to the connection's
    /// limit. y-websocket's provider sends every change it hears back to the server, other clients'
    /// included: those echoes (another owner's entry at a clock already known, or a removal of an entry
    /// already gone) are dropped silently. `refused` counts the rest: another owner's entry with a newer
    /// clock (a takeover) and clientIDs beyond the limit.
    func admissible(_ entries: [YAwarenessUpdate.Entry], from member: ObjectIdentifier)
        -> (entries: [YAwarenessUpdate.Entry], refused: Int)
    {
        var accepted: [YAwarenessUpdate.Entry] = []
        var newClients = 0
        var refused = 0
        for entry in entries {
            if let current = known[entry.clientID] {
                let newer = entry.clock > current.clock || (entry.clock == current.clock && entry.isRemoval && current.stateJSON != "null")
                guard newer else { continue }
                guard current.owner == .member(member) else {
                    refused += 1
                    continue
                }
            } else {
                guard !entry.isRemoval else { continue }
                guard owned(by: .member(member)) + newClients < Self.maxClientsPerConnection else {
                    refused += 1
                    continue
                }
                newClients += 1
            }
            accepted.append(entry)
        }
        return (accepted, refused)
    }

    /// A member's awareness update; returns how many entries were refused (see `admissible`).
    @discardableResult
    mutating func receive(_ entries: [YAwarenessUpdate.Entry], from member: ObjectIdentifier) -> Int {
        let (accepted, refused) = admissible(entries, from: member)
        for entry in accepted { record(entry, owner: .member(member), own: true) }
        return refused
    }

    /// Another node's published changes (or its heartbeat: no entries).
    mutating func receive(_ entries: [YAwarenessUpdate.Entry], fromNode node: String, nowMs: UInt64) {
        heard[node] = nowMs
        for entry in entries {
            if let current = known[entry.clientID] {
                if case .member = current.owner { continue }
                guard entry.clock > current.clock || (entry.clock == current.clock && entry.isRemoval) else { continue }
            } else if entry.isRemoval {
                continue
            }
            record(entry, owner: .node(node), own: false)
        }
    }

    /// The member's socket closed: each of its entries is removed (clock + 1, state null), as
    /// y-websocket's server does.
    mutating func memberLeft(_ member: ObjectIdentifier) {
        removeAll(ownedBy: .member(member), own: true)
    }

    /// Nodes whose presence registration expired (dead): their entries are removed the same way.
    mutating func nodesGone(_ nodes: [String]) {
        for node in nodes {
            removeAll(ownedBy: .node(node), own: false)
            heard.removeValue(forKey: node)
        }
    }

    /// Nodes owning entries here that have not been heard of for `ttlMs`: each node with entries in a
    /// room publishes a heartbeat every TTL/4, so these are dead or cut off. (Redis's own record of them
    /// expires with them, which is why the sweep alone cannot tell when the last node of a room dies.)
    func silentNodes(nowMs: UInt64, ttlMs: UInt64) -> [String] {
        let owners = Set(known.values.compactMap { known -> String? in
            if case .node(let node) = known.owner, known.stateJSON != "null" { return node } else { return nil }
        })
        return owners.filter { node in heard[node].map { nowMs > $0 + ttlMs } ?? true }.sorted()
    }

    /// Everything changed since the last drain, for this node's members (encoded once), and this node's
    /// own changes for Redis and the other nodes. Removed entries are forgotten after.
    mutating func drain() -> (broadcast: YAwarenessUpdate?, own: [YAwarenessUpdate.Entry]) {
        defer {
            changed.removeAll(keepingCapacity: true)
            ownChanges.removeAll(keepingCapacity: true)
        }
        guard !changed.isEmpty else { return (nil, []) }
        let broadcast = YAwarenessUpdate(entries: changed.values.sorted { $0.clientID < $1.clientID })
        let own = ownChanges.values.sorted { $0.clientID < $1.clientID }
        for (clientID, entry) in changed where entry.isRemoval { known.removeValue(forKey: clientID) }
        return (broadcast, own)
    }

    /// Every live entry (for a new member and for query-awareness).
    func states() -> YAwarenessUpdate {
        YAwarenessUpdate(
            entries: known.filter { $0.value.stateJSON != "null" }
                .map { .init(clientID: $0.key, clock: $0.value.clock, stateJSON: $0.value.stateJSON) }
                .sorted { $0.clientID < $1.clientID })
    }

    /// Entries this node owns, for a refresh of its Redis hash.
    func ownEntries() -> [YAwarenessUpdate.Entry] {
        known.compactMap { clientID, known in
            guard case .member = known.owner, known.stateJSON != "null" else { return nil }
            return .init(clientID: clientID, clock: known.clock, stateJSON: known.stateJSON)
        }
    }

    private func owned(by owner: Owner) -> Int { known.values.filter { $0.owner == owner }.count }

    private mutating func record(_ entry: YAwarenessUpdate.Entry, owner: Owner, own: Bool) {
        known[entry.clientID] = Known(clock: entry.clock, stateJSON: entry.stateJSON, owner: owner)
        changed[entry.clientID] = entry
        if own { ownChanges[entry.clientID] = entry }
    }

    private mutating func removeAll(ownedBy owner: Owner, own: Bool) {
        for (clientID, current) in known where current.owner == owner && current.stateJSON != "null" {
            record(.init(clientID: clientID, clock: current.clock + 1, stateJSON: "null"), owner: owner, own: own)
        }
    }
}
