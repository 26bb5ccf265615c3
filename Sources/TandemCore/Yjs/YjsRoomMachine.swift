import TandemYjs

/// What a Yjs room asks its node to do (`YjsRoomShard` in TandemServer carries them out, in order).
public enum YjsRoomAction: Equatable, Sendable {
    /// One message to one member.
    case send(member: ObjectIdentifier, YProtocolMessage)
    /// An update to every member, the sender included, in the room's order (`appendedAtMs`: Redis's
    /// wall clock at the append, for the sync lag).
    case relay(YProtocolMessage, appendedAtMs: UInt64?)
    /// The room's awareness changes of one tick to every member (one message, encoded once).
    case relayAwareness(YAwarenessUpdate)
    /// Updates wait to be relayed (`coalesceRelays`): call `flushRelay()` soon — at once if the room relayed
    /// nothing for the coalescing window, else when it ends — and carry out what it returns.
    case scheduleRelay
    /// Append `bytes` to the room's log (Redis); answer with `appendCompleted(token:…)`.
    case append(bytes: [UInt8], token: YjsRoomMachine.AppendToken)
    /// Read snapshot and log again after a gap; answer with `reloaded`.
    case reload
    /// Replace the snapshot with `snapshot` (everything up to `upto`) if Redis's base is still `base`;
    /// answer with `compacted`.
    case compact(base: Int64, upto: Int64, snapshot: [UInt8])
    /// Read the room's seq in Redis (and renew its keys' expiry); answer with `headRead(_:seqAtRead:)`.
    case readHead(seqAtRead: Int64)
    /// Write this node's awareness changes to Redis and publish them to the other nodes (`refresh`: also
    /// renew this node's registration in the room).
    case writeAwareness([YAwarenessUpdate.Entry], refresh: Bool)
    /// Delete expired nodes' awareness from Redis and announce them gone.
    case sweepAwareness
    case close(member: ObjectIdentifier, YjsRoomClose)
    /// Close every member (they reconnect and sync again); they are no longer members.
    case closeAll(YjsRoomClose)
    /// The room is idle or failed: forget it (unsubscribe). The machine accepts nothing after this.
    case drop
    case count(YjsRoomEvent)
    case log(YjsRoomLog)
}

public enum YjsRoomClose: Equatable, Sendable {
    /// The room would pass `--yjs-max-room-bytes`.
    case roomFull
    /// The update's structs would wait for missing ones while the room already holds
    /// `--yjs-max-pending-updates` such updates.
    case tooManyPending
    /// Redis failed or lost the room.
    case storageUnavailable
}

/// What the room counts (metrics).
public enum YjsRoomEvent: Equatable, Sendable {
    case appendStarted
    case appendFinished
    /// A stored update; `concurrent`: another got in after the last one the room had when it arrived.
    case pushCommitted(concurrent: Bool)
    case pushFailed
    case roomFull
    /// An update refused (its sender closed) at `--yjs-max-pending-updates`.
    case pendingRefused
    case compaction
    case reload
    case awarenessAccepted
    case awarenessRateLimited
    /// Awareness entries refused: another connection's clientID, or over the per-connection limit.
    case awarenessClientsRefused
    /// Change of the number of live awareness entries this node's connections own.
    case localAwareness(delta: Int)
    /// `updates` updates (more than one) went out as one merged update.
    case relayCoalesced(updates: Int)
    /// Change of the number of updates the room holds while their dependencies are missing
    /// (`tandem_yjs_pending_updates`, the node's sum over its rooms; withdrawn when the room is dropped).
    case pendingUpdates(delta: Int)
}

public enum YjsRoomLog: Equatable, Sendable {
    case roomUnreadable(String)
    case loadFailed(String)
    case updateNotStored(String)
    case undecodableEntry(seq: Int64)
    case compactionFailed(String)
    case lostInRedis(seq: Int64, redisSeq: Int64)
}

