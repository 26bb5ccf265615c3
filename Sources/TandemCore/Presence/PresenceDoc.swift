/// Settings of the presence engine (from `tandem serve` flags).
public struct PresenceSettings: Sendable {
    public var nodeID: String
    /// How long a session outlives its last refresh (`--presence-ttl-ms`).
    public var ttlMs: UInt64 = 2000
    /// How often a node re-announces its sessions' deadline in Redis; a quarter of the TTL leaves room for
    /// three missed refreshes before anything expires.
    public var refreshIntervalMs: UInt64 = 500
    /// Accepted presence updates per (user, doc) per second (`--presence-rate`).
    public var rate: Double = 20
    /// Updates a user may send back to back before the rate applies (absorbs network jitter).
    public var burst: Double = 5
    /// Above this many viewers a doc is "large" (`--large-doc-viewers`).
    public var largeDocViewers: Int = 100
    /// Viewers of large docs get membership changes at most this often.
    public var viewerFlushIntervalMs: UInt64 = 1000
    /// The tick (`--tick-ms`): bounds how often another node's deltas are forwarded at once (see `receive`).
    public var tickMs: UInt64 = 50
    /// While no other node listens on the doc (`PresenceDoc.alone`), a tick writes its changed states to
    /// Redis at most this often (`--presence-alone-write-ms`; 0: every tick). The latest state is always
    /// the one written (the changes wait, they are not dropped); joins, leaves, refreshes and full
    /// rewrites are written at once.
    public var aloneWriteIntervalMs: UInt64 = 0

    public init(nodeID: String) { self.nodeID = nodeID }
}

/// What a doc's presence state wants written to Redis (and published to the other nodes) after a tick.
public struct PresenceWrite: Sendable, Equatable {
    /// Entries of this node's sessions to (re)write.
    public var upserts: [PresenceEntry]
    /// This node's sessions to delete.
    public var deletes: [String]
    /// Replace everything this node has in the doc with `upserts` (after an outage or expiry).
    public var full: Bool
    /// Renew the node's deadline for the doc (TTL refresh), independent of any state change.
    public var refresh: Bool
    /// The node-to-node message to publish from the same script, if anyone needs to hear of it.
    public var publish: NodeMessage?
}

/// The outcome of one tick of one doc.
public struct PresenceTick: Sendable {
    /// Changes for editors (and for viewers while the doc is not large).
    public var delta: PresenceDelta?
    /// Membership-only changes for viewers of a large doc (at most once per `viewerFlushIntervalMs`), or,
    /// when a doc stops being large, a catch-up that viewers get before `delta`.
    public var viewerDelta: PresenceDelta?
    /// Whether viewers receive `delta` (false while the doc is large).
    public var viewersGetDelta: Bool
    public var write: PresenceWrite?
    /// Sessions removed this tick because their TTL ran out (detached and not resumed).
    public var expired: Int
    /// Changed states this tick left for a later write (`PresenceSettings.aloneWriteIntervalMs`).
    public var writeDeferred = false
}

/// Why a presence update was or was not applied (the `result` label of tandem_presence_updates_total).
public enum PresenceUpdateOutcome: String, Sendable {
    case accepted
    /// Over the per-user rate: not applied now; the latest such state is applied once the rate allows.
    case rateLimited = "rate_limited"
    /// A viewer's state in a large doc: not broadcast.
    case suppressed
    /// The session is not in the doc.
    case notJoined = "not_joined"
    /// The session joined with `"presence":"hidden"` or `"none"`: it has no presence to set.
    case disabled
}

/// Presence of one document as one node sees it: a pure state machine, no I/O.
///
/// It merges this node's sessions with what other nodes publish, coalesces everything that changed
/// during a tick into one delta (latest state per session), decides what this node writes to Redis, and
/// corrects itself against Redis snapshots. The owner (a doc shard) feeds it events and performs the
/// actions it returns.
///
/// Inside, a session is a small integer handle into `sessions` (issue 14): everything the doc keeps of it
/// (its entry, what subscribers were told, its local state, its marks for the next tick and the next
/// write) is one slot, so an update hashes its session id once, where it comes in, instead of once per
/// map. Strings stay at the edges: session ids come in with messages and go out in deltas and writes. A
/// handle is freed only at a tick, once nothing in the doc refers to its session any more (no entry, no
/// announcement, no pending write, no mark), so a list that still holds it cannot reach another session.
public struct PresenceDoc {
    public let doc: String
    public let settings: PresenceSettings

    private struct LocalSession {
        /// The user's token bucket (`users`), held by the session while it is here.
        var user: Int
        /// Set while the session's socket is gone without a clean close: it may be resumed until then.
        var detachedUntilMs: UInt64?
        /// The latest update that arrived over the rate; applied once a token is free.
        var deferredState: PresenceState?
    }

