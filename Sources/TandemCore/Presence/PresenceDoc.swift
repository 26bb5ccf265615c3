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
public struct PresenceDoc {
    public let doc: String
    public let settings: PresenceSettings

    /// Every live session in the doc, from every node.
    public private(set) var view: [String: PresenceEntry] = [:]
    /// The entry subscribers were last told of, per session (what they believe is live). Whole entries,
    /// not versions: a session that leaves and re-joins within one tick, or an entry replaced by another
    /// node's with the same version, differs at an equal version (found by Fuzz/fuzz-presence).
    private var announced: [String: PresenceEntry] = [:]
    private var dirty: Set<String> = []

    private struct LocalSession {
        /// Set while the session's socket is gone without a clean close: it may be resumed until then.
        var detachedUntilMs: UInt64?
        /// The latest update that arrived over the rate; applied once a token is free.
        var deferredState: PresenceState?
    }
    private var local: [String: LocalSession] = [:]
    /// The last version of local sessions that left since the last tick. Other nodes (and the Redis hash)
    /// hold that version until the delete is published by the tick's write, and they only take newer
    /// versions: a session that re-joins before then must come back above it, not at version 1
    /// (found by Fuzz/fuzz-presence).
    private var departedVersions: [String: UInt64] = [:]
    private var buckets: [String: TokenBucket] = [:]

    private var pendingUpserts: Set<String> = []
    private var pendingDeletes: Set<String> = []
    /// Deletes that must not be announced (the session now lives on another node).
    private var silentDeletes: Set<String> = []
    private var needsFullWrite = true
    private var lastRefreshMs: UInt64?

    public private(set) var viewerCount = 0
    public private(set) var isLarge = false
    private var viewerAnnounced: Set<String> = []
    /// Sessions handed out in `joined` lists before subscribers were told of them: if they leave before
    /// the next tick (or viewer flush), the delta must still say so, or the new subscriber keeps a ghost.
    private var listedUnannounced: Set<String> = []
    private var listedToViewers: Set<String> = []
    /// The converse: sessions a list showed differently from what subscribers had been told — missing
    /// (gone for a moment: left, or removed by another node) or with another entry (replaced for a moment,
    /// e.g. by a Redis snapshot) — and back to the announced entry before the next tick. The tick then sees
    /// no change, so the delta lists them in `joined` again, or the new subscriber would never learn of
    /// them or keep the entry it was listed (found by Fuzz/fuzz-presence).
    private var listedStale: Set<String> = []
    private var listedAbsentToViewers: Set<String> = []
    private var lastViewerFlushMs: UInt64 = 0

    /// Event sequence numbers, so a Redis snapshot never overrides newer pub/sub news (see `reconcile`).
    private var eventSeq: UInt64 = 0
    private var lastEvent: [String: UInt64] = [:]

    public init(doc: String, settings: PresenceSettings) {
        self.doc = doc
        self.settings = settings
    }

    // MARK: Queries


    public var localCount: Int { local.count }
    public func isLocal(_ sid: String) -> Bool { local[sid] != nil }
    public func isDetached(_ sid: String) -> Bool { local[sid]?.detachedUntilMs != nil }

    /// True when nothing here needs the doc any more (no local sessions, nothing left to write).
    public var isIdle: Bool { local.isEmpty && pendingDeletes.isEmpty && pendingUpserts.isEmpty }

    /// The presence list for a subscriber joining now (every live session, this one included). Entries in
    /// later deltas are upserts, so a session listed here may show up again as `joined`.
    public mutating func presenceList() -> [PresenceEntry] {
        for sid in view.keys {
            if announced[sid] == nil { listedUnannounced.insert(sid) }
            if isLarge && !viewerAnnounced.contains(sid) { listedToViewers.insert(sid) }
        }
        for (sid, entry) in announced where view[sid] != entry { listedStale.insert(sid) }
        if isLarge {
            for sid in viewerAnnounced where view[sid] == nil { listedAbsentToViewers.insert(sid) }
        }
        return Array(view.values)
    }

    /// The sequence number to pass to `reconcile` for a snapshot requested now.
    public var currentEventSeq: UInt64 { eventSeq }

    // MARK: Local sessions

    /// A session of this node joins (or re-joins, or resumes) the doc.
    public mutating func join(_ entry: PresenceEntry) {
        precondition(entry.node == settings.nodeID, "local entries belong to this node")
        var entry = entry
        if let floor = departedVersions.removeValue(forKey: entry.sid), entry.version <= floor {
            entry = entry.with(version: floor + 1)
        }
        local[entry.sid] = LocalSession()
        noteEvent(entry.sid)
        pendingDeletes.remove(entry.sid)
        silentDeletes.remove(entry.sid)
        pendingUpserts.insert(entry.sid)
        setView(entry.sid, entry)
    }