/// One Yjs room on one node, as a pure state machine: its members, document, position in the room's log,
/// compaction and awareness. Events in, actions out (`YjsRoomAction`); no I/O, no clock (time is passed
/// in). Confined to the room's event loop by its owner.
///
/// The decisions it makes:
/// - **Sequencing.** Every update goes through Redis's log (`append`) and comes back on the room's channel
///   with its seq (`published`); members get updates in seq order only, the sender included.
/// - **Gaps.** A published seq past the next one, or Redis's head past ours (`headRead`), means a message
///   was lost: the room reloads, relays what members missed, then what was buffered meanwhile. Redis's
///   head below ours means Redis lost the room: its members are closed (their step 2s write it back).
/// - **Compaction.** The node whose append makes the log reach `compactionThreshold` merges it into the
///   snapshot once it has applied that far; one at a time, never with an undecodable entry skipped.
/// - **Awareness.** `YjsAwareness` owns the entries; changes within the per-user rate apply at once,
///   others are held (latest per clientID) until a tick has a token; one message per tick.
/// - **Relay coalescing** (`coalesceRelays`). Updates applied while a relay is pending go to every member
///   as one merged update (Yjs `mergeUpdates`: a client applying it reaches the state the separate updates
///   give), in the room's order: one frame per member per batch instead of one per update. Anything sent
///   to one member (a step 2, awareness states) first flushes the batch, so what a member gets stays in
///   the room's order and a step 2 never precedes an update it already holds.
/// - **Missing dependencies.** An update whose structs start past the room's clock for their client
///   (Yjs would keep them as `pendingStructs`) is stored and relayed like any other — a later update may
///   fill the gap, and clients keep it pending the same way — but only while the room holds fewer than
///   `maxPendingUpdates` of them (as this node sees it: appends in flight on other nodes may pass it by a
///   few); past that its sender is closed (`tooManyPending`) and it is not stored.
/// - **Lifetime.** Work waits for the first load; the room asks to be dropped once it has no members and
///   nothing in flight.
public struct YjsRoomMachine: Sendable {
    /// Log entries after which a room's log is merged into its snapshot: merging costs about the
    /// document's size (docs/yjs.md, *Cost*), so it is done in batches, and a joining node reads at most
    /// this many entries besides the snapshot.
    public static let compactionEntries = 500
    /// `compactionEntries`, or fewer where a test or fuzzer needs compactions sooner.
    public let compactionThreshold: Int

    /// At most this many updates, or `maxCoalescedBytes` of them, go out as one merged update; more
    /// flushes at once (bounds the merge's work and the message a member gets).
    public static let maxCoalescedUpdates = 256
    public static let maxCoalescedBytes = 256 << 10
    /// Whether applied updates wait for `flushRelay()` (and merge) instead of being relayed one by one.
    public let coalesceRelays: Bool
    /// Updates with missing dependencies the room may hold before it refuses more (`--yjs-max-pending-updates`).
    public static let defaultMaxPendingUpdates = 256
    public let maxPendingUpdates: Int

    /// Identifies an append in flight, handed back with its outcome.
    public struct AppendToken: Equatable, Sendable {
        public let member: ObjectIdentifier
        /// The room's seq when the update arrived (an update stored later than the next seq was concurrent).
        public let seqOnArrival: Int64
    }

    public enum AppendOutcome: Equatable, Sendable {
        case appended(seq: Int64, logLength: Int)
        case roomFull
        case failed(String)
    }

    /// Work waiting for the first load, run in arrival order once it is done.
    enum Pending: Sendable {
        case join(ObjectIdentifier)
        case step1(ObjectIdentifier, YStateVector)
        case update(ObjectIdentifier, YUpdate, [UInt8])
    }

    private var loading: [Pending]? = []
    var document = YjsDocument()
    /// The last update applied (the room's position in its log).
    public private(set) var seq: Int64 = 0
    /// The last update folded into Redis's snapshot, as far as this node knows.
    public private(set) var base: Int64 = 0
    public private(set) var members: Set<ObjectIdentifier> = []
    /// Updates from the channel waiting for a load or reload, or past a gap.
    private var buffered: [YjsPublishedUpdate] = []
    /// Applied updates not yet relayed (`coalesceRelays`), in seq order.
    private var pendingRelay: [(update: YUpdate, bytes: [UInt8], appendedAtMs: UInt64?)] = []
    private var pendingRelayBytes = 0
    public private(set) var reloading = false
    public private(set) var compacting = false
    /// This node's append made the log long enough: it compacts once it has applied that far.
    private var compactionDue = false
    public private(set) var appendsInFlight = 0
    /// An entry could not be decoded: the document lacks it, so it must not become the snapshot.
    private var skippedEntries = false
    public private(set) var dropped = false