    /// Marks a session carries until the tick, the write or the viewer flush that consumes them.
    private struct Marks: OptionSet {
        let rawValue: UInt16
        /// Changed since subscribers were last told (in `dirtyList`).
        static let dirty = Marks(rawValue: 1 << 0)
        /// To write to Redis (in `upsertList`).
        static let pendingUpsert = Marks(rawValue: 1 << 1)
        /// To delete from Redis (in `deleteList`).
        static let pendingDelete = Marks(rawValue: 1 << 2)
        /// A delete that must not be announced (the session now lives on another node).
        static let silentDelete = Marks(rawValue: 1 << 3)
        /// Handed out in a `joined` list before subscribers were told of it: if it leaves before the next
        /// tick, the delta must still say so, or the new subscriber keeps a ghost (in `listedList`).
        static let listedUnannounced = Marks(rawValue: 1 << 4)
        /// The converse: a list showed the session differently from what subscribers had been told —
        /// missing (gone for a moment: left, or removed by another node) or with another entry (replaced
        /// for a moment, e.g. by a Redis snapshot) — and it is back to the announced entry before the next
        /// tick. The tick then sees no change, so the delta lists it in `joined` again, or the new
        /// subscriber would never learn of it or keep the entry it was listed (found by Fuzz/fuzz-presence;
        /// in `listedList`).
        static let listedStale = Marks(rawValue: 1 << 5)
        /// Large doc: viewers were told of the session (membership-only flushes).
        static let viewerAnnounced = Marks(rawValue: 1 << 6)
        /// Large doc: listed to a joining viewer before a flush told viewers of it.
        static let listedToViewers = Marks(rawValue: 1 << 7)
        /// Large doc: missing from a list although viewers were told of it.
        static let listedAbsentToViewers = Marks(rawValue: 1 << 8)
        /// In `freeCandidates`.
        static let freeCandidate = Marks(rawValue: 1 << 9)
        /// In `touched` (one message of another node), for deduplication.
        static let touched = Marks(rawValue: 1 << 10)
        /// In `departedList`.
        static let departed = Marks(rawValue: 1 << 11)
    }

    /// Everything the doc knows of one session id (one slot of `sessions`).
    private struct Session {
        var sid: String
        /// The live entry, from any node (the view).
        var entry: PresenceEntry?
        /// The entry subscribers were last told of (what they believe is live). Whole entries, not
        /// versions: a session that leaves and re-joins within one tick, or an entry replaced by another
        /// node's with the same version, differs at an equal version (found by Fuzz/fuzz-presence).
        var announced: PresenceEntry?
        /// Set while the session is one of this node's.
        var local: LocalSession?
        /// The last version of a local session that left since the last tick. Other nodes (and the Redis
        /// hash) hold that version until the delete is published by the tick's write, and they only take
        /// newer versions: a session that re-joins before then must come back above it, not at version 1
        /// (found by Fuzz/fuzz-presence).
        var departedVersion: UInt64?
        /// The sequence number of the last event about the session (0: none since the last reconcile), so
        /// a Redis snapshot never overrides newer pub/sub news (see `reconcile`).
        var lastEvent: UInt64 = 0
        var marks: Marks = []

        init(sid: String) { self.sid = sid }

        /// Nothing refers to the session any more: its handle may go to another one.
        var isUnreferenced: Bool {
            entry == nil && announced == nil && local == nil && departedVersion == nil && lastEvent == 0
                && marks.subtracting(.freeCandidate).isEmpty
        }
    }

    /// A session's slot; freed slots are in `freeHandles` (their `sid` is empty).
    private var sessions: [Session] = []
    private var handles: [String: Int] = [:]
    private var freeHandles: [Int] = []
    /// Handles marked `dirty`, in the order they changed. May hold handles whose mark was taken off since
    /// (a forwarded message of another node): the tick skips them.
    private var dirtyList: [Int] = []
    /// Exactly the handles marked `pendingUpsert` / `pendingDelete` (a mark is taken off rarely: joins,
    /// leaves, takeovers, which remove the handle too).
    private var upsertList: [Int] = []
    private var deleteList: [Int] = []
    /// Handles that may carry `listedUnannounced` / `listedStale` (cleared at every tick).
    private var listedList: [Int] = []
    /// Handles that may carry a `departedVersion` (cleared at every tick).
    private var departedList: [Int] = []
    /// Sessions whose entry went away: freed at a tick once nothing refers to them.
    /// (Loops over these lists go by index: a debug build's array iterator allocated, and
    /// `PresenceAllocationTests` counts a debug build.)
    private var freeCandidates: [Int] = []
    private var localSessions = 0

    /// Token buckets per user (accepted updates per (user, doc)), by handle; a local session holds its
    /// user's (`LocalSession.user`). A user's bucket outlives its sessions, so leaving and joining again
    /// is no way around the rate; full ones are forgotten once there are many.
    private struct User {
        var name: String
        var bucket: TokenBucket?
        /// Local sessions holding the handle.
        var sessions: Int
    }
    private var users: [User] = []
    private var userHandles: [String: Int] = [:]
    private var freeUserHandles: [Int] = []
    private var bucketCount = 0

    /// Updates `offerUpdate` accepted (the status page's per-doc rate). Counted here, in the state an update
    /// changes anyway, rather than in the shard's per-doc stats: one access fewer per update (issue 14).
    public private(set) var acceptedUpdates: UInt64 = 0

