import Logging
import NIOConcurrencyHelpers
import NIOCore
import TandemCore
import TandemRedis
import TandemYjs

/// The Yjs rooms of a node: each room lives on one event loop (`YjsRoomShard`, picked by the room's
/// name), where its members, document and Redis replies meet.
final class YjsRooms: Sendable {
    let shards: [YjsRoomShard]
    /// Open Yjs connections, for shutdown (they are not in the protocol-v1 `SessionRegistry`).
    private let connections = NIOLockedValueBox<[ObjectIdentifier: YjsConnection]>([:])

    init(loops: [EventLoop], dependencies: YjsRoomShard.Dependencies) {
        shards = loops.map { YjsRoomShard(eventLoop: $0, dependencies: dependencies) }
    }

    func shard(for room: String) -> YjsRoomShard {
        // FNV-1a, as for doc shards: stable across processes, so a room's work stays on one loop.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in room.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return shards[Int(hash % UInt64(shards.count))]
    }

    /// A message on a Yjs channel (from the subscriber's thread): an update (`SEQ …`), another node's
    /// awareness changes (`a NODE …`), or a sweep's dead nodes (`{"k":"g",…}`).
    func received(channel: String, payload: [UInt8]) {
        guard let room = YjsKeys.room(fromChannel: channel), let first = payload.first else { return }
        if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") {
            guard let update = YjsPublishedUpdate(payload: payload) else { return }
            shard(for: room).received(update, room: room)
        } else if let (node, update) = YjsAwarenessStore.published(payload) {
            shard(for: room).receivedAwareness(update, fromNode: node, room: room)
        } else if let gone = YjsAwarenessStore.goneNodes(payload) {
            shard(for: room).nodesGone(gone, room: room)
        }
    }

    /// The subscriber (re)subscribed: whatever was published meanwhile is lost, so every room checks its seq.
    func subscriberReady() { shards.forEach { $0.checkAll() } }

    func start() { shards.forEach { $0.start() } }
    func stop() { shards.forEach { $0.stop() } }

    func register(_ connection: YjsConnection) {
        connections.withLockedValue { $0[ObjectIdentifier(connection)] = connection }
    }

    func remove(_ connection: YjsConnection) {
        _ = connections.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    var allConnections: [YjsConnection] { connections.withLockedValue { Array($0.values) } }
    var connectionCount: Int { connections.withLockedValue { $0.count } }
}

/// The rooms of one event loop. Confined to that loop: entry points hop with `execute`.
final class YjsRoomShard: @unchecked Sendable {  // @unchecked: confined to `eventLoop`; entry points hop
    struct Dependencies: Sendable {
        var store: YjsStore
        var awarenessStore: YjsAwarenessStore
        var nodeID: String
        /// Awareness as presence: the TTL, refresh interval, per-user rate and burst of `--presence-*`.
        var presence: PresenceSettings
        var tickMs: Int
        var sweepMs: Int
        var subscriber: RedisSubscriber
        var metrics: TandemMetrics
        var clock: NodeClock
        var logger: Logger
    }

    let eventLoop: EventLoop
    private let store: YjsStore
    private let awarenessStore: YjsAwarenessStore
    private let nodeID: String
    private let presence: PresenceSettings
    private let tickMs: Int
    private let sweepMs: Int
    private var tickTask: RepeatedTask?
    private var sweepTask: RepeatedTask?
    private var refreshTask: RepeatedTask?
    /// Rooms with awareness changes (or held updates) for the next tick.
    private var dirty: Set<String> = []
    private let subscriber: RedisSubscriber
    private let metrics: TandemMetrics
    private let clock: NodeClock
    private let logger: Logger
    private var rooms: [String: YjsRoom] = [:]
    private var checkTask: RepeatedTask?

    /// Log entries after which a room's log is merged into its snapshot: merging costs about the
    /// document's size (docs/yjs.md, *Cost*), so it is done in batches, and a joining node reads at most
    /// this many entries besides the snapshot.
    static let compactionEntries = 500
    /// How often each room's seq is compared with Redis's (a lost pub/sub message is otherwise only
    /// noticed at the next update) and its keys' expiry renewed.
    static let checkInterval: TimeAmount = .seconds(2)

    init(eventLoop: EventLoop, dependencies: Dependencies) {
        self.eventLoop = eventLoop
        store = dependencies.store
        awarenessStore = dependencies.awarenessStore
        nodeID = dependencies.nodeID
        presence = dependencies.presence
        tickMs = dependencies.tickMs
        sweepMs = dependencies.sweepMs
        subscriber = dependencies.subscriber
        metrics = dependencies.metrics
        clock = dependencies.clock
        logger = dependencies.logger
    }

