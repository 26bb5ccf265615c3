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

/// The rooms of one event loop. Confined to that loop: entry points hop with `execute`. Each room's
/// decisions are its `YjsRoomMachine` (TandemCore, pure); this carries out the actions it returns —
/// Redis calls, deliveries to members, metrics, logs — and feeds the replies back to it.
///
/// The confinement is checked, as `DocShard`'s: what changes is in `LoopState`, reached only through a
/// `NIOLoopBoundBox` (the loop is checked on every access), under its old names.
final class YjsRoomShard: Sendable {
    struct Dependencies: Sendable {
        var store: YjsStore
        var awarenessStore: YjsAwarenessStore
        var nodeID: String
        /// Awareness as presence: the TTL, refresh interval, per-user rate and burst of `--presence-*`.
        var presence: PresenceSettings
        var tickMs: Int
        var sweepMs: Int
        /// `--yjs-relay-ms`: a room's coalescing window (0: relay each update as it is applied).
        var relayMs: Int
        /// `--yjs-max-pending-updates`: updates with missing dependencies a room holds before it refuses more.
        var maxPendingUpdates: Int = YjsRoomMachine.defaultMaxPendingUpdates
        var subscriber: any RedisChannelSubscriber
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
    private let relayWindow: TimeAmount
    private let coalesceRelays: Bool
    private let maxPendingUpdates: Int
    private let subscriber: any RedisChannelSubscriber
    private let metrics: TandemMetrics
    private let clock: NodeClock
    private let logger: Logger
    /// The shard's mutable state, on `eventLoop` only.
    private let confined: NIOLoopBoundBox<LoopState>

    private final class LoopState {
        var rooms: [String: YjsRoom] = [:]
        /// Rooms with awareness changes (or held updates) for the next tick.
        var dirty: Set<String> = []
        var tickTask: RepeatedTask?
        var sweepTask: RepeatedTask?
        var refreshTask: RepeatedTask?
        var checkTask: RepeatedTask?
    }

    // The loop state under its old names: the collections in place (`_modify`), the tasks whole.
    private var rooms: [String: YjsRoom] {
        get { confined.value.rooms }
        _modify { yield &confined.value.rooms }
    }
    private var dirty: Set<String> {
        get { confined.value.dirty }
        _modify { yield &confined.value.dirty }
    }
    private var tickTask: RepeatedTask? {
        get { confined.value.tickTask }
        set { confined.value.tickTask = newValue }
    }
    private var sweepTask: RepeatedTask? {
        get { confined.value.sweepTask }
        set { confined.value.sweepTask = newValue }
    }
    private var refreshTask: RepeatedTask? {
        get { confined.value.refreshTask }
        set { confined.value.refreshTask = newValue }
    }
    private var checkTask: RepeatedTask? {
        get { confined.value.checkTask }
        set { confined.value.checkTask = newValue }
    }

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
        relayWindow = .milliseconds(Int64(dependencies.relayMs))
        coalesceRelays = dependencies.relayMs > 0
        maxPendingUpdates = dependencies.maxPendingUpdates
        subscriber = dependencies.subscriber
        metrics = dependencies.metrics
        clock = dependencies.clock
        logger = dependencies.logger
        // Made off the loop (before the node starts): the new state is handed over, nothing else holds it.
        confined = .makeBoxSendingValue(LoopState(), eventLoop: eventLoop)
    }

    /// The timers hold the shard weakly, as DocShard's do: the shard holds its tasks, so a strong capture
    /// is a cycle that only `stop()` breaks, and a node whose loops closed before that `stop()` ran (or
    /// that never got to it) kept its shards, loops and whole context alive (LeakSanitizer, 2026-12-05).
    func start() {
        eventLoop.execute { [self] in
            checkTask = eventLoop.scheduleRepeatedTask(initialDelay: Self.checkInterval, delay: Self.checkInterval) { [weak self] _ in
                self?.checkRooms()
            }
            let tick = TimeAmount.milliseconds(Int64(tickMs))
            tickTask = eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [weak self] _ in self?.awarenessTick() }
            let sweep = TimeAmount.milliseconds(Int64(sweepMs))
            sweepTask = eventLoop.scheduleRepeatedTask(initialDelay: sweep, delay: sweep) { [weak self] _ in self?.sweepAwareness() }
            let refresh = TimeAmount.milliseconds(Int64(presence.refreshIntervalMs))
            refreshTask = eventLoop.scheduleRepeatedTask(initialDelay: refresh, delay: refresh) { [weak self] _ in
                guard let self else { return }
                for room in rooms.values { perform(room.machine.refreshAwareness(), in: room) }
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
                let own = room.machine.removeAllAwareness()
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
            perform(room.machine.join(ObjectIdentifier(member)), in: room)
        }
    }