    /// Sessions (from every node) by their entry's role, for the large-doc rule.
    public private(set) var viewerCount = 0
    public private(set) var isLarge = false
    private var needsFullWrite = true
    private var lastRefreshMs: UInt64?
    /// When the tick last handed a write over (for `aloneWriteIntervalMs`).
    private var lastWriteMs: UInt64 = 0
    /// Whether, as far as this node knows, no other node listens on the doc's channel: its last presence
    /// write was not published for want of listeners, and no other node's message arrived since (the
    /// shard sets it from the write's reply and clears it on any message of another node). While it
    /// holds, changed states are written at most every `aloneWriteIntervalMs` (issue 14).
    public var alone = false
    private var lastViewerFlushMs: UInt64 = 0
    /// Event sequence numbers, so a Redis snapshot never overrides newer pub/sub news (see `reconcile`).
    private var eventSeq: UInt64 = 0

    public init(doc: String, settings: PresenceSettings) {
        self.doc = doc
        self.settings = settings
    }

    // MARK: Queries

    /// Every live session in the doc, from every node (off the hot path: status, tests, shutdown).
    public var view: [String: PresenceEntry] {
        var view: [String: PresenceEntry] = [:]
        view.reserveCapacity(sessions.count)
        for index in sessions.indices { if let entry = sessions[index].entry { view[entry.sid] = entry } }
        return view
    }

    /// The live entry of `sid`.
    public func entry(of sid: String) -> PresenceEntry? { handles[sid].flatMap { sessions[$0].entry } }

    public var localCount: Int { localSessions }
    public func isLocal(_ sid: String) -> Bool { handles[sid].map { sessions[$0].local != nil } ?? false }
    public func isDetached(_ sid: String) -> Bool {
        handles[sid].map { sessions[$0].local?.detachedUntilMs != nil } ?? false
    }

    /// True when nothing here needs the doc any more (no local sessions, nothing left to write).
    public var isIdle: Bool { localSessions == 0 && deleteList.isEmpty && upsertList.isEmpty }

    /// The handle of `sid` while the doc knows it (tests: handles are reused once free).
    func handle(of sid: String) -> Int? { handles[sid] }
    /// Slots ever allocated, free ones included (tests: reuse keeps this from growing).
    var handleCapacity: Int { sessions.count }

    /// The presence list for a subscriber joining now (every live session, this one included). Entries in
    /// later deltas are upserts, so a session listed here may show up again as `joined`.
    public mutating func presenceList() -> [PresenceEntry] {
        var list: [PresenceEntry] = []
        list.reserveCapacity(sessions.count)
        for h in sessions.indices {
            let session = sessions[h]
            var marks = session.marks
            if let entry = session.entry {
                list.append(entry)
                if session.announced == nil { marks.insert(.listedUnannounced) }
                if isLarge && !marks.contains(.viewerAnnounced) { marks.insert(.listedToViewers) }
            } else if isLarge && marks.contains(.viewerAnnounced) {
                marks.insert(.listedAbsentToViewers)
            }
            if let announced = session.announced, session.entry != announced { marks.insert(.listedStale) }
            guard marks != session.marks else { continue }
            if !session.marks.contains(.listedUnannounced) && !session.marks.contains(.listedStale)
                && (marks.contains(.listedUnannounced) || marks.contains(.listedStale))
            {
                listedList.append(h)
            }
            sessions[h].marks = marks
        }
        return list
    }

    /// The sequence number to pass to `reconcile` for a snapshot requested now.
    public var currentEventSeq: UInt64 { eventSeq }

    // MARK: Local sessions

    /// A session of this node joins (or re-joins, or resumes) the doc.
    public mutating func join(_ entry: PresenceEntry) {
        precondition(entry.node == settings.nodeID, "local entries belong to this node")
        let h = handleCreating(entry.sid)
        var entry = entry
        if let floor = sessions[h].departedVersion {
            sessions[h].departedVersion = nil
            if entry.version <= floor { entry = entry.with(version: floor + 1) }
        }
        let user = retainUser(entry.user)
        if let old = sessions[h].local { releaseUser(old.user) } else { localSessions += 1 }
        sessions[h].local = LocalSession(user: user)
        noteEvent(h)
        unmarkPendingDelete(h)
        markPendingUpsert(h)
        setView(h, entry)
    }

    /// A local session's new state, subject to the per-user rate and the large-doc rule.
    public mutating func offerUpdate(sid: String, state: PresenceState, nowMs: UInt64) -> PresenceUpdateOutcome {
        // The one hash of the session id on an update: from here on it is its handle.
        guard let h = handles[sid] else { return .notJoined }
        return offer(state, to: h, nowMs: nowMs)
    }

    /// The handle of local session `sid`, for `offerUpdate(handle:sid:…)` (a member's doc ticket holds it).
    public func localHandle(of sid: String) -> Int? {
        guard let h = handles[sid], sessions[h].local != nil else { return nil }
        return h
    }

    /// `offerUpdate(sid:…)` by a handle the caller holds (`localHandle(of:)`), without hashing the session
    /// id (issue 14). A handle is freed once nothing refers to its session and may then go to another
    /// one, so it is checked against `sid` first (the same string storage: one comparison of two words);
    /// a handle that no longer names `sid` falls back to the lookup.
    public mutating func offerUpdate(handle h: Int, sid: String, state: PresenceState, nowMs: UInt64) -> PresenceUpdateOutcome {
        guard h < sessions.count, sessions[h].sid == sid else { return offerUpdate(sid: sid, state: state, nowMs: nowMs) }
        return offer(state, to: h, nowMs: nowMs)
    }