    var awareness = YjsAwareness()
    /// Awareness updates over the per-user rate, per member: the latest entry per clientID.
    private var held: [ObjectIdentifier: (user: String, entries: [UInt64: YAwarenessUpdate.Entry])] = [:]
    /// Per-user awareness rate (`--presence-rate`, `--presence-burst`).
    private var buckets: [String: TokenBucket] = [:]
    private let awarenessRate: Double
    private let awarenessBurst: Double
    /// This node's awareness entries as last counted (`localAwareness`).
    private var reportedLocalAwareness = 0
    /// The document's pending updates as last counted (`pendingUpdates`).
    private var reportedPendingUpdates = 0
    /// This node registered in the room's awareness node set (renewed by `refreshAwareness`).
    private var registered = false
    /// Awareness changed (or is held) since the last tick: the owner ticks the room.
    public private(set) var needsTick = false

    public init(
        awarenessRate: Double, awarenessBurst: Double, compactionThreshold: Int = Self.compactionEntries, coalesceRelays: Bool = false,
        maxPendingUpdates: Int = Self.defaultMaxPendingUpdates
    ) {
        self.maxPendingUpdates = max(0, maxPendingUpdates)
        self.compactionThreshold = max(1, compactionThreshold)
        self.coalesceRelays = coalesceRelays
        self.awarenessRate = awarenessRate
        self.awarenessBurst = max(1, awarenessBurst)
    }

    public var isLive: Bool { loading == nil }
    public var awarenessEntries: Int { awareness.states().entries.count }
    public var localAwarenessEntries: Int { awareness.localCount }

    // MARK: Members and sync

    /// A member joined: once the room is loaded it gets the room's step 1 (y-websocket's server sends its
    /// step 1 first; the client answers with a step 2 of what the room lacks), then who is there.
    public mutating func join(_ member: ObjectIdentifier) -> [YjsRoomAction] {
        guard !dropped else { return [] }
        members.insert(member)
        return whenLive(.join(member))
    }

    public mutating func leave(_ member: ObjectIdentifier) -> [YjsRoomAction] {
        guard !dropped, members.remove(member) != nil else { return [] }
        held.removeValue(forKey: member)
        awareness.memberLeft(member)
        // At once, not at the next tick: the room may be dropped now, and the other nodes' clients
        // should see the removal within the presence TTL however this node fares.
        var actions = flushAwareness()
        actions += dropIfIdle()
        return actions
    }

    /// A member's step 1: answered with a step 2 holding exactly what it lacks.
    public mutating func step1(_ member: ObjectIdentifier, stateVector: YStateVector) -> [YjsRoomAction] {
        guard !dropped, members.contains(member) else { return [] }
        return whenLive(.step1(member, stateVector))
    }

    /// An editor's update (or step 2), decoded from `bytes`: appended to the log unless it adds nothing.
    public mutating func update(_ member: ObjectIdentifier, update: YUpdate, bytes: [UInt8]) -> [YjsRoomAction] {
        guard !dropped, members.contains(member) else { return [] }
        return whenLive(.update(member, update, bytes))
    }

    public mutating func appendCompleted(token: AppendToken, outcome: AppendOutcome) -> [YjsRoomAction] {
        guard !dropped else { return [] }
        appendsInFlight -= 1
        var actions: [YjsRoomAction] = [.count(.appendFinished)]
        switch outcome {
        case .appended(let stored, let logLength):
            actions.append(.count(.pushCommitted(concurrent: stored != token.seqOnArrival + 1)))
            // Compacted once this node has applied that far (the reply can come before the update itself
            // arrives on the channel): one node, the one whose append crossed the threshold.
            if logLength >= compactionThreshold { compactionDue = true }
            actions += compactIfDue()
        case .roomFull:
            actions += [.count(.pushFailed), .count(.roomFull), .close(member: token.member, .roomFull)]
        case .failed(let error):
            // The client still has the update: it sends it again in its step 2 after reconnecting.
            actions += [.count(.pushFailed), .log(.updateNotStored(error)), .close(member: token.member, .storageUnavailable)]
        }
        actions += dropIfIdle()
        return actions
    }