    func leave(_ member: any YjsMember, room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            room.members.removeValue(forKey: ObjectIdentifier(member))
            perform(room.machine.leave(ObjectIdentifier(member)), in: room)
        }
    }

    /// A client's step 1: answered with a step 2 holding exactly what it lacks.
    func step1(_ member: any YjsMember, room name: String, stateVector: YStateVector) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            perform(room.machine.step1(ObjectIdentifier(member), stateVector: stateVector), in: room)
        }
    }

    /// An editor's update (or step 2): appended to the room's log unless it adds nothing; every member,
    /// the sender included, gets it from the room's channel in the room's order.
    func update(_ member: any YjsMember, room name: String, update: YUpdate, bytes: [UInt8]) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            perform(room.machine.update(ObjectIdentifier(member), update: update, bytes: bytes), in: room)
        }
    }

    func received(_ published: YjsPublishedUpdate, room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            perform(room.machine.published(published), in: room)
        }
    }

    /// A member's awareness update: applied at once within the per-user rate (`--presence-rate`,
    /// `--presence-burst`, as cursors are), else held (the latest per client) until the rate allows;
    /// broadcast at the next tick with every other change of the room.
    func awareness(_ member: any YjsMember, user: String, room name: String, update: YAwarenessUpdate) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            let actions = room.machine.awareness(ObjectIdentifier(member), user: user, entries: update.entries, nowMs: clock.nowMs())
            perform(actions, in: room)
        }
    }

    /// Query-awareness (type 3): answered with every live entry of the room.
    func queryAwareness(_ member: any YjsMember, room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            perform(room.machine.queryAwareness(ObjectIdentifier(member)), in: room)
        }
    }

    func receivedAwareness(_ update: YAwarenessUpdate, fromNode node: String, room name: String) {
        guard node != nodeID else { return }
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            room.machine.remoteAwareness(update.entries, fromNode: node, nowMs: clock.nowMs())
            perform([], in: room)
        }
    }

    func nodesGone(_ nodes: [String], room name: String) {
        eventLoop.execute { [self] in
            guard let room = rooms[name] else { return }
            room.machine.nodesGone(nodes.filter { $0 != nodeID })
            perform([], in: room)
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
                    room: room.name, localMembers: room.members.count, awareness: room.machine.awarenessEntries,
                    localAwareness: room.machine.localAwarenessEntries, seq: room.machine.seq, compactedThrough: room.machine.base)
            }
        }
    }

    // MARK: On the loop

    private func room(named name: String) -> YjsRoom {
        if let room = rooms[name] { return room }
        let room = YjsRoom(
            name: name, machine: YjsRoomMachine(
                    awarenessRate: presence.rate, awarenessBurst: presence.burst, coalesceRelays: coalesceRelays,
                    maxPendingUpdates: maxPendingUpdates))
        rooms[name] = room
        metrics.yjsRooms.increment()
        // Subscribed before the read: an update appended in between arrives on the channel (and is skipped
        // if the read had it already) or, if the subscription came too late, shows up as a gap.
        subscriber.subscribe(YjsKeys.channel(name))
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        store.load(room: name, on: eventLoop).whenComplete { [self] result in
            let room = bound.value
            perform(room.machine.loaded(result.mapError { YjsStorageFailure("\($0)") }), in: room)
        }
        awarenessStore.snapshot(room: name, on: eventLoop).whenSuccess { [self] entries in
            let room = bound.value
            room.machine.remoteAwarenessSnapshot(entries.filter { $0.node != nodeID }, nowMs: clock.nowMs())
            perform([], in: room)
        }
        return room
    }

    /// Once per `--tick-ms`: each changed room's awareness in one message, encoded once, to every member;
    /// this node's own changes to Redis and the other nodes in one script call.
    private func awarenessTick() {
        let names = dirty
        dirty.removeAll(keepingCapacity: true)
        let now = clock.nowMs()
        for name in names {
            guard let room = rooms[name] else { continue }
            perform(room.machine.awarenessTick(nowMs: now), in: room)
        }
    }

    private func sweepAwareness() {
        let now = clock.nowMs()
        for room in rooms.values { perform(room.machine.sweepAwareness(nowMs: now, ttlMs: presence.ttlMs), in: room) }
    }

    private func checkRooms() {
        for room in rooms.values { perform(room.machine.check(), in: room) }
    }

    /// Carries out a room's actions in order; a reply is fed back to the same room (even if it was dropped
    /// meanwhile: the machine then ignores it).
    private func perform(_ actions: [YjsRoomAction], in room: YjsRoom) {
        for action in actions { perform(action, in: room) }
        if room.machine.needsTick, !room.machine.dropped { dirty.insert(room.name) }
    }

    private func perform(_ action: YjsRoomAction, in room: YjsRoom) {
        let bound = NIOLoopBound(room, eventLoop: eventLoop)
        switch action {
        case .send(let id, let message):
            guard let member = room.members[id] else { return }
            let buffer = ByteBuffer(bytes: message.encoded())
            member.eventLoop.execute { member.deliver(buffer, appendedAtMs: nil) }
        case .relay(let message, let appendedAtMs):
            room.lastRelay = .now()
            relay(ByteBuffer(bytes: message.encoded()), to: room, appendedAtMs: appendedAtMs)
        case .scheduleRelay:
            // At once (the next turn of the loop: what is already queued joins the batch) if the room relayed
            // nothing for the window, else when the window since its last relay ends.
            guard !room.relayScheduled else { return }
            room.relayScheduled = true
            let flush: @Sendable () -> Void = { [self] in
                let room = bound.value
                room.relayScheduled = false
                perform(room.machine.flushRelay(), in: room)
            }
            let due = room.lastRelay + relayWindow
            if due <= .now() {
                eventLoop.execute(flush)
            } else {
                eventLoop.scheduleTask(deadline: due, flush)
            }
        case .relayAwareness(let update):
            let buffer = ByteBuffer(bytes: YProtocolMessage.awareness(update).encoded())
            metrics.fanoutMessages.increment(by: Int64(room.members.count))
            metrics.fanoutBytes.increment(by: Int64(room.members.count * buffer.readableBytes))
            relay(buffer, to: room, appendedAtMs: nil)
        case .append(let bytes, let token):
            store.append(room: room.name, update: bytes, on: eventLoop).whenComplete { [self] result in
                let outcome: YjsRoomMachine.AppendOutcome
                switch result {
                case .success(.appended(let seq, let logLength)): outcome = .appended(seq: seq, logLength: logLength)
                case .success(.roomFull): outcome = .roomFull
                case .failure(let error): outcome = .failed("\(error)")
                }
                let room = bound.value
                perform(room.machine.appendCompleted(token: token, outcome: outcome), in: room)
            }
        case .reload:
            store.load(room: room.name, on: eventLoop).whenComplete { [self] result in
                let room = bound.value
                perform(room.machine.reloaded(result.mapError { YjsStorageFailure("\($0)") }), in: room)
            }
        case .compact(let base, let upto, let snapshot):
            store.compact(room: room.name, base: base, upto: upto, snapshot: snapshot, on: eventLoop).whenComplete { [self] result in
                let room = bound.value
                perform(room.machine.compacted(result.mapError { YjsStorageFailure("\($0)") }), in: room)
            }
        case .readHead(let seqAtRead):
            store.head(room: room.name, on: eventLoop).whenSuccess { [self] head in
                let room = bound.value
                perform(room.machine.headRead(head, seqAtRead: seqAtRead), in: room)
            }
        case .writeAwareness(let entries, let refresh):
            awarenessStore.write(room: room.name, changes: entries, refresh: refresh, on: eventLoop).whenFailure { [logger] error in
                logger.debug("yjs awareness write failed", metadata: ["error": "\(error)"])
            }
        case .sweepAwareness:
            _ = awarenessStore.sweep(room: room.name, on: eventLoop)
        case .close(let id, let reason):
            guard let member = room.members[id] else { return }
            member.eventLoop.execute { member.close(reason.serverClose) }
        case .closeAll(let reason):
            for member in room.members.values {
                member.eventLoop.execute { member.close(reason.serverClose) }
            }
            room.members.removeAll()
        case .drop:
            guard rooms[room.name] === room else { return }
            rooms.removeValue(forKey: room.name)
            metrics.yjsRooms.decrement()
            subscriber.unsubscribe(YjsKeys.channel(room.name))
        case .count(let event):
            count(event)
        case .log(let entry):
            log(entry, room: room.name)
        }
    }

    private func count(_ event: YjsRoomEvent) {
        switch event {
        case .appendStarted: metrics.yjsAppendsInFlight.increment()
        case .appendFinished: metrics.yjsAppendsInFlight.decrement()
        case .pushCommitted(let concurrent):
            metrics.syncPush("commit")
            if concurrent { metrics.syncConcurrentPushes.increment() }
        case .pushFailed: metrics.syncPush("error")
        case .roomFull: metrics.clientLimitReached(.yjsRoomBytes)
        case .pendingRefused: metrics.clientLimitReached(.yjsPendingUpdates)
        case .compaction: metrics.yjsCompactions.increment()
        case .reload: metrics.yjsRoomReloads.increment()
        case .awarenessAccepted: metrics.presenceUpdate(.accepted)
        case .awarenessRateLimited: metrics.presenceUpdate(.rateLimited)
        case .awarenessClientsRefused: metrics.clientLimitReached(.yjsAwarenessClients)
        case .localAwareness(let delta): metrics.presenceSessions.increment(by: Double(delta))
        case .pendingUpdates(let delta): metrics.yjsPendingUpdates.increment(by: Double(delta))
        case .relayCoalesced(let updates):
            metrics.yjsCoalescedUpdates.increment(by: Int64(updates))
            metrics.yjsCoalescedRelays.increment()
        }
    }

    private func log(_ entry: YjsRoomLog, room: String) {
        switch entry {
        case .roomUnreadable(let error):
            logger.error("yjs room unreadable", metadata: ["room": "\(room)", "error": "\(error)"])
        case .loadFailed(let error):
            logger.warning("yjs room load failed", metadata: ["room": "\(room)", "error": "\(error)"])
        case .updateNotStored(let error):
            logger.warning("yjs update not stored", metadata: ["room": "\(room)", "error": "\(error)"])
        case .undecodableEntry(let seq):
            logger.error("undecodable yjs log entry", metadata: ["room": "\(room)", "seq": "\(seq)"])
        case .compactionFailed(let error):
            logger.warning("yjs compaction failed", metadata: ["room": "\(room)", "error": "\(error)"])
        case .lostInRedis(let seq, let redisSeq):
            logger.warning(
                "yjs room lost in Redis; clients reconnect to restore it",
                metadata: ["room": "\(room)", "seq": "\(seq)", "redis.seq": "\(redisSeq)"])
        }
    }

    /// Encoded once; one hop per event loop of the members.
    private func relay(_ buffer: ByteBuffer, to room: YjsRoom, appendedAtMs: UInt64?) {
        guard !room.members.isEmpty else { return }
        let byLoop = Dictionary(grouping: room.members.values) { ObjectIdentifier($0.eventLoop) }
        for members in byLoop.values {
            members[0].eventLoop.execute {
                for member in members { member.deliver(buffer, appendedAtMs: appendedAtMs) }
            }
        }
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

/// One room on its shard's loop: its state machine and the connections its member ids stand for.
final class YjsRoom {
    let name: String
    var machine: YjsRoomMachine
    var members: [ObjectIdentifier: any YjsMember] = [:]
    /// When the room last relayed an update, and whether a `flushRelay` is scheduled (`--yjs-relay-ms`).
    var lastRelay = NIODeadline.uptimeNanoseconds(0)
    var relayScheduled = false

    init(name: String, machine: YjsRoomMachine) {
        self.name = name
        self.machine = machine
    }
}

extension YjsRoomClose {
    var serverClose: ServerClose {
        switch self {
        case .roomFull: .yjsRoomFull
        case .tooManyPending: .yjsTooManyPending
        case .storageUnavailable: .yjsStorageUnavailable
        }
    }
}