    private mutating func offer(_ state: PresenceState, to h: Int, nowMs: UInt64) -> PresenceUpdateOutcome {
        guard let session = sessions[h].local, session.detachedUntilMs == nil, let entry = sessions[h].entry else {
            return .notJoined
        }
        if isLarge && entry.role == .viewer { return .suppressed }
        if takeToken(user: session.user, nowMs: nowMs) {
            if session.deferredState != nil { sessions[h].local?.deferredState = nil }
            apply(state, to: h, entry)
            acceptedUpdates &+= 1
            return .accepted
        }
        sessions[h].local?.deferredState = state
        return .rateLimited
    }

    /// Takes a token from the bucket of user handle `u`, made on first use.
    private mutating func takeToken(user u: Int, nowMs: UInt64) -> Bool {
        if users[u].bucket == nil {
            users[u].bucket = TokenBucket(rate: settings.rate, burst: settings.burst, nowMs: nowMs)
            bucketCount += 1
        }
        return users[u].bucket!.take(nowMs: nowMs)
    }

    private mutating func apply(_ state: PresenceState, to h: Int, _ entry: PresenceEntry) {
        markPendingUpsert(h)
        setView(h, entry.with(state: state))
    }

    /// A local session leaves the doc (explicit leave or clean close): deleted at once.
    public mutating func leave(sid: String) {
        guard let h = handles[sid] else { return }
        leave(h)
    }

    private mutating func leave(_ h: Int) {
        guard let session = sessions[h].local else { return }
        endLocal(h, session)
        if let version = sessions[h].entry?.version {
            sessions[h].departedVersion = version
            if !sessions[h].marks.contains(.departed) {
                sessions[h].marks.insert(.departed)
                departedList.append(h)
            }
        }
        noteEvent(h)
        unmarkPendingUpsert(h)
        markPendingDelete(h)
        setView(h, nil)
    }

    /// A local session lost its socket without a clean close: it stays visible until the TTL runs out,
    /// so a `?resume=` reconnect can take it over without others seeing it leave and join.
    /// - Parameter graceMs: how long the session may be resumed (default: the presence TTL).
    public mutating func detach(sid: String, nowMs: UInt64, graceMs: UInt64? = nil) {
        guard let h = handles[sid], sessions[h].local != nil else { return }
        sessions[h].local?.detachedUntilMs = nowMs + (graceMs ?? settings.ttlMs)
        sessions[h].local?.deferredState = nil
    }

    /// Keeps every detached session resumable until at least `untilMs`: while handshakes are being
    /// refused (a reconnect storm), clients are told to wait, so their seats are kept meanwhile.
    /// - Returns: how many sessions were extended.
    @discardableResult
    public mutating func holdDetached(untilMs: UInt64) -> Int {
        var held = 0
        for h in sessions.indices {
            if let deadline = sessions[h].local?.detachedUntilMs, deadline < untilMs {
                sessions[h].local?.detachedUntilMs = untilMs
                held += 1
            }
        }
        return held
    }

    // MARK: Other nodes

    /// What applying another node's message did that the owner must act on.
    public struct RemoteEffect: Sendable {
        /// Sessions removed because their node's registration expired (counted as expired presence).
        public var expired = 0
        /// Local sessions that another node now serves (`?resume=` elsewhere): detach their connections.
        public var takenOver: [String] = []
        /// What to send members now, without waiting for this node's tick (`receive` only): the sessions
        /// the message changed, as a delta. `write` is always nil, and so is `viewerDelta`.
        public var forward: PresenceTick?
        /// The message's changes were left to the tick: its node was over its forwarding budget.
        public var forwardDeferred = false
    }

    /// Applies a message another node published on the doc's channel; its changes go out at the next tick.
    @discardableResult
    public mutating func apply(_ message: NodeMessage) -> RemoteEffect {
        var touched: [Int] = []
        let effect = apply(message, touched: &touched)
        for index in touched.indices { sessions[touched[index]].marks.remove(.touched) }
        return effect
    }