    /// An update from the room's channel (any node's, in seq order unless one was lost).
    public mutating func published(_ update: YjsPublishedUpdate) -> [YjsRoomAction] {
        guard !dropped else { return [] }
        guard isLive, !reloading else {
            buffered.append(update)
            return []
        }
        return apply(update) + reportPending()
    }

    /// The first read of the room.
    public mutating func loaded(_ result: Result<YjsLoadedRoom, YjsStorageFailure>) -> [YjsRoomAction] {
        guard !dropped, let waiting = loading else { return [] }
        let room: YjsLoadedRoom
        switch result {
        case .success(let read): room = read
        case .failure(let error): return [.log(.loadFailed(error.description))] + failRoom()
        }
        do {
            document = YjsDocument(snapshot: try Self.merged(room))
        } catch {
            return [.log(.roomUnreadable("\(error)"))] + failRoom()
        }
        seq = room.seq
        base = room.base
        loading = nil
        var actions: [YjsRoomAction] = []
        for work in waiting {
            switch work {
            case .join(let member): actions += greet(member)
            case .step1(let member, let vector): actions += answer(member, stateVector: vector)
            case .update(let member, let update, let bytes): actions += append(update, bytes: bytes, from: member)
            }
        }
        actions += drainBuffered()
        if seq - base >= Int64(compactionThreshold) { actions += compact() }
        actions += reportPending()
        actions += dropIfIdle()
        return actions
    }

    /// A reload's read (after a gap).
    public mutating func reloaded(_ result: Result<YjsLoadedRoom, YjsStorageFailure>) -> [YjsRoomAction] {
        guard !dropped else { return [] }
        reloading = false
        guard case .success(let loaded) = result, loaded.seq > seq else { return drainBuffered() + reportPending() }
        var actions: [YjsRoomAction] = []
        if loaded.base <= seq {
            // The log still holds what we missed.
            var next = seq
            for entry in loaded.entries.dropFirst(Int(seq - loaded.base)) {
                next += 1
                actions += apply(YjsPublishedUpdate(seq: next, appendedAtMs: nil, update: entry))
            }
        } else if let whole = try? Self.merged(loaded) {
            // Compacted past us: members get what the new snapshot holds beyond what they had.
            let had = document.stateVector()
            var reread = YjsDocument(snapshot: whole)
            let missing = reread.missing(for: had)
            document = reread
            seq = loaded.seq
            actions += relay(missing, bytes: missing.encoded(), appendedAtMs: nil)
        }
        base = max(base, loaded.base)
        actions += drainBuffered()
        actions += reportPending()
        return actions
    }

    public mutating func compacted(_ result: Result<(compacted: Bool, base: Int64), YjsStorageFailure>) -> [YjsRoomAction] {
        guard !dropped else { return [] }
        compacting = false
        var actions: [YjsRoomAction] = []
        switch result {
        case .success(let outcome):
            if outcome.compacted { actions.append(.count(.compaction)) }
            base = max(base, outcome.base)
            // Appends that crossed the threshold again while this one ran found it busy.
            actions += compactIfDue()
        case .failure(let error):
            // Nothing was written; the next append past the threshold tries again.
            actions.append(.log(.compactionFailed(error.description)))
        }
        actions += dropIfIdle()
        return actions
    }

    /// The periodic check: compare our seq with Redis's (a lost pub/sub message is otherwise only noticed
    /// at the next update).
    public func check() -> [YjsRoomAction] {
        guard !dropped, isLive, !reloading else { return [] }
        return [.readHead(seqAtRead: seq)]
    }

    /// Redis's seq, read when ours was `seqAtRead`.
    public mutating func headRead(_ head: Int64, seqAtRead: Int64) -> [YjsRoomAction] {
        guard !dropped, !reloading else { return [] }
        if head > seq { return reload() }
        // Everything applied when the read was sent had been appended before Redis ran it, so Redis's seq
        // can only be below that if Redis lost data (restarted without it, flushed, evicted): its seq would
        // start again below ours, and we would skip every new update as old. The clients hold the whole
        // document: they reconnect, and their step 2s write it back. (The room may have applied more since:
        // pub/sub and replies come on different connections.)
        if head < seqAtRead { return [.log(.lostInRedis(seq: seq, redisSeq: head))] + failRoom() }
        return []
    }