    func start() {
        eventLoop.execute { [self] in
            checkTask = eventLoop.scheduleRepeatedTask(initialDelay: Self.checkInterval, delay: Self.checkInterval) { [self] _ in
                checkRooms()
            }
            let tick = TimeAmount.milliseconds(Int64(tickMs))
            tickTask = eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in awarenessTick() }
            let sweep = TimeAmount.milliseconds(Int64(sweepMs))
            sweepTask = eventLoop.scheduleRepeatedTask(initialDelay: sweep, delay: sweep) { [self] _ in sweepAwareness() }
            let refresh = TimeAmount.milliseconds(Int64(presence.refreshIntervalMs))
            refreshTask = eventLoop.scheduleRepeatedTask(initialDelay: refresh, delay: refresh) { [self] _ in
                refreshAwareness()
            }
        }
    }

    func stop() {
        eventLoop.execute { [self] in
            for task in [checkTask, tickTask, sweepTask, refreshTask] { task?.cancel() }
            checkTask = nil
            tickTask = nil
            sweepTask = nil
            refreshTask = nil
        }
    }

    /// On shutdown: this node's awareness entries are removed from Redis and announced removed to the
    /// other nodes (their clients are being closed).
    func removeAllAwareness() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            let writes = rooms.values.compactMap { room -> EventLoopFuture<Void>? in
                for member in room.members.keys { room.awareness.memberLeft(member) }
                let (_, own) = room.awareness.drain()
                guard !own.isEmpty else { return nil }
                return awarenessStore.write(room: room.name, changes: own, refresh: false, on: eventLoop)
            }
            return EventLoopFuture.andAllComplete(writes, on: eventLoop)
        }
    }

    // MARK: Entry points (any thread)

    func join(_ member: any YjsMember, room name: String) {
        eventLoop.execute { [self] in
            let room = room(named: name)
            room.members[ObjectIdentifier(member)] = member
            whenLive(room) { [self] in
                // y-websocket's server sends its step 1 first; the client answers with a step 2 of what we lack.
                let vector = room.document.stateVector()
                send(.syncStep1(stateVector: vector.encoded()), to: member)
                // Then who is there, as y-websocket's server does.
                let states = room.awareness.states()
                if !states.entries.isEmpty { send(.awareness(states), to: member) }
            }
        }
    }

    func leave(_ member: any YjsMember, room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            let id = ObjectIdentifier(member)
            room.members.removeValue(forKey: id)
            room.held.removeValue(forKey: id)
            room.awareness.memberLeft(id)
            // At once, not at the next tick: the room may be dropped now, and the other nodes' clients
            // should see the removal within the presence TTL however this node fares.
            flushAwareness(room)
            dropIfIdle(room)
        }
    }

    /// A client's step 1: answered with a step 2 holding exactly what it lacks.
    func step1(_ member: any YjsMember, room name: String, stateVector: YStateVector) {
        eventLoop.execute { [self] in
            guard let room = rooms[name], room.members[ObjectIdentifier(member)] != nil else { return }
            whenLive(room) { [self] in
                let missing = room.document.missing(for: stateVector)
                send(.syncStep2(update: missing.encoded()), to: member)
            }
        }
    }

    /// An editor's update (or step 2): appended to the room's log unless it adds nothing; every member,
    /// the sender included, gets it from the room's channel in the room's order.
    func update(_ member: any YjsMember, room name: String, update: YUpdate, bytes: [UInt8]) {
        eventLoop.execute { [self] in
            guard let room = rooms[name], room.members[ObjectIdentifier(member)] != nil else { return }
            whenLive(room) { [self] in append(update, bytes: bytes, from: member, to: room) }
        }
    }

    func received(_ published: YjsPublishedUpdate, room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            if case .live = room.phase, !room.reloading {
                apply(published, to: room)
            } else {
                room.buffered.append(published)
            }
        }
    }

    /// A member's awareness update: applied at once within the per-user rate (`--presence-rate`,
    /// `--presence-burst`, as cursors are), else held (the latest per client) until the rate allows;
    /// broadcast at the next tick with every other change of the room.
    func awareness(_ member: any YjsMember, user: String, room name: String, update: YAwarenessUpdate) {
        eventLoop.execute { [self] in
            guard let room = rooms[name], room.members[ObjectIdentifier(member)] != nil else { return }
            let id = ObjectIdentifier(member)
            // Echoes of other clients' states cost no token and are not held: a held update holds at most
            // the member's own clientIDs.
            let (entries, refused) = room.awareness.admissible(update.entries, from: id)
            if refused > 0 { metrics.clientLimitReached(.yjsAwarenessClients) }
            guard !entries.isEmpty else { return }
            if room.held[id] == nil, takeAwarenessToken(room, user: user) {
                applyAwareness(entries, from: member, in: room)
            } else {
                metrics.presenceUpdate(.rateLimited)
                var held = room.held[id] ?? (user, [:])
                for entry in entries { held.entries[entry.clientID] = entry }
                room.held[id] = held
            }
            dirty.insert(name)
        }
    }

    /// Query-awareness (type 3): answered with every live entry of the room.
    func queryAwareness(_ member: any YjsMember, room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name], room.members[ObjectIdentifier(member)] != nil else { return }
            send(.awareness(room.awareness.states()), to: member)
        }
    }

    func receivedAwareness(_ update: YAwarenessUpdate, fromNode node: String, room name: String) {
        guard node != nodeID else { return }
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            room.awareness.receive(update.entries, fromNode: node, nowMs: clock.nowMs())
            if !update.entries.isEmpty { dirty.insert(name) }
        }
    }

    func nodesGone(_ nodes: [String], room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            room.awareness.nodesGone(nodes.filter { $0 != nodeID })
            dirty.insert(name)
        }
    }

    func checkAll() {
        eventLoop.execute { [self] in checkRooms() }
    }

    /// The rooms on this loop, for /api/status.
    func status() -> EventLoopFuture<[YjsRoomStatus]> {
        eventLoop.submit { [self] in
            rooms.values.map { room in
                YjsRoomStatus(
                    room: room.name, localMembers: room.members.count, awareness: room.awareness.states().entries.count,
                    localAwareness: room.awareness.localCount, seq: room.seq, compactedThrough: room.base)
            }
        }
    }

    // MARK: On the loop

    private func room(named name: String) -> YjsRoom {
        if let room = rooms[name] { return room }
        let room = YjsRoom(name: name)
        rooms[name] = room
        metrics.yjsRooms.increment()
        // Subscribed before the read: an update appended in between arrives on the channel (and is skipped
        // if the read had it already) or, if the subscription came too late, shows up as a gap.
        subscriber.subscribe(YjsKeys.channel(name))
        load(room)
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        awarenessStore.snapshot(room: name, on: eventLoop).whenSuccess { [self] entries in
            let room = bound.value
            let now = clock.nowMs()
            for (node, entry) in entries where node != nodeID { room.awareness.receive([entry], fromNode: node, nowMs: now) }
            dirty.insert(room.name)
        }
        return room
    }

    // MARK: Awareness (on the loop)

    private func takeAwarenessToken(_ room: YjsRoom, user: String) -> Bool {
        let now = clock.nowMs()
        var bucket = room.buckets[user] ?? TokenBucket(rate: presence.rate, burst: max(1, presence.burst), nowMs: now)
        let taken = bucket.take(nowMs: now)
        room.buckets[user] = bucket
        return taken
    }

    private func applyAwareness(_ entries: [YAwarenessUpdate.Entry], from member: any YjsMember, in room: YjsRoom) {
        // Checked again: the room may have changed since the entries were held.
        room.awareness.receive(entries, from: ObjectIdentifier(member))
        metrics.presenceUpdate(.accepted)
    }

    /// Once per `--tick-ms`: each changed room's awareness in one message, encoded once, to every member;
    /// this node's own changes to Redis and the other nodes in one script call.
    private func awarenessTick() {
        let names = dirty
        dirty.removeAll(keepingCapacity: true)
        for name in names {
            guard let room = rooms[name] else { continue }
            for (id, held) in room.held {
                guard let member = room.members[id], takeAwarenessToken(room, user: held.user) else {
                    dirty.insert(name)
                    continue
                }
                room.held.removeValue(forKey: id)
                applyAwareness(Array(held.entries.values), from: member, in: room)
            }
            flushAwareness(room)
        }
    }

    private func flushAwareness(_ room: YjsRoom) {
        let (broadcast, own) = room.awareness.drain()
        let local = room.awareness.localCount
        metrics.presenceSessions.increment(by: Double(local - room.reportedLocalAwareness))
        room.reportedLocalAwareness = local
        if let broadcast {
            relay(.awareness(broadcast), to: room, appendedAtMs: nil, awareness: true)
        }
        guard !own.isEmpty else { return }
        let refresh = !room.registered
        room.registered = true
        awarenessStore.write(room: room.name, changes: own, refresh: refresh, on: eventLoop).whenFailure { [logger] error in
            logger.debug("yjs awareness write failed", metadata: ["error": "\(error)"])
        }
    }

    /// Every TTL/4: this node's registration in each room where its clients have awareness entries, with
    /// the entries themselves (a few per room): Redis gets them back after losing them (a restart), and a
    /// node that missed a change on pub/sub gets it now (the others ignore what they have: same clock).
    /// It is also the other nodes' heartbeat of this one.
    private func refreshAwareness() {
        for room in rooms.values where room.awareness.localCount > 0 {
            room.registered = true
            _ = awarenessStore.write(room: room.name, changes: room.awareness.ownEntries(), refresh: true, on: eventLoop)
        }
    }

    /// Every `--sweep-ms`: entries of nodes not heard of for the presence TTL are removed here, and nodes
    /// whose registration expired are deleted from Redis and announced gone (by whichever node sweeps first).
    private func sweepAwareness() {
        let now = clock.nowMs()
        for room in rooms.values where room.awareness.hasRemote {
            let silent = room.awareness.silentNodes(nowMs: now, ttlMs: presence.ttlMs)
            if !silent.isEmpty {
                room.awareness.nodesGone(silent)
                dirty.insert(room.name)
            }
            _ = awarenessStore.sweep(room: room.name, on: eventLoop)
        }
    }

    private func whenLive(_ room: YjsRoom, _ work: @escaping () -> Void) {
        if case .loading(var waiting) = room.phase {
            waiting.append(work)
            room.phase = .loading(waiting)
        } else {
            work()
        }
    }

    private func load(_ room: YjsRoom) {
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        store.load(room: room.name, on: eventLoop).whenComplete { [self] result in
            let room = bound.value
            switch result {
            case .success(let loaded):
                do {
                    room.document = YjsDocument(snapshot: try Self.merged(loaded))
                } catch {
                    logger.error("yjs room unreadable", metadata: ["room": "\(room.name)", "error": "\(error)"])
                    failRoom(room)
                    return
                }
                room.seq = loaded.seq
                room.base = loaded.base
                guard case .loading(let waiting) = room.phase else { return }
                room.phase = .live
                waiting.forEach { $0() }
                drainBuffered(room)
                if room.seq - room.base >= Int64(Self.compactionEntries) { compact(room) }
                dropIfIdle(room)
            case .failure(let error):
                logger.warning("yjs room load failed", metadata: ["room": "\(room.name)", "error": "\(error)"])
                failRoom(room)
            }
        }
    }

    /// Snapshot and log as one update.
    private static func merged(_ loaded: YjsLoadedRoom) throws -> YUpdate {
        var parts: [YUpdate] = []
        if let snapshot = loaded.snapshot { parts.append(try YUpdate(decoding: snapshot)) }
        for entry in loaded.entries { parts.append(try YUpdate(decoding: entry)) }
        return parts.isEmpty ? .empty : Yjs.mergeUpdates(parts)
    }

    /// The room could not be read: its members reconnect (and sync again) rather than edit a document
    /// that is not there.
    private func failRoom(_ room: YjsRoom) {
        for member in room.members.values {
            member.eventLoop.execute { member.close(.yjsStorageUnavailable) }
        }
        room.members.removeAll()
        room.phase = .live
        remove(room)
    }

    private func append(_ update: YUpdate, bytes: [UInt8], from member: any YjsMember, to room: YjsRoom) {
        if room.document.isKnown(update) { return }
        let seqOnArrival = room.seq
        room.appendsInFlight += 1
        metrics.yjsAppendsInFlight.increment()
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        store.append(room: room.name, update: bytes, on: eventLoop).whenComplete { [self] result in
            let room = bound.value
            room.appendsInFlight -= 1
            metrics.yjsAppendsInFlight.decrement()
            switch result {
            case .success(.appended(let seq, let logLength)):
                metrics.syncPush("commit")
                // Another update got in after the last one the room had when this one arrived: the sender
                // made it without having seen that one.
                if seq != seqOnArrival + 1 { metrics.syncConcurrentPushes.increment() }
                // Compacted once this node has applied that far (the reply can come before the update
                // itself arrives on the channel): one node, the one whose append crossed the threshold.
                if logLength >= Self.compactionEntries { room.compactionDue = true }
                compactIfDue(room)
            case .success(.roomFull):
                metrics.syncPush("error")
                metrics.clientLimitReached(.yjsRoomBytes)
                member.eventLoop.execute { member.close(.yjsRoomFull) }
            case .failure(let error):
                metrics.syncPush("error")
                logger.warning("yjs update not stored", metadata: ["room": "\(room.name)", "error": "\(error)"])
                // The client still has the update: it sends it again in its step 2 after reconnecting.
                member.eventLoop.execute { member.close(.yjsStorageUnavailable) }
            }
            dropIfIdle(room)
        }
    }

    private func apply(_ published: YjsPublishedUpdate, to room: YjsRoom) {
        guard published.seq > room.seq else { return }
        guard published.seq == room.seq + 1 else {
            room.buffered.append(published)
            reload(room)
            return
        }
        room.seq = published.seq
        do {
            room.document.apply(try YUpdate(decoding: published.update))
        } catch {
            // Only validated updates are stored; one that does not decode is not relayed (it would break
            // every client), and the room is never compacted (its snapshot would lose the entry).
            logger.error("undecodable yjs log entry", metadata: ["room": "\(room.name)", "seq": "\(published.seq)"])
            room.skippedEntries = true
            return
        }
        relay(YProtocolMessage.update(published.update), to: room, appendedAtMs: published.appendedAtMs)
        compactIfDue(room)
    }

    private func compactIfDue(_ room: YjsRoom) {
        guard room.compactionDue, room.seq - room.base >= Int64(Self.compactionEntries) else { return }
        compact(room)
    }

    private func drainBuffered(_ room: YjsRoom) {
        let buffered = room.buffered.sorted { $0.seq < $1.seq }
        room.buffered.removeAll()
        for published in buffered { apply(published, to: room) }
    }

    /// Reads the room again after a gap: members get what they missed (the log entries, or what the
    /// new snapshot holds beyond what they had when the log was compacted past them).
    private func reload(_ room: YjsRoom) {
        guard case .live = room.phase, !room.reloading else { return }
        room.reloading = true
        metrics.yjsRoomReloads.increment()
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        store.load(room: room.name, on: eventLoop).whenComplete { [self] result in
            let room = bound.value
            room.reloading = false
            guard case .success(let loaded) = result, loaded.seq > room.seq else {
                drainBuffered(room)
                return
            }
            if loaded.base <= room.seq {
                let missing = loaded.entries.dropFirst(Int(room.seq - loaded.base))
                var seq = room.seq
                for entry in missing {
                    seq += 1
                    apply(YjsPublishedUpdate(seq: seq, appendedAtMs: nil, update: entry), to: room)
                }
            } else if let whole = try? Self.merged(loaded) {
                let had = room.document.stateVector()
                var document = YjsDocument(snapshot: whole)
                let missing = document.missing(for: had)
                room.document = document
                room.seq = loaded.seq
                relay(.update(missing.encoded()), to: room, appendedAtMs: nil)
            }
            room.base = max(room.base, loaded.base)
            drainBuffered(room)
        }
    }

    private func compact(_ room: YjsRoom) {
        guard case .live = room.phase, !room.compacting, !room.skippedEntries, room.seq > room.base else { return }
        room.compacting = true
        room.compactionDue = false
        let upto = room.seq
        let snapshot = room.document.whole().encoded()
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        store.compact(room: room.name, base: room.base, upto: upto, snapshot: snapshot, on: eventLoop).whenComplete { [self] result in
            let room = bound.value
            room.compacting = false
            switch result {
            case .success(let outcome):
                if outcome.compacted { metrics.yjsCompactions.increment() }
                room.base = max(room.base, outcome.base)
                // Appends that crossed the threshold again while this one ran found it busy.
                compactIfDue(room)
            case .failure(let error):
                // Nothing was written; the next append past the threshold tries again.
                logger.warning("yjs compaction failed", metadata: ["room": "\(room.name)", "error": "\(error)"])
            }
            dropIfIdle(room)
        }
    }

    private func checkRooms() {
        for room in rooms.values {
            guard case .live = room.phase, !room.reloading else { continue }
            let bound = NIOLoopBound(room, eventLoop: eventLoop)
            // Everything applied by now was appended before Redis runs this read, so Redis's seq can only
            // be below this if Redis lost data. (The room may apply more before the reply is handled:
            // pub/sub and replies come on different connections.)
            let seqAtRead = room.seq
            store.head(room: room.name, on: eventLoop).whenSuccess { [self] head in
                let room = bound.value
                guard rooms[room.name] === room, !room.reloading else { return }
                if head > room.seq {
                    reload(room)
                } else if head < seqAtRead {
                    // Redis lost the room (restarted without its data, flushed, evicted): its seq would
                    // start again below ours, and we would skip every new update as old. The clients hold
                    // the whole document: they reconnect, and their step 2s write it back.
                    logger.warning(
                        "yjs room lost in Redis; clients reconnect to restore it",
                        metadata: ["room": "\(room.name)", "seq": "\(room.seq)", "redis.seq": "\(head)"])
                    failRoom(room)
                }
            }
        }
    }

    private func send(_ message: YProtocolMessage, to member: any YjsMember) {
        let buffer = ByteBuffer(bytes: message.encoded())
        member.eventLoop.execute { member.deliver(buffer, appendedAtMs: nil) }
    }

    /// Encoded once; one hop per event loop of the members.
    private func relay(_ message: YProtocolMessage, to room: YjsRoom, appendedAtMs: UInt64?, awareness: Bool = false) {
        guard !room.members.isEmpty else { return }
        let buffer = ByteBuffer(bytes: message.encoded())
        if awareness {
            metrics.fanoutMessages.increment(by: Int64(room.members.count))
            metrics.fanoutBytes.increment(by: Int64(room.members.count * buffer.readableBytes))
        }
        let byLoop = Dictionary(grouping: room.members.values) { ObjectIdentifier($0.eventLoop) }
        for members in byLoop.values {
            members[0].eventLoop.execute {
                for member in members { member.deliver(buffer, appendedAtMs: appendedAtMs) }
            }
        }
    }

    private func dropIfIdle(_ room: YjsRoom) {
        guard room.members.isEmpty, case .live = room.phase, !room.reloading, !room.compacting, room.appendsInFlight == 0
        else { return }
        remove(room)
    }

    private func remove(_ room: YjsRoom) {
        guard rooms[room.name] === room else { return }
        metrics.presenceSessions.increment(by: Double(-room.reportedLocalAwareness))
        room.reportedLocalAwareness = 0
        rooms.removeValue(forKey: room.name)
        metrics.yjsRooms.decrement()
        subscriber.unsubscribe(YjsKeys.channel(room.name))
    }
}