    /// Applies another node's message and decides whether its changes go to members at once (issue 11,
    /// "cross-node cursors in one hop").
    ///
    /// Another node publishes one message per doc per tick, already that tick's coalesced changes of its
    /// sessions. Holding it for this node's tick too made a cursor crossing nodes wait for two ticks (p99
    /// 98 ms against 52 ms on one node). So the sessions it changed are sent at once (`forward`), and only
    /// they: this node's own changes keep to its tick.
    ///
    /// The per-tick bound stays: each other node gets a token bucket of two forwards per tick, burst 4; a
    /// message over it (a node also publishes every join at once, so a join storm would otherwise forward
    /// one delta per join) stays dirty and goes out, coalesced, at the tick. A member thus receives at most
    /// about two deltas per node serving the doc per tick (one in steady state), and a slow reader still
    /// has them merged by its connection. The headroom is for the sender's ticks: they come at one per tick
    /// on average, so a bucket refilling at exactly that rate ran dry whenever they bunched (a late tick
    /// followed by an on-time one, pub/sub read in a burst after this node's loop stalled), and the
    /// message that found it dry waited for this node's tick after all (3.5 % of them in a two-node run). Viewers of a large doc get none of it (they keep
    /// to their membership-only flushes); membership changes of `nodesGone` (our own sweep) wait for the tick.
    /// - Parameter forwarding: false while the owner cannot deliver yet (the doc is still loading).
    @discardableResult
    public mutating func receive(_ message: NodeMessage, nowMs: UInt64, forwarding: Bool = true) -> RemoteEffect {
        var touched: [Int] = []
        var effect = apply(message, touched: &touched)
        // `touched` holds each session once (the `touched` mark), cleared whatever happens next.
        defer { for index in touched.indices { sessions[touched[index]].marks.remove(.touched) } }
        guard forwarding, case .presence(let node, _, _, _) = message, node != settings.nodeID, !touched.isEmpty else {
            return effect
        }
        let rate = 2 * 1000 / Double(max(1, settings.tickMs))
        guard forwardBuckets[node, default: TokenBucket(rate: rate, burst: 4, nowMs: nowMs)].take(nowMs: nowMs) else {
            effect.forwardDeferred = true
            return effect
        }
        let delta = changes(of: touched)
        for index in touched.indices {
            let h = touched[index]
            // Their dirty mark goes (the tick skips them in `dirtyList`); so do the list marks.
            sessions[h].marks.subtract([.dirty, .listedUnannounced, .listedStale])
        }
        if let delta {
            effect.forward = PresenceTick(delta: delta, viewerDelta: nil, viewersGetDelta: !isLarge, write: nil, expired: 0)
        }
        return effect
    }

    /// One bucket per other node publishing in this doc (bounded by the nodes of the deployment; dropped
    /// when the node is gone, and full ones forgotten at a tick once there are many).
    private var forwardBuckets: [String: TokenBucket] = [:]

    private mutating func touch(_ h: Int, _ touched: inout [Int]) {
        guard !sessions[h].marks.contains(.touched) else { return }
        sessions[h].marks.insert(.touched)
        touched.append(h)
    }

    private mutating func apply(_ message: NodeMessage, touched: inout [Int]) -> RemoteEffect {
        var effect = RemoteEffect()
        switch message {
        case .presence(let node, let upserts, let removals, let full):
            guard node != settings.nodeID else { return effect }
            var seen: Set<String> = []
            for entry in upserts {
                if full { seen.insert(entry.sid) }
                let h = handleCreating(entry.sid)
                noteEvent(h)
                if let mine = sessions[h].local {
                    // A session still connected here yields only to a newer claim (a resume elsewhere bumps
                    // the version). An older copy is stale: e.g. the detached entry a node rewrites after a
                    // Redis outage during which the session was resumed here. Taking it as a takeover made
                    // both nodes drop the session, and its live connection lost the doc.
                    if mine.detachedUntilMs == nil, let current = sessions[h].entry, current.version >= entry.version {
                        continue
                    }
                    // Resumed on another node: hand the session over without announcing a leave.
                    endLocal(h, mine)
                    effect.takenOver.append(entry.sid)
                    unmarkPendingUpsert(h)
                    markPendingDelete(h)
                    sessions[h].marks.insert(.silentDelete)
                }
                if let current = sessions[h].entry, current.node == entry.node, current.version >= entry.version {
                    continue
                }
                setView(h, entry)
                touch(h, &touched)
            }
            for sid in removals {
                guard let h = handles[sid], sessions[h].entry?.node == node else { continue }
                noteEvent(h)
                setView(h, nil)
                touch(h, &touched)
            }
            if full {
                for h in sessions.indices {
                    guard let entry = sessions[h].entry, entry.node == node, !seen.contains(entry.sid) else { continue }
                    noteEvent(h)
                    setView(h, nil)
                    touch(h, &touched)
                }
            }
            return effect
        case .nodesGone(let nodes):
            for node in nodes {
                forwardBuckets.removeValue(forKey: node)
                if node == settings.nodeID {
                    // Our registration expired (Redis was unreachable too long): register again.
                    needsFullWrite = true
                    continue
                }
                for h in sessions.indices where sessions[h].entry?.node == node {
                    noteEvent(h)
                    setView(h, nil)
                    effect.expired += 1
                }
            }
            return effect
        case .commit, .commits:
            return effect
        }
    }

    /// Corrects the view against what Redis holds (periodically, and after pub/sub reconnects).
    ///
    /// - Parameters:
    ///   - snapshot: every live entry of the doc in Redis.
    ///   - requestedAtSeq: `currentEventSeq` when the snapshot was requested. Sessions that changed since
    ///     (news that may be newer than the snapshot) are left alone.
    ///   - removeMissing: drop other nodes' sessions that are not in the snapshot. False right after Redis
    ///     came back (it may have restarted empty, and the other nodes have not re-registered yet).
    /// - Returns: how many sessions were corrected.
    @discardableResult
    public mutating func reconcile(snapshot: [PresenceEntry], requestedAtSeq: UInt64, removeMissing: Bool = true) -> Int {
        var corrections = 0
        var inSnapshot: [String: PresenceEntry] = [:]
        for entry in snapshot { inSnapshot[entry.sid] = entry }
        for entry in snapshot where entry.node != settings.nodeID && !isLocal(entry.sid) {
            if let h = handles[entry.sid] {
                guard sessions[h].lastEvent <= requestedAtSeq else { continue }
                if let current = sessions[h].entry, current.node == entry.node, current.version >= entry.version { continue }
            }
            setView(handleCreating(entry.sid), entry)
            corrections += 1
        }
        for h in sessions.indices where removeMissing {
            guard let entry = sessions[h].entry, entry.node != settings.nodeID, inSnapshot[entry.sid]?.node != entry.node,
                sessions[h].lastEvent <= requestedAtSeq
            else { continue }
            setView(h, nil)
            corrections += 1
        }
        for h in sessions.indices {
            // Our own sessions must be in Redis (a Redis restart or an expiry during an outage loses them).
            if sessions[h].local != nil, inSnapshot[sessions[h].sid]?.node != settings.nodeID,
                sessions[h].lastEvent <= requestedAtSeq
            {
                needsFullWrite = true
            }
        }
        if snapshot.contains(where: { $0.node == settings.nodeID && !isLocal($0.sid) }) {
            needsFullWrite = true
        }
        for h in sessions.indices where sessions[h].lastEvent <= requestedAtSeq { sessions[h].lastEvent = 0 }
        return corrections
    }