    // MARK: Awareness

    /// A member's awareness update: applied at once within the per-user rate, else held (the latest per
    /// client) until a tick has a token.
    public mutating func awareness(_ member: ObjectIdentifier, user: String, entries: [YAwarenessUpdate.Entry], nowMs: UInt64)
        -> [YjsRoomAction]
    {
        guard !dropped, members.contains(member) else { return [] }
        // Echoes of other clients' states cost no token and are not held: a held update holds at most the
        // member's own clientIDs.
        let (admissible, refused) = awareness.admissible(entries, from: member)
        var actions: [YjsRoomAction] = refused > 0 ? [.count(.awarenessClientsRefused)] : []
        guard !admissible.isEmpty else { return actions }
        if held[member] == nil, takeAwarenessToken(user: user, nowMs: nowMs) {
            awareness.receive(admissible, from: member)
            actions.append(.count(.awarenessAccepted))
        } else {
            actions.append(.count(.awarenessRateLimited))
            var pending = held[member] ?? (user, [:])
            for entry in admissible { pending.entries[entry.clientID] = entry }
            held[member] = pending
        }
        needsTick = true
        return actions
    }

    /// Query-awareness (type 3): every live entry of the room.
    public mutating func queryAwareness(_ member: ObjectIdentifier) -> [YjsRoomAction] {
        guard !dropped, members.contains(member) else { return [] }
        return flushRelay() + [.send(member: member, .awareness(awareness.states()))]
    }

    /// Another node's published awareness changes (or its heartbeat: no entries).
    public mutating func remoteAwareness(_ entries: [YAwarenessUpdate.Entry], fromNode node: String, nowMs: UInt64) {
        guard !dropped else { return }
        awareness.receive(entries, fromNode: node, nowMs: nowMs)
        if !entries.isEmpty { needsTick = true }
    }

    /// The other nodes' entries as Redis held them when the room opened here.
    public mutating func remoteAwarenessSnapshot(_ entries: [(node: String, entry: YAwarenessUpdate.Entry)], nowMs: UInt64) {
        guard !dropped else { return }
        for (node, entry) in entries { awareness.receive([entry], fromNode: node, nowMs: nowMs) }
        needsTick = true
    }

    /// Nodes announced gone (their registration expired): their entries are removed.
    public mutating func nodesGone(_ nodes: [String]) {
        guard !dropped else { return }
        awareness.nodesGone(nodes)
        needsTick = true
    }

    /// Once per tick: held updates that now have a token, then the room's changes in one message and this
    /// node's own changes to Redis.
    public mutating func awarenessTick(nowMs: UInt64) -> [YjsRoomAction] {
        guard !dropped else { return [] }
        needsTick = false
        var actions: [YjsRoomAction] = []
        for (member, pending) in held {
            guard members.contains(member), takeAwarenessToken(user: pending.user, nowMs: nowMs) else {
                needsTick = true
                continue
            }
            held.removeValue(forKey: member)
            // Checked again by `receive`: the room may have changed since the entries were held.
            awareness.receive(Array(pending.entries.values), from: member)
            actions.append(.count(.awarenessAccepted))
        }
        return actions + flushAwareness()
    }

    /// Every TTL/4: this node's registration and entries (a few per room), so Redis gets them back after
    /// losing them and a node that missed a change on pub/sub gets it now; the other nodes' heartbeat of
    /// this one.
    public mutating func refreshAwareness() -> [YjsRoomAction] {
        guard !dropped, awareness.localCount > 0 else { return [] }
        registered = true
        return [.writeAwareness(awareness.ownEntries(), refresh: true)]
    }

    /// Every sweep interval: entries of nodes not heard of for the presence TTL are removed here, and
    /// Redis's expired registrations are cleaned up (by whichever node sweeps first).
    public mutating func sweepAwareness(nowMs: UInt64, ttlMs: UInt64) -> [YjsRoomAction] {
        guard !dropped, awareness.hasRemote else { return [] }
        let silent = awareness.silentNodes(nowMs: nowMs, ttlMs: ttlMs)
        if !silent.isEmpty {
            awareness.nodesGone(silent)
            needsTick = true
        }
        return [.sweepAwareness]
    }