    /// A local session's new state, subject to the per-user rate and the large-doc rule.
    public mutating func offerUpdate(sid: String, state: PresenceState, nowMs: UInt64) -> PresenceUpdateOutcome {
        guard let session = local[sid], session.detachedUntilMs == nil, let entry = view[sid] else { return .notJoined }
        if isLarge && entry.role == .viewer { return .suppressed }
        if takeToken(user: entry.user, nowMs: nowMs) {
            if session.deferredState != nil { local[sid]?.deferredState = nil }
            apply(state, to: entry)
            return .accepted
        }
        local[sid]?.deferredState = state
        return .rateLimited
    }

    /// Takes a token from `user`'s bucket in this doc. (Not `buckets[user, default: …]`: its accessor
    /// and default closure allocated on every update in a debug build.)
    private mutating func takeToken(user: String, nowMs: UInt64) -> Bool {
        if let index = buckets.index(forKey: user) { return buckets.values[index].take(nowMs: nowMs) }
        var bucket = TokenBucket(rate: settings.rate, burst: settings.burst, nowMs: nowMs)
        let taken = bucket.take(nowMs: nowMs)
        buckets[user] = bucket
        return taken
    }

    private mutating func apply(_ state: PresenceState, to entry: PresenceEntry) {
        pendingUpserts.insert(entry.sid)
        setView(entry.sid, entry.with(state: state))
    }

    /// A local session leaves the doc (explicit leave or clean close): deleted at once.
    public mutating func leave(sid: String) {
        guard local.removeValue(forKey: sid) != nil else { return }
        if let version = view[sid]?.version { departedVersions[sid] = version }
        noteEvent(sid)
        pendingUpserts.remove(sid)
        pendingDeletes.insert(sid)
        setView(sid, nil)
    }

    /// A local session lost its socket without a clean close: it stays visible until the TTL runs out,
    /// so a `?resume=` reconnect can take it over without others seeing it leave and join.
    /// - Parameter graceMs: how long the session may be resumed (default: the presence TTL).
    public mutating func detach(sid: String, nowMs: UInt64, graceMs: UInt64? = nil) {
        guard local[sid] != nil else { return }
        local[sid]?.detachedUntilMs = nowMs + (graceMs ?? settings.ttlMs)
        local[sid]?.deferredState = nil
    }