    /// Redis lost (or may have lost) what this node wrote: the next tick rewrites all of it.
    public mutating func writeFailed() { needsFullWrite = true }

    // MARK: Tick

    /// Everything that changed since the last tick, coalesced.
    public mutating func tick(nowMs: UInt64) -> PresenceTick {
        var expired = 0
        for h in sessions.indices {
            guard let session = sessions[h].local else { continue }
            if let deadline = session.detachedUntilMs, nowMs >= deadline {
                leave(h)
                expired += 1
            } else if let state = session.deferredState, let entry = sessions[h].entry {
                if takeToken(user: session.user, nowMs: nowMs) {
                    sessions[h].local?.deferredState = nil
                    apply(state, to: h, entry)
                }
            }
        }
        if bucketCount > 64 { forgetFullBuckets(nowMs: nowMs) }

        let wasLarge = isLarge
        isLarge = viewerCount > settings.largeDocViewers
        var viewerDelta: PresenceDelta?

        let delta = changes(of: dirtyList, onlyMarked: .dirty)
        for index in dirtyList.indices { sessions[dirtyList[index]].marks.remove(.dirty) }
        dirtyList.removeAll(keepingCapacity: true)
        for index in listedList.indices { sessions[listedList[index]].marks.subtract([.listedUnannounced, .listedStale]) }
        listedList.removeAll(keepingCapacity: true)
        // Rarely more than the handful of nodes serving the doc; buckets of departed nodes go at `nodesGone`.
        if forwardBuckets.count > 16 { forwardBuckets = forwardBuckets.filter { var b = $0.value; return !b.isFull(nowMs: nowMs) } }

        if isLarge && !wasLarge {
            // Viewers still get this tick's delta; membership-only flushes start from what it told them.
            for h in sessions.indices {
                sessions[h].marks.subtract([.viewerAnnounced, .listedToViewers, .listedAbsentToViewers])
                if sessions[h].announced != nil { sessions[h].marks.insert(.viewerAnnounced) }
            }
            lastViewerFlushMs = nowMs
        } else if isLarge {
            if nowMs >= lastViewerFlushMs + settings.viewerFlushIntervalMs {
                lastViewerFlushMs = nowMs
                var vJoined: [PresenceEntry] = []
                var vLeft: [String] = []
                for h in sessions.indices {
                    let marks = sessions[h].marks
                    if let entry = sessions[h].entry {
                        if !marks.contains(.viewerAnnounced) || marks.contains(.listedAbsentToViewers) { vJoined.append(entry) }
                    } else if marks.contains(.viewerAnnounced) || marks.contains(.listedToViewers) {
                        vLeft.append(sessions[h].sid)
                    }
                    sessions[h].marks.subtract([.viewerAnnounced, .listedToViewers, .listedAbsentToViewers])
                    if sessions[h].entry != nil { sessions[h].marks.insert(.viewerAnnounced) }
                }
                if !vJoined.isEmpty || !vLeft.isEmpty {
                    viewerDelta = PresenceDelta(doc: doc, joined: vJoined, updated: [], left: vLeft)
                }
            }
        } else if wasLarge {
            // Viewers follow the full deltas again: first bring their states up to date. Sessions that
            // viewers were listed since the last flush count as known too, or one that left meanwhile
            // stays with them as a ghost (found by Fuzz/fuzz-presence).
            var joined: [PresenceEntry] = []
            var updated: [PresenceEntry] = []
            var left: [String] = []
            for h in sessions.indices {
                let marks = sessions[h].marks
                if let entry = sessions[h].entry {
                    if marks.contains(.viewerAnnounced) { updated.append(entry) } else { joined.append(entry) }
                } else if marks.contains(.viewerAnnounced) || marks.contains(.listedToViewers) {
                    left.append(sessions[h].sid)
                }
                sessions[h].marks.subtract([.viewerAnnounced, .listedToViewers, .listedAbsentToViewers])
            }
            let catchUp = PresenceDelta(doc: doc, joined: joined, updated: updated, left: left)
            viewerDelta = catchUp.isEmpty ? nil : catchUp
        }

        let deferred = !upsertList.isEmpty && writeDeferred(nowMs: nowMs)
        let write = deferred ? nil : takeWrite(nowMs: nowMs)
        // The write carries this tick's deletes (or, after a failure, the next full write replaces them).
        for index in departedList.indices {
            let h = departedList[index]
            sessions[h].departedVersion = nil
            sessions[h].marks.remove(.departed)
        }
        departedList.removeAll(keepingCapacity: true)
        freeUnreferenced()
        return PresenceTick(
            delta: delta, viewerDelta: viewerDelta, viewersGetDelta: !isLarge || !wasLarge, write: write, expired: expired,
            writeDeferred: deferred)
    }