    /// On shutdown: every member's entries removed; the changes for Redis and the other nodes.
    public mutating func removeAllAwareness() -> [YAwarenessUpdate.Entry] {
        for member in members { awareness.memberLeft(member) }
        return awareness.drain().own
    }

    // MARK: Private

    private mutating func whenLive(_ work: Pending) -> [YjsRoomAction] {
        guard isLive else {
            loading?.append(work)
            return []
        }
        switch work {
        case .join(let member): return greet(member)
        case .step1(let member, let vector): return answer(member, stateVector: vector)
        case .update(let member, let update, let bytes): return append(update, bytes: bytes, from: member)
        }
    }

    private mutating func greet(_ member: ObjectIdentifier) -> [YjsRoomAction] {
        guard members.contains(member) else { return [] }
        var actions = flushRelay()
        actions.append(.send(member: member, .syncStep1(stateVector: document.stateVector().encoded())))
        let states = awareness.states()
        if !states.entries.isEmpty { actions.append(.send(member: member, .awareness(states))) }
        return actions
    }

    private mutating func answer(_ member: ObjectIdentifier, stateVector: YStateVector) -> [YjsRoomAction] {
        guard members.contains(member) else { return [] }
        return flushRelay() + [.send(member: member, .syncStep2(update: document.missing(for: stateVector).encoded()))]
    }

    private mutating func append(_ update: YUpdate, bytes: [UInt8], from member: ObjectIdentifier) -> [YjsRoomAction] {
        if document.isKnown(update) { return [] }
        // Only an update that adds waiting structs is refused: one filling gaps always gets in.
        let waiting = document.pendingUpdatesAdded(by: update)
        if waiting > 0, document.pendingUpdates + waiting > maxPendingUpdates {
            return [.count(.pendingRefused), .close(member: member, .tooManyPending)]
        }
        appendsInFlight += 1
        return [.count(.appendStarted), .append(bytes: bytes, token: AppendToken(member: member, seqOnArrival: seq))]
    }

    private mutating func apply(_ published: YjsPublishedUpdate) -> [YjsRoomAction] {
        guard published.seq > seq else { return [] }
        guard published.seq == seq + 1 else {
            buffered.append(published)
            return reload()
        }
        seq = published.seq
        let update: YUpdate
        do {
            update = try YUpdate(decoding: published.update)
        } catch {
            // Only validated updates are stored; one that does not decode is not relayed (it would break
            // every client), and the room is never compacted (its snapshot would lose the entry).
            skippedEntries = true
            return [.log(.undecodableEntry(seq: published.seq))]
        }
        document.apply(update)
        return relay(update, bytes: published.update, appendedAtMs: published.appendedAtMs) + compactIfDue()
    }

    /// Relays an applied update: at once, or (`coalesceRelays`) with the others of its batch.
    private mutating func relay(_ update: YUpdate, bytes: [UInt8], appendedAtMs: UInt64?) -> [YjsRoomAction] {
        guard coalesceRelays else { return [.relay(.update(bytes), appendedAtMs: appendedAtMs)] }
        let first = pendingRelay.isEmpty
        pendingRelay.append((update, bytes, appendedAtMs))
        pendingRelayBytes += bytes.count
        if pendingRelay.count >= Self.maxCoalescedUpdates || pendingRelayBytes >= Self.maxCoalescedBytes { return flushRelay() }
        return first ? [.scheduleRelay] : []
    }

    /// The updates applied since the last relay, to every member as one update (the only one as it came;
    /// several merged, with the oldest append time for the sync lag). Nothing if none are waiting.
    public mutating func flushRelay() -> [YjsRoomAction] {
        guard !pendingRelay.isEmpty else { return [] }
        defer {
            pendingRelay.removeAll(keepingCapacity: true)
            pendingRelayBytes = 0
        }
        if pendingRelay.count == 1 { return [.relay(.update(pendingRelay[0].bytes), appendedAtMs: pendingRelay[0].appendedAtMs)] }
        let merged = Yjs.mergeUpdates(pendingRelay.map(\.update))
        return [
            .relay(.update(merged.encoded()), appendedAtMs: pendingRelay.lazy.compactMap(\.appendedAtMs).min()),
            .count(.relayCoalesced(updates: pendingRelay.count)),
        ]
    }