    /// Keeps every detached session resumable until at least `untilMs`: while handshakes are being
    /// refused (a reconnect storm), clients are told to wait, so their seats are kept meanwhile.
    /// - Returns: how many sessions were extended.
    @discardableResult
    public mutating func holdDetached(untilMs: UInt64) -> Int {
        var held = 0
        for (sid, session) in local {
            if let deadline = session.detachedUntilMs, deadline < untilMs {
                local[sid]?.detachedUntilMs = untilMs
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
        var touched: [String] = []
        return apply(message, touched: &touched)
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
        var touched: [String] = []
        var effect = apply(message, touched: &touched)
        guard forwarding, case .presence(let node, _, _, _) = message, node != settings.nodeID, !touched.isEmpty else {
            return effect
        }
        let rate = 2 * 1000 / Double(max(1, settings.tickMs))
        guard forwardBuckets[node, default: TokenBucket(rate: rate, burst: 4, nowMs: nowMs)].take(nowMs: nowMs) else {
            effect.forwardDeferred = true
            return effect
        }
        var seen = Set<String>()
        let sids = touched.filter { seen.insert($0).inserted }
        let delta = changes(of: sids)
        for sid in sids {
            dirty.remove(sid)
            listedUnannounced.remove(sid)
            listedStale.remove(sid)
        }
        if let delta {
            effect.forward = PresenceTick(delta: delta, viewerDelta: nil, viewersGetDelta: !isLarge, write: nil, expired: 0)
        }
        return effect
    }

    /// One bucket per other node publishing in this doc (bounded by the nodes of the deployment; dropped
    /// when the node is gone, and full ones forgotten at a tick once there are many).
    private var forwardBuckets: [String: TokenBucket] = [:]

    private mutating func apply(_ message: NodeMessage, touched: inout [String]) -> RemoteEffect {
        var effect = RemoteEffect()
        switch message {
        case .presence(let node, let upserts, let removals, let full):
            guard node != settings.nodeID else { return effect }
            var seen: Set<String> = []
            for entry in upserts {
                seen.insert(entry.sid)
                noteEvent(entry.sid)
                if let mine = local[entry.sid] {
                    // A session still connected here yields only to a newer claim (a resume elsewhere bumps
                    // the version). An older copy is stale: e.g. the detached entry a node rewrites after a
                    // Redis outage during which the session was resumed here. Taking it as a takeover made
                    // both nodes drop the session, and its live connection lost the doc.
                    if mine.detachedUntilMs == nil, let current = view[entry.sid], current.version >= entry.version {
                        continue
                    }
                    // Resumed on another node: hand the session over without announcing a leave.
                    local.removeValue(forKey: entry.sid)
                    effect.takenOver.append(entry.sid)
                    pendingUpserts.remove(entry.sid)
                    pendingDeletes.insert(entry.sid)
                    silentDeletes.insert(entry.sid)
                }
                if let current = view[entry.sid], current.node == entry.node, current.version >= entry.version {
                    continue
                }
                setView(entry.sid, entry)
                touched.append(entry.sid)
            }
            for sid in removals where view[sid]?.node == node {
                noteEvent(sid)
                setView(sid, nil)
                touched.append(sid)
            }
            if full {
                for (sid, entry) in view where entry.node == node && !seen.contains(sid) {
                    noteEvent(sid)
                    setView(sid, nil)
                    touched.append(sid)
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
                for (sid, entry) in view where entry.node == node {
                    noteEvent(sid)
                    setView(sid, nil)
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
        for entry in snapshot where entry.node != settings.nodeID && local[entry.sid] == nil {
            guard lastEvent[entry.sid, default: 0] <= requestedAtSeq else { continue }
            if let current = view[entry.sid], current.node == entry.node, current.version >= entry.version { continue }
            setView(entry.sid, entry)
            corrections += 1
        }
        for (sid, entry) in view where removeMissing && entry.node != settings.nodeID && inSnapshot[sid]?.node != entry.node {
            guard lastEvent[sid, default: 0] <= requestedAtSeq else { continue }
            setView(sid, nil)
            corrections += 1
        }
        // Our own sessions must be in Redis (a Redis restart or an expiry during an outage loses them).
        for sid in local.keys where inSnapshot[sid]?.node != settings.nodeID {
            if lastEvent[sid, default: 0] <= requestedAtSeq { needsFullWrite = true }
        }
        if snapshot.contains(where: { $0.node == settings.nodeID && local[$0.sid] == nil }) {
            needsFullWrite = true
        }
        lastEvent = lastEvent.filter { $0.value > requestedAtSeq }
        return corrections
    }

    /// Redis lost (or may have lost) what this node wrote: the next tick rewrites all of it.
    public mutating func writeFailed() { needsFullWrite = true }

    // MARK: Tick

    /// Everything that changed since the last tick, coalesced.
    public mutating func tick(nowMs: UInt64) -> PresenceTick {
        var expired = 0
        for (sid, session) in local {
            if let deadline = session.detachedUntilMs, nowMs >= deadline {
                leave(sid: sid)
                expired += 1
            } else if let state = session.deferredState, let entry = view[sid] {
                if takeToken(user: entry.user, nowMs: nowMs) {
                    local[sid]?.deferredState = nil
                    apply(state, to: entry)
                }
            }
        }
        if buckets.count > 64 { buckets = buckets.filter { var b = $0.value; return !b.isFull(nowMs: nowMs) } }

        let wasLarge = isLarge
        isLarge = viewerCount > settings.largeDocViewers
        var viewerDelta: PresenceDelta?

        let delta = changes(of: dirty)
        dirty.removeAll(keepingCapacity: true)
        listedUnannounced.removeAll(keepingCapacity: true)
        listedStale.removeAll(keepingCapacity: true)
        // Rarely more than the handful of nodes serving the doc; buckets of departed nodes go at `nodesGone`.
        if forwardBuckets.count > 16 { forwardBuckets = forwardBuckets.filter { var b = $0.value; return !b.isFull(nowMs: nowMs) } }

        if isLarge && !wasLarge {
            // Viewers still get this tick's delta; membership-only flushes start from what it told them.
            viewerAnnounced = Set(announced.keys)
            listedToViewers = []
            listedAbsentToViewers = []
            lastViewerFlushMs = nowMs
        } else if isLarge {
            if nowMs >= lastViewerFlushMs + settings.viewerFlushIntervalMs {
                lastViewerFlushMs = nowMs
                let members = Set(view.keys)
                let vJoined = members.subtracting(viewerAnnounced).union(members.intersection(listedAbsentToViewers))
                    .compactMap { view[$0] }
                let vLeft = Array(viewerAnnounced.union(listedToViewers).subtracting(members))
                viewerAnnounced = members
                listedToViewers = []
                listedAbsentToViewers = []
                if !vJoined.isEmpty || !vLeft.isEmpty {
                    viewerDelta = PresenceDelta(doc: doc, joined: vJoined, updated: [], left: vLeft)
                }
            }
        } else if wasLarge {
            // Viewers follow the full deltas again: first bring their states up to date. Sessions that
            // viewers were listed since the last flush count as known too, or one that left meanwhile
            // stays with them as a ghost (found by Fuzz/fuzz-presence).
            let known = viewerAnnounced.union(listedToViewers)
            let catchUp = PresenceDelta(
                doc: doc,
                joined: view.values.filter { !viewerAnnounced.contains($0.sid) },
                updated: view.values.filter { viewerAnnounced.contains($0.sid) },
                left: known.filter { view[$0] == nil })
            viewerDelta = catchUp.isEmpty ? nil : catchUp
            viewerAnnounced = []
            listedToViewers = []
            listedAbsentToViewers = []
        }

        let write = takeWrite(nowMs: nowMs)
        // The write carries this tick's deletes (or, after a failure, the next full write replaces them).
        departedVersions.removeAll()
        return PresenceTick(
            delta: delta, viewerDelta: viewerDelta, viewersGetDelta: !isLarge || !wasLarge, write: write, expired: expired)
    }

    /// What must be written to Redis now (the tick calls this too). A node writes a join at once, so
    /// that by the time the joiner hears `joined`, every other node's joiners list it.
    public mutating func takeWrite(nowMs: UInt64) -> PresenceWrite? {
        let refreshDue = !local.isEmpty && (lastRefreshMs.map { nowMs >= $0 + settings.refreshIntervalMs } ?? true)
        if needsFullWrite && (!local.isEmpty || !pendingDeletes.isEmpty) {
            needsFullWrite = false
            lastRefreshMs = nowMs
            let all = local.keys.compactMap { view[$0] }
            pendingUpserts.removeAll(keepingCapacity: true)
            pendingDeletes.removeAll(keepingCapacity: true)
            silentDeletes.removeAll(keepingCapacity: true)
            return PresenceWrite(
                upserts: all, deletes: [], full: true, refresh: true,
                publish: .presence(node: settings.nodeID, upserts: all, removals: [], full: true))
        }
        guard !pendingUpserts.isEmpty || !pendingDeletes.isEmpty || refreshDue else { return nil }
        if refreshDue { lastRefreshMs = nowMs }
        var upserts: [PresenceEntry] = []
        upserts.reserveCapacity(pendingUpserts.count)
        for sid in pendingUpserts { if let entry = view[sid] { upserts.append(entry) } }
        let deletes = Array(pendingDeletes)
        let announcedDeletes = deletes.filter { !silentDeletes.contains($0) }
        pendingUpserts.removeAll(keepingCapacity: true)
        pendingDeletes.removeAll(keepingCapacity: true)
        silentDeletes.removeAll(keepingCapacity: true)
        let publish: NodeMessage? = upserts.isEmpty && announcedDeletes.isEmpty
            ? nil : .presence(node: settings.nodeID, upserts: upserts, removals: announcedDeletes, full: false)
        return PresenceWrite(upserts: upserts, deletes: deletes, full: false, refresh: refreshDue, publish: publish)
    }

    // MARK: Helpers

    /// What subscribers must be told of `sids` (dirty ones) against what they were told, marked as told.
    private mutating func changes(of sids: some Sequence<String>) -> PresenceDelta? {
        var joined: [PresenceEntry] = []
        var updated: [PresenceEntry] = []
        var left: [String] = []
        for sid in sids {
            switch (view[sid], announced[sid]) {
            case (let entry?, nil):
                joined.append(entry)
                announced[sid] = entry
            case (let entry?, let old?) where old != entry:
                updated.append(entry)
                announced[sid] = entry
            case (let entry?, _?) where listedStale.contains(sid):
                joined.append(entry)
            case (nil, _?):
                left.append(sid)
                announced.removeValue(forKey: sid)
            case (nil, nil) where listedUnannounced.contains(sid):
                left.append(sid)
            default:
                break
            }
        }
        return joined.isEmpty && updated.isEmpty && left.isEmpty
            ? nil : PresenceDelta(doc: doc, joined: joined, updated: updated, left: left)
    }

    private mutating func noteEvent(_ sid: String) {
        eventSeq += 1
        lastEvent[sid] = eventSeq
    }

    private mutating func setView(_ sid: String, _ entry: PresenceEntry?) {
        // One lookup for the swap (this runs on every update).
        let old = entry.map { view.updateValue($0, forKey: sid) } ?? view.removeValue(forKey: sid)
        if old?.role == .viewer { viewerCount -= 1 }
        if entry?.role == .viewer { viewerCount += 1 }
        dirty.insert(sid)
    }
}