    /// Whether this tick leaves the changed states for a later one: alone on the doc, within
    /// `aloneWriteIntervalMs` of the last write, and nothing but changed states to write (no delete, no
    /// refresh, no full rewrite). Nobody else reads the states before they are written but a node that
    /// starts serving the doc meanwhile: its first snapshot may show a state up to the interval old, and
    /// the write that brings it up to date (published, since that node now listens) comes within the
    /// interval.
    private func writeDeferred(nowMs: UInt64) -> Bool {
        guard alone, settings.aloneWriteIntervalMs > 0, !needsFullWrite, deleteList.isEmpty,
            nowMs < lastWriteMs + settings.aloneWriteIntervalMs
        else { return false }
        return !refreshDue(nowMs: nowMs)
    }

    /// Whether the local sessions' TTLs are due for a refresh write (`refreshIntervalMs` since the last).
    private func refreshDue(nowMs: UInt64) -> Bool {
        localSessions > 0 && (lastRefreshMs.map { nowMs >= $0 + settings.refreshIntervalMs } ?? true)
    }

    /// What must be written to Redis now (the tick calls this too). A node writes a join at once, so
    /// that by the time the joiner hears `joined`, every other node's joiners list it.
    public mutating func takeWrite(nowMs: UInt64) -> PresenceWrite? {
        let write = makeWrite(nowMs: nowMs)
        if write != nil { lastWriteMs = nowMs }
        return write
    }

    private mutating func makeWrite(nowMs: UInt64) -> PresenceWrite? {
        let refreshDue = refreshDue(nowMs: nowMs)
        if needsFullWrite && (localSessions > 0 || !deleteList.isEmpty) {
            needsFullWrite = false
            lastRefreshMs = nowMs
            var all: [PresenceEntry] = []
            all.reserveCapacity(localSessions)
            for h in sessions.indices where sessions[h].local != nil {
                if let entry = sessions[h].entry { all.append(entry) }
            }
            clearWriteMarks()
            return PresenceWrite(
                upserts: all, deletes: [], full: true, refresh: true,
                publish: .presence(node: settings.nodeID, upserts: all, removals: [], full: true))
        }
        guard !upsertList.isEmpty || !deleteList.isEmpty || refreshDue else { return nil }
        if refreshDue { lastRefreshMs = nowMs }
        var upserts: [PresenceEntry] = []
        upserts.reserveCapacity(upsertList.count)
        for index in upsertList.indices { if let entry = sessions[upsertList[index]].entry { upserts.append(entry) } }
        var deletes: [String] = []
        var announcedDeletes: [String] = []
        if !deleteList.isEmpty {
            deletes.reserveCapacity(deleteList.count)
            for index in deleteList.indices {
                let h = deleteList[index]
                deletes.append(sessions[h].sid)
                if !sessions[h].marks.contains(.silentDelete) { announcedDeletes.append(sessions[h].sid) }
            }
        }
        clearWriteMarks()
        let publish: NodeMessage? = upserts.isEmpty && announcedDeletes.isEmpty
            ? nil : .presence(node: settings.nodeID, upserts: upserts, removals: announcedDeletes, full: false)
        return PresenceWrite(upserts: upserts, deletes: deletes, full: false, refresh: refreshDue, publish: publish)
    }

    // MARK: Helpers

    /// What subscribers must be told of `list` (dirty sessions; with `onlyMarked`, only those still
    /// carrying that mark) against what they were told, marked as told.
    private mutating func changes(of list: [Int], onlyMarked mark: Marks = []) -> PresenceDelta? {
        var joined: [PresenceEntry] = []
        var updated: [PresenceEntry] = []
        var left: [String] = []
        // By index: the list is a property of `self`, which the loop mutates.
        for index in list.indices {
            let h = list[index]
            let marks = sessions[h].marks
            guard marks.contains(mark) else { continue }
            switch (sessions[h].entry, sessions[h].announced) {
            case (let entry?, nil):
                joined.append(entry)
                sessions[h].announced = entry
            case (let entry?, let old?) where old != entry:
                updated.append(entry)
                sessions[h].announced = entry
            case (let entry?, _?) where marks.contains(.listedStale):
                joined.append(entry)
            case (nil, _?):
                left.append(sessions[h].sid)
                sessions[h].announced = nil
            case (nil, nil) where marks.contains(.listedUnannounced):
                left.append(sessions[h].sid)
            default:
                break
            }
            // A dirty list may name a session twice (dirty, cleared by a forward, dirty again).
            if !mark.isEmpty { sessions[h].marks.remove(mark) }
        }
        return joined.isEmpty && updated.isEmpty && left.isEmpty
            ? nil : PresenceDelta(doc: doc, joined: joined, updated: updated, left: left)
    }