/// One Yjs room in /api/status.
struct YjsRoomStatus: Encodable, Sendable {
    var room: String
    /// Yjs connections to the room on this node.
    var localMembers: Int
    /// Live awareness entries (every node's), and those of this node's connections.
    var awareness: Int
    var localAwareness: Int
    /// Updates in the room's log so far, and the last one merged into its snapshot (as this node knows).
    var seq: Int64
    var compactedThrough: Int64
}

/// One room's state on its loop (`YjsRoomShard`).
final class YjsRoom {
    enum Phase {
        /// Being read from Redis; the work waiting for it runs in order once it is.
        case loading([() -> Void])
        case live
    }

    let name: String
    var phase: Phase = .loading([])
    var document = YjsDocument()
    /// The last update applied (the room's position in its log).
    var seq: Int64 = 0
    /// The last update folded into Redis's snapshot, as far as this node knows.
    var base: Int64 = 0
    var members: [ObjectIdentifier: any YjsMember] = [:]
    /// Updates from the channel waiting for a load or reload, or past a gap.
    var buffered: [YjsPublishedUpdate] = []
    var reloading = false
    var compacting = false
    /// This node's append made the log long enough: it compacts once it has applied that far.
    var compactionDue = false
    var appendsInFlight = 0
    var awareness = YjsAwareness()
    /// Awareness updates over the per-user rate, per member: the latest entry per clientID.
    var held: [ObjectIdentifier: (user: String, entries: [UInt64: YAwarenessUpdate.Entry])] = [:]
    /// Per-user awareness rate (`--presence-rate`, `--presence-burst`).
    var buckets: [String: TokenBucket] = [:]
    /// This node's awareness entries as counted in tandem_presence_sessions.
    var reportedLocalAwareness = 0
    /// This node registered in the room's awareness node set (renewed by `refreshAwareness`).
    var registered = false
    /// An entry could not be decoded: the document lacks it, so it must not become the snapshot.
    var skippedEntries = false

    init(name: String) { self.name = name }
}