    private mutating func drainBuffered() -> [YjsRoomAction] {
        let waiting = buffered.sorted { $0.seq < $1.seq }
        buffered.removeAll()
        var actions: [YjsRoomAction] = []
        for published in waiting { actions += apply(published) }
        return actions
    }

    /// Reads the room again after a gap: members get what they missed.
    private mutating func reload() -> [YjsRoomAction] {
        guard isLive, !reloading else { return [] }
        reloading = true
        return [.count(.reload), .reload]
    }

    private mutating func compactIfDue() -> [YjsRoomAction] {
        guard compactionDue, seq - base >= Int64(compactionThreshold) else { return [] }
        return compact()
    }

    private mutating func compact() -> [YjsRoomAction] {
        guard isLive, !compacting, !skippedEntries, seq > base else { return [] }
        compacting = true
        compactionDue = false
        return [.compact(base: base, upto: seq, snapshot: document.whole().encoded())]
    }

    private mutating func takeAwarenessToken(user: String, nowMs: UInt64) -> Bool {
        var bucket = buckets[user] ?? TokenBucket(rate: awarenessRate, burst: awarenessBurst, nowMs: nowMs)
        let taken = bucket.take(nowMs: nowMs)
        buckets[user] = bucket
        return taken
    }

    private mutating func flushAwareness() -> [YjsRoomAction] {
        let (broadcast, own) = awareness.drain()
        var actions: [YjsRoomAction] = []
        let local = awareness.localCount
        if local != reportedLocalAwareness {
            actions.append(.count(.localAwareness(delta: local - reportedLocalAwareness)))
            reportedLocalAwareness = local
        }
        if let broadcast { actions.append(.relayAwareness(broadcast)) }
        if !own.isEmpty {
            actions.append(.writeAwareness(own, refresh: !registered))
            registered = true
        }
        return actions
    }

    /// The room could not be read, or Redis lost it: its members reconnect (and sync again) rather than
    /// edit a document that is not there.
    private mutating func failRoom() -> [YjsRoomAction] {
        members.removeAll()
        held.removeAll()
        loading = nil
        return [.closeAll(.storageUnavailable)] + remove()
    }

    /// The change of the document's pending updates since last counted (all of them once dropped).
    private mutating func reportPending() -> [YjsRoomAction] {
        let now = dropped ? 0 : document.pendingUpdates
        guard now != reportedPendingUpdates else { return [] }
        defer { reportedPendingUpdates = now }
        return [.count(.pendingUpdates(delta: now - reportedPendingUpdates))]
    }

    private mutating func dropIfIdle() -> [YjsRoomAction] {
        guard members.isEmpty, isLive, !reloading, !compacting, appendsInFlight == 0 else { return [] }
        return remove()
    }

    private mutating func remove() -> [YjsRoomAction] {
        guard !dropped else { return [] }
        dropped = true
        // No member is left to relay to (or they are all being closed: they sync again when they reconnect).
        pendingRelay.removeAll()
        pendingRelayBytes = 0
        var actions: [YjsRoomAction] = []
        if reportedLocalAwareness != 0 {
            actions.append(.count(.localAwareness(delta: -reportedLocalAwareness)))
            reportedLocalAwareness = 0
        }
        actions += reportPending()  // dropped: all of it withdrawn
        return actions + [.drop]
    }

    /// Snapshot and log as one update.
    static func merged(_ loaded: YjsLoadedRoom) throws -> YUpdate {
        var parts: [YUpdate] = []
        if let snapshot = loaded.snapshot { parts.append(try YUpdate(decoding: snapshot)) }
        for entry in loaded.entries { parts.append(try YUpdate(decoding: entry)) }
        return parts.isEmpty ? .empty : Yjs.mergeUpdates(parts)
    }
}

/// A failed storage call, as the room logs it.
public struct YjsStorageFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