    /// The handle of `sid`, allocated (a free one reused) if the doc does not know it.
    private mutating func handleCreating(_ sid: String) -> Int {
        if let h = handles[sid] { return h }
        let h: Int
        if let reused = freeHandles.popLast() {
            h = reused
            sessions[h] = Session(sid: sid)
        } else {
            h = sessions.count
            sessions.append(Session(sid: sid))
        }
        handles[sid] = h
        return h
    }

    /// Frees the handles of sessions nothing refers to any more (at the end of a tick: the tick's delta and
    /// write have consumed their marks, so no list holds them). Candidates still referred to stay.
    private mutating func freeUnreferenced() {
        guard !freeCandidates.isEmpty else { return }
        var kept = 0
        for index in freeCandidates.indices {
            let h = freeCandidates[index]
            if sessions[h].entry != nil {
                // Back (joined again, or another node's): a candidate again when it goes.
                sessions[h].marks.remove(.freeCandidate)
            } else if sessions[h].isUnreferenced {
                handles.removeValue(forKey: sessions[h].sid)
                sessions[h] = Session(sid: "")
                freeHandles.append(h)
            } else {
                freeCandidates[kept] = h
                kept += 1
            }
        }
        freeCandidates.removeSubrange(kept...)
    }

    /// The handle of `name`'s token bucket, held by one more local session.
    private mutating func retainUser(_ name: String) -> Int {
        if let u = userHandles[name] {
            users[u].sessions += 1
            return u
        }
        let user = User(name: name, bucket: nil, sessions: 1)
        let u: Int
        if let reused = freeUserHandles.popLast() {
            u = reused
            users[u] = user
        } else {
            u = users.count
            users.append(user)
        }
        userHandles[name] = u
        return u
    }

    /// A local session no longer holds user handle `u` (its bucket stays until it is full).
    private mutating func releaseUser(_ u: Int) {
        users[u].sessions -= 1
        if users[u].sessions == 0 && users[u].bucket == nil { freeUser(u) }
    }

    private mutating func freeUser(_ u: Int) {
        userHandles.removeValue(forKey: users[u].name)
        users[u] = User(name: "", bucket: nil, sessions: 0)
        freeUserHandles.append(u)
    }

    /// Forgets full buckets (a full bucket is the same as a new one), and the users no session holds.
    private mutating func forgetFullBuckets(nowMs: UInt64) {
        for u in users.indices {
            guard users[u].bucket?.isFull(nowMs: nowMs) == true else { continue }
            users[u].bucket = nil
            bucketCount -= 1
            if users[u].sessions == 0 { freeUser(u) }
        }
    }

    /// The local session at `h` ends (left, expired or taken over by another node).
    private mutating func endLocal(_ h: Int, _ session: LocalSession) {
        sessions[h].local = nil
        localSessions -= 1
        releaseUser(session.user)
    }

    private mutating func markPendingUpsert(_ h: Int) {
        guard !sessions[h].marks.contains(.pendingUpsert) else { return }
        sessions[h].marks.insert(.pendingUpsert)
        upsertList.append(h)
    }

    private mutating func markPendingDelete(_ h: Int) {
        guard !sessions[h].marks.contains(.pendingDelete) else { return }
        sessions[h].marks.insert(.pendingDelete)
        deleteList.append(h)
    }

    /// Takes the mark off `h` and `h` out of `upsertList` (which holds exactly the marked handles).
    private mutating func unmarkPendingUpsert(_ h: Int) {
        guard sessions[h].marks.contains(.pendingUpsert) else { return }
        sessions[h].marks.remove(.pendingUpsert)
        if let index = upsertList.firstIndex(of: h) { upsertList.remove(at: index) }
    }

    /// Takes the marks off `h` and `h` out of `deleteList` (which holds exactly the marked handles).
    private mutating func unmarkPendingDelete(_ h: Int) {
        sessions[h].marks.remove(.silentDelete)
        guard sessions[h].marks.contains(.pendingDelete) else { return }
        sessions[h].marks.remove(.pendingDelete)
        if let index = deleteList.firstIndex(of: h) { deleteList.remove(at: index) }
    }

    private mutating func clearWriteMarks() {
        for index in upsertList.indices { sessions[upsertList[index]].marks.remove(.pendingUpsert) }
        for index in deleteList.indices { sessions[deleteList[index]].marks.subtract([.pendingDelete, .silentDelete]) }
        upsertList.removeAll(keepingCapacity: true)
        deleteList.removeAll(keepingCapacity: true)
    }

    private mutating func noteEvent(_ h: Int) {
        eventSeq += 1
        sessions[h].lastEvent = eventSeq
    }

    private mutating func setView(_ h: Int, _ entry: PresenceEntry?) {
        var entry = entry
        // One access for the swap (this runs on every update).
        swap(&sessions[h].entry, &entry)
        let old = entry
        let new = sessions[h].entry
        if old?.role == .viewer { viewerCount -= 1 }
        if new?.role == .viewer { viewerCount += 1 }
        var marks = sessions[h].marks
        if !marks.contains(.dirty) {
            marks.insert(.dirty)
            dirtyList.append(h)
        }
        if new == nil && !marks.contains(.freeCandidate) {
            marks.insert(.freeCandidate)
            freeCandidates.append(h)
        }
        sessions[h].marks = marks
    }
}
