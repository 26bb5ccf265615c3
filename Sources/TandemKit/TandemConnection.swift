import NIOCore
import NIOPosix
import TandemClient
import TandemCore

/// A connection to Tandem (protocol v1, docs/protocol.md) that behaves like the browser client `tandem.js`:
/// it reconnects by itself (full-jitter backoff, the next URL after a failure or a drain, `?resume=` so that
/// others see no leave and no join, `since` so that only missed commits are sent), and stops for good only
/// on what retrying cannot fix (a refused identity, a protocol version the server does not speak, a newer
/// connection resuming this session, ``close()``).
///
/// ```swift
/// let tandem = try await TandemConnection.connect(.init(
///     urls: ["ws://127.0.0.1:7070/v1/ws"], identity: .development(user: "ada", name: "Ada")))
/// let board = try await tandem.join("board:1", presence: ["cursor": [0, 0]])
/// try await board.put("note-1", ["text": "hi"])
/// for await event in await board.events() { print(event) }
/// ```
///
/// An actor: every method may be called from any task. The socket is TandemClient's `WebSocketClient`.
public actor TandemConnection {
    public nonisolated let configuration: TandemConfiguration
    /// Where the connection is now; ``states()`` for every change.
    public private(set) var state: ConnectionState = .connecting
    /// The last `welcome` (nil before the first).
    public private(set) var welcome: Welcome?

    private let group: any EventLoopGroup
    private var socket: WebSocketClient?
    /// Every session this client had: its own commits are recognised by them after a resume was refused.
    private var sessions: Set<String> = []
    private var docs: [String: DocEntry] = [:]
    private var stateObservers: [Int: AsyncStream<ConnectionState>.Continuation] = [:]
    private var openWaiters: [CheckedContinuation<Welcome, any Error>] = []
    private var tickets: [Int: CheckedContinuation<PushOutcome, any Error>] = [:]
    /// History requests (`History.swift`), the first one in flight.
    var historyQueue: [HistoryRequest] = []
    private var nextID = 1
    private var attempt = 0
    private var urlIndex = 0
    private var runTask: Task<Void, Never>?
    private var closedByUser = false
    private var lastMessageAt = ContinuousClock.now

    /// Checks the configuration; nothing is opened until ``start()``.
    public init(_ configuration: TandemConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton)
        throws(TandemError)
    {
        guard !configuration.urls.isEmpty else { throw .invalidURL("", reason: "no URL given") }
        for url in configuration.urls where !url.lowercased().hasPrefix("ws://") {
            #if TLS
            guard url.lowercased().hasPrefix("wss://") else {
                throw .invalidURL(url, reason: "expected ws://host:port/v1/ws or wss://host/v1/ws")
            }
            #else
            throw .invalidURL(
                url,
                reason: url.lowercased().hasPrefix("wss://")
                    ? "wss:// needs TandemKit built with the package's TLS trait (.package(url: …, traits: [\"TLS\"]))"
                    : "expected ws://host:port/v1/ws")
            #endif
        }
        self.configuration = configuration
        self.group = group
    }

    /// Creates a connection and waits for its first `welcome` (retrying failed attempts with backoff).
    /// - Throws: ``TandemError`` when the server refuses for a reason retrying cannot fix.
    public static func connect(
        _ configuration: TandemConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(TandemError) -> TandemConnection {
        let connection = try TandemConnection(configuration, group: group)
        try await connection.start()
        return connection
    }

    /// Starts connecting (if not started) and returns the first `welcome` of an open connection.
    @discardableResult
    public func start() async throws(TandemError) -> Welcome {
        if case .closed(let error) = state, runTask != nil { throw error ?? .closed }
        if case .open(let welcome) = state { return welcome }
        if runTask == nil {
            runTask = Task { await self.run() }
        }
        do {
            return try await withCheckedThrowingContinuation { openWaiters.append($0) }
        } catch {
            throw (error as? TandemError) ?? .closed
        }
    }

    /// Every state change, starting with the current state; finishes after ``ConnectionState/closed(_:)``.
    public func states() -> AsyncStream<ConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: ConnectionState.self)
        continuation.yield(state)
        if case .closed = state, runTask != nil {
            continuation.finish()
            return stream
        }
        let key = takeID()
        stateObservers[key] = continuation
        continuation.onTermination = { _ in Task { await self.removeStateObserver(key) } }
        return stream
    }

    /// The current session id (nil before the first welcome).
    public var session: String? { welcome?.session }

    /// Closes cleanly: the server removes this session's presence at once. Pending edits not yet answered
    /// fail with ``TandemError/closed``. No reconnect.
    public func close() async {
        guard !closedByUser else { return }
        closedByUser = true
        // With a store, pending edits stay there for the next connection (their callers get `.closed` now).
        for entry in docs.values { persist(entry) }
        runTask?.cancel()
        let socket = self.socket
        self.socket = nil
        finish(nil)
        await socket?.close(code: 1000, reason: "bye")
    }

    /// Joins `doc` and returns once its records are in sync (or returns the handle of a doc already joined).
    ///
    /// - Parameters:
    ///   - doc: 1–128 characters of `[A-Za-z0-9._:-]`.
    ///   - presence: This session's initial presence state (a JSON object).
    ///   - schema: The version of the doc's record schema this app was built for (docs/schemas.md): a server
    ///     enforcing another version, or none, refuses the join with `schema_mismatch`. nil: not checked.
    ///   - presenceMode: `.full` (default), `.hidden` (sees others, shown to no one) or `.none` (no presence
    ///     either way). A hidden or none session has no state: `presence` must be nil and `setPresence`
    ///     throws `presence_disabled`. The first join of the doc decides it.
    /// - Throws: ``TandemError/schemaMismatch(doc:stated:message:)``; ``TandemError/server(_:)`` with
    ///   `forbidden` (no grant), `too_many_docs` or `bad_message`; ``TandemError/closed``.
    public func join(_ doc: String, presence: JSONValue? = nil, schema: Int? = nil, presenceMode: PresenceMode = .full)
        async throws(TandemError) -> TandemDocument
    {
        if presence != nil, !presenceMode.isShown {
            throw .server(ServerError(code: "bad_message", message: "a \(presenceMode.rawValue) session has no presence state", doc: doc))
        }
        let entry: DocEntry
        if let existing = docs[doc] {
            entry = existing
            if let presence { try setPresence(doc, presence) }
        } else {
            if case .closed(let error) = state, runTask != nil { throw error ?? .closed }
            entry = DocEntry(id: doc, limits: .init(maxOpsPerPush: configuration.maxRecordsPerPush, maxBytesPerPush: configuration.maxBytesPerPush))
            if let presence { try Self.checkPresence(presence, welcome: welcome) }
            if let store = configuration.store, let stored = store.load(doc) {
                // Restored: the records at once (even offline), the pending edits pushed once in sync.
                entry.sync = DocSync(restoring: stored, limits: entry.sync.limits)
                sessions.formUnion(stored.sessions)
                nextID = max(nextID, stored.nextPushID)
            }
            entry.presence = presence
            entry.schema = schema
            entry.presenceMode = presenceMode
            if let welcome { entry.throttle.interval = PresenceThrottle.interval(presenceRate: welcome.presenceRate) }
            docs[doc] = entry
            if isOpen { sendJoin(entry) }
        }
        if !entry.sync.everSynced {
            do {
                try await withCheckedThrowingContinuation { entry.readyWaiters.append($0) }
            } catch {
                throw (error as? TandemError) ?? .closed
            }
        }
        return TandemDocument(connection: self, id: doc)
    }

    // MARK: Document operations (through TandemDocument)

    func records(_ doc: String) -> [String: JSONValue] { docs[doc]?.sync.view ?? [:] }
    func confirmedRecords(_ doc: String) -> [String: JSONValue] { docs[doc]?.sync.records ?? [:] }
    func clock(_ doc: String) -> UInt64 { docs[doc]?.sync.clock ?? 0 }
    func members(_ doc: String) -> Members { docs[doc]?.members ?? Members() }
    func role(_ doc: String) -> String? { docs[doc]?.role }
    func pendingPushes(_ doc: String) -> Int { docs[doc]?.sync.pending.count ?? 0 }
    func isSynced(_ doc: String) -> Bool { docs[doc]?.sync.synced ?? false }

    func events(_ doc: String) -> AsyncStream<DocumentEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: DocumentEvent.self)
        guard let entry = docs[doc] else {
            continuation.finish()
            return stream
        }
        let key = takeID()
        entry.observers[key] = continuation
        continuation.onTermination = { _ in Task { await self.removeDocObserver(doc, key) } }
        return stream
    }

    func setPresence(_ doc: String, _ state: JSONValue) throws(TandemError) {
        guard let entry = docs[doc] else { throw .left(doc: doc) }
        guard entry.presenceMode.isShown else {
            throw .server(
                ServerError(
                    code: "presence_disabled",
                    message: "joined with presence \(entry.presenceMode.rawValue): this session has no presence to set", doc: doc))
        }
        try Self.checkPresence(state, welcome: welcome)
        entry.presence = state
        // Not joined (yet, or any more): the next join carries the newest state.
        guard isOpen, entry.role != nil else { return }
        switch entry.throttle.set(state, now: .now) {
        case .send(let state):
            send(Outbound.presence(doc: doc, state: state))
        case .arm(let deadline, let token):
            Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                await self.presenceTimerFired(doc, token: token)
            }
        case .none:
            break
        }
    }

    /// Queues a push (folded into the next one when one is in flight); `wait` returns its outcome.
    func push(_ doc: String, _ ops: Ops, wait: Bool) async throws(TandemError) -> PushOutcome? {
        guard let entry = docs[doc] else { throw .left(doc: doc) }
        do {
            // Ops built in code are checked as the server would (a put of a non-object, an empty id).
            _ = try Ops(json: ops.json)
        } catch {
            throw .server(ServerError(code: error.code.rawValue, message: error.message, doc: doc))
        }
        let ticket = takeID()
        guard wait else {
            perform(entry.sync.edit(ops, ticket: ticket, newID: takeID()), entry)
            return nil
        }
        do {
            return try await withCheckedThrowingContinuation { continuation in
                tickets[ticket] = continuation
                perform(entry.sync.edit(ops, ticket: ticket, newID: takeID()), entry)
            }
        } catch {
            throw (error as? TandemError) ?? .closed
        }
    }

    func leave(_ doc: String) {
        guard let entry = docs.removeValue(forKey: doc) else { return }
        failHistory(doc: doc, .left(doc: doc))
        // Its pending edits fail with `.left`: none may come back in a later process.
        configuration.store?.remove(doc)
        if isOpen, entry.role != nil { send(Outbound.leave(doc: doc)) }
        perform(entry.sync.left(doc: doc), entry)
        for waiter in entry.readyWaiters { waiter.resume(throwing: TandemError.left(doc: doc)) }
        entry.readyWaiters = []
        for observer in entry.observers.values { observer.finish() }
        entry.observers = [:]
    }

    // MARK: The connection loop

    private var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    private func run() async {
        while !closedByUser && !Task.isCancelled {
            let url = configuration.url(index: urlIndex, resume: welcome?.session)
            var closeCode: Int?
            var reason = ""
            var welcomed = false
            var retryAfter: Duration?
            var openedAt = ContinuousClock.now
            do {
                var socketConfiguration = WebSocketClient.Configuration(
                    maxFrameSize: configuration.maxInboundMessageBytes,
                    connectTimeout: .nanoseconds(Int64(configuration.connectTimeout.components.seconds) * 1_000_000_000 + configuration.connectTimeout.components.attoseconds / 1_000_000_000))
                #if TLS
                socketConfiguration.tls = configuration.tls
                #endif
                let ws = try await WebSocketClient.connect(to: url, on: group, configuration: socketConfiguration)
                if closedByUser {
                    await ws.close(code: 1000, reason: "bye")
                    return
                }
                socket = ws
                openedAt = .now
                lastMessageAt = .now
                let heartbeat = Task { await self.heartbeat(ws) }
                socketWelcomed = false
                let end = await read(ws)
                closeCode = end.code
                reason = end.reason
                welcomed = socketWelcomed
                heartbeat.cancel()
                if socket === ws { socket = nil }
                connectionLost()
            } catch let error as WebSocketClientError {
                switch error {
                case .handshakeRejected(let status, _, let body) where status == 401 || status == 403:
                    return finish(.unauthorized(status: status, message: body))
                case .invalidURL(let url, let why):
                    return finish(.invalidURL(url, reason: why))
                case .tlsFailed(_, _, let why):
                    // A certificate that is not trusted or not for this host does not get better by retrying.
                    return finish(.tlsFailed(url: configuration.urls[urlIndex % configuration.urls.count], reason: why))
                case .handshakeRejected(let status, _, _):
                    reason = "HTTP \(status)"
                    retryAfter = error.headerValue("Retry-After").flatMap { Int($0) }.map { .seconds($0) }
                default:
                    reason = error.description
                }
            } catch {
                reason = "\(error)"
            }
            if closedByUser { return }
            switch closeCode {
            case 4400?: return finish(.clientTooOld(reason: reason))
            case 4401?: return finish(.serverTooOld(reason: reason))
            case 1000? where welcomed: return finish(.superseded)
            default: break
            }
            // Refused, unreachable or draining: try the next node.
            if !welcomed || closeCode == 1001 { urlIndex += 1 }
            if welcomed && ContinuousClock.now - openedAt >= configuration.stableAfter { attempt = 0 }
            var delay = configuration.backoff.delay(attempt: attempt)
            // 1008: this client sent too much or too many bad frames; back off for real.
            if closeCode == 1008 { delay = max(delay, configuration.backoff.maximum) }
            if let retryAfter { delay = max(delay, retryAfter) }
            attempt += 1
            setState(.reconnecting(attempt: attempt, delay: delay, reason: closeCode.map { "close \($0) \(reason)" } ?? reason))
            try? await Task.sleep(for: delay)
        }
    }

    /// Whether the current socket got its `welcome`.
    private var socketWelcomed = false

    /// Reads `ws` until it closes (or the task is cancelled): its close code and reason.
    private func read(_ ws: WebSocketClient) async -> (code: Int?, reason: String) {
        for await event in ws.events {
            switch event {
            case .text(let text):
                if received(text, from: ws) { socketWelcomed = true }
            case .binary:
                break
            case .closed(let code, let reason):
                return (code, reason)
            }
        }
        return (ws.closeCode, ws.closeReason)
    }

    /// Handles one message; true for the welcome.
    private func received(_ text: String, from ws: WebSocketClient) -> Bool {
        guard ws === socket else { return false }
        lastMessageAt = .now
        guard let (message, sum) = Inbound.parse(text: text) else { return false }
        switch message {
        case .welcome(let welcome):
            self.welcome = welcome
            sessions.insert(welcome.session)
            setState(.open(welcome))
            let waiters = openWaiters
            openWaiters = []
            for waiter in waiters { waiter.resume(returning: welcome) }
            for entry in docs.values {
                entry.throttle.interval = PresenceThrottle.interval(presenceRate: welcome.presenceRate)
                sendJoin(entry)
            }
            return true
        case .joined(let doc, let role, let clock, let presence):
            guard let entry = docs[doc] else { return false }
            entry.role = role
            entry.members.replace(with: presence)
            emit(.presence(joined: presence, updated: [], left: []), entry)
            perform(entry.sync.joined(clock: clock), entry)
            // Presence set while the join was on its way: send the newest.
            if let state = entry.presence, state != entry.joinSentState { try? setPresence(doc, state) }
            pumpHistory()
        case .presence(let doc, let joined, let updated, let left):
            guard let entry = docs[doc] else { return false }
            entry.members.apply(joined: joined, updated: updated, left: left)
            emit(.presence(joined: joined, updated: updated, left: left), entry)
        case .snapshot(let doc, let clock, let records, let more):
            guard let entry = docs[doc] else { return false }
            perform(entry.sync.snapshot(clock: clock, records: records, more: more, sum: sum), entry)
        case .log(let doc, let entries, let more):
            guard let entry = docs[doc] else { return false }
            perform(entry.sync.log(entries: entries, more: more, sessions: sessions, sum: sum), entry)
        case .patch(let doc, let clock, let ops, let by, let id):
            guard let entry = docs[doc] else { return false }
            perform(entry.sync.patch(clock: clock, ops: ops, by: by, id: id, sessions: sessions, sum: sum), entry)
        case .result(let doc, let id, let action, let clock, let ops, let reason):
            guard let entry = docs[doc] else { return false }
            perform(entry.sync.result(id: id, action: action, clock: clock, ops: ops, reason: reason, sum: sum), entry)
        case .left(let doc):
            docs[doc]?.role = nil
        case .error(let error):
            if !historyReceived(message) { serverError(error) }
        case .history, .at, .restored:
            _ = historyReceived(message)
        case .pong, .ignored:
            break
        }
        return false
    }

    private func serverError(_ error: ServerError) {
        guard let doc = error.doc, let entry = docs[doc] else { return }
        emit(.serverError(error), entry)
        if let id = error.pushID {
            perform(entry.sync.pushError(error, id: id), entry)
            return
        }
        guard entry.role == nil else { return }
        switch error.code {
        case "rate_limited":
            // The join was not answered: send it again when the server says.
            let delay = DocSync.retryDelay(retryAfterMs: error.retryAfterMs)
            Task {
                try? await Task.sleep(for: delay)
                await self.rejoin(doc)
            }
        case "forbidden", "too_many_docs", "bad_message", "schema_mismatch":
            docs.removeValue(forKey: doc)
            let failure: TandemError =
                if error.code == "schema_mismatch", let stated = entry.schema {
                    .schemaMismatch(doc: doc, stated: stated, message: error.message)
                } else {
                    .server(error)
                }
            for waiter in entry.readyWaiters { waiter.resume(throwing: failure) }
            entry.readyWaiters = []
            for observer in entry.observers.values { observer.finish() }
        default:
            break
        }
    }

    private func connectionLost() {
        historyConnectionLost()
        for entry in docs.values {
            entry.sync.disconnected()
            entry.throttle.reset()
            entry.role = nil
        }
    }

    private func heartbeat(_ ws: WebSocketClient) async {
        let interval = configuration.heartbeat
        while !Task.isCancelled {
            try? await Task.sleep(for: interval / 2)
            guard ws === socket, !Task.isCancelled else { return }
            let silent = ContinuousClock.now - lastMessageAt
            if silent >= interval * 2.5 {
                ws.abort()
                return
            }
            if silent >= interval { ws.send(text: Outbound.ping) }
        }
    }

    // MARK: Doing what DocSync says

    private func perform(_ actions: [DocSync.Action], _ entry: DocEntry) {
        for action in actions {
            switch action {
            case .send(let id, let base, let ops):
                // The store names every push the server may commit, and the session it goes out on, before it
                // goes: a later process recognises it in the catch-up instead of pushing it twice.
                persist(entry)
                send(Outbound.push(doc: entry.id, id: id, base: base, ops: ops))
            case .settle(let settled, let result):
                for ticket in settled {
                    guard let waiter = tickets.removeValue(forKey: ticket) else { continue }
                    waiter.resume(with: result.mapError { $0 as any Error })
                }
                emit(.pushSettled(result), entry)
            case .retry(let delay):
                let doc = entry.id
                Task {
                    try? await Task.sleep(for: delay)
                    await self.retryDue(doc)
                }
            case .changed(let source, let ids):
                schedulePersist(entry)
                emit(.records(RecordChange(source: source, clock: entry.sync.clock, ids: ids)), entry)
            case .synced(let clock):
                emit(.synced(clock: clock), entry)
                let waiters = entry.readyWaiters
                entry.readyWaiters = []
                for waiter in waiters { waiter.resume() }
            case .ack:
                scheduleAck(entry)
            case .diverged(let clock, _, let actual):
                // Reported (counted by the server), then a re-join without `since`: the snapshot replaces
                // every record (issue 13).
                send(Outbound.diverged(doc: entry.id, clock: clock, sum: actual))
                if isOpen { sendJoin(entry) }
            }
        }
    }

    /// Writes `entry`'s state to the store now (a no-op without a store or before the first sync).
    private func persist(_ entry: DocEntry) {
        entry.persistArmed = false
        guard let store = configuration.store,
            let state = entry.sync.stored(doc: entry.id, nextPushID: nextID, sessions: sessions)
        else { return }
        do {
            try store.save(state)
        } catch {
            store.logger.error(
                "store write failed; the doc's edits are in memory only until a later write succeeds",
                metadata: ["tandem.doc": "\(entry.id)", "tandem.store.reason": "\(error.message)"])
            emit(.storeFailed(error), entry)
        }
    }

    /// Writes `entry`'s state after the store's `writeDelay`, with the changes made meanwhile.
    private func schedulePersist(_ entry: DocEntry) {
        guard let store = configuration.store, !entry.persistArmed else { return }
        entry.persistArmed = true
        let doc = entry.id
        Task {
            try? await Task.sleep(for: store.writeDelay)
            await self.persistDue(doc)
        }
    }

    private func persistDue(_ doc: String) {
        guard let entry = docs[doc], entry.persistArmed else { return }
        persist(entry)
    }

    private func retryDue(_ doc: String) {
        guard let entry = docs[doc] else { return }
        perform(entry.sync.retryDue(), entry)
    }

    private func rejoin(_ doc: String) {
        guard let entry = docs[doc], entry.role == nil, isOpen else { return }
        sendJoin(entry)
    }

    private func presenceTimerFired(_ doc: String, token: Int) {
        guard let entry = docs[doc], let state = entry.throttle.timerFired(token: token, now: .now) else { return }
        guard isOpen, entry.role != nil else { return }
        send(Outbound.presence(doc: doc, state: state))
    }

    private func scheduleAck(_ entry: DocEntry) {
        guard !entry.ackArmed else { return }
        entry.ackArmed = true
        let doc = entry.id
        let delay = configuration.ackDelay
        Task {
            try? await Task.sleep(for: delay)
            await self.sendAck(doc)
        }
    }

    private func sendAck(_ doc: String) {
        guard let entry = docs[doc] else { return }
        entry.ackArmed = false
        guard isOpen, entry.role != nil, entry.sync.clock > entry.ackedClock else { return }
        entry.ackedClock = entry.sync.clock
        send(Outbound.ack(doc: doc, clock: entry.sync.clock))
    }

    private func sendJoin(_ entry: DocEntry) {
        entry.joinSentState = entry.presence
        if entry.presence != nil { entry.throttle.sent(now: .now) }
        send(
            Outbound.join(
                doc: entry.id, state: entry.presence, since: entry.sync.since, schema: entry.schema, presence: entry.presenceMode))
    }

    func hasDoc(_ doc: String) -> Bool { docs[doc] != nil }
    func historyJoined(_ doc: String) -> Bool { isOpen && docs[doc]?.role != nil }
    func sendText(_ text: String) { send(text) }

    private func send(_ text: String) {
        guard isOpen else { return }
        socket?.send(text: text)
    }

    private static func checkPresence(_ state: JSONValue, welcome: Welcome?) throws(TandemError) {
        guard state.isObject else {
            throw .server(ServerError(code: "bad_message", message: "a presence state must be a JSON object"))
        }
        let limit = welcome?.maxStateBytes ?? 1024
        let size = state.serialized.count
        guard size <= limit else {
            throw .server(ServerError(code: "too_large", message: "presence state of \(size) bytes (limit \(limit))"))
        }
    }

    // MARK: State

    private func takeID() -> Int {
        defer { nextID += 1 }
        return nextID
    }

    private func setState(_ new: ConnectionState) {
        guard new != state else { return }
        state = new
        for observer in stateObservers.values { observer.yield(new) }
    }

    /// For good: fails everything that waits.
    private func finish(_ error: TandemError?) {
        runTask = runTask ?? Task {}
        setState(.closed(error))
        for observer in stateObservers.values { observer.finish() }
        stateObservers = [:]
        let failure = error ?? .closed
        for waiter in openWaiters { waiter.resume(throwing: failure) }
        openWaiters = []
        for waiter in tickets.values { waiter.resume(throwing: failure) }
        tickets = [:]
        failHistory(doc: nil, failure)
        for entry in docs.values {
            for waiter in entry.readyWaiters { waiter.resume(throwing: failure) }
            entry.readyWaiters = []
            for observer in entry.observers.values { observer.finish() }
            entry.observers = [:]
        }
    }

    private func emit(_ event: DocumentEvent, _ entry: DocEntry) {
        for observer in entry.observers.values { observer.yield(event) }
    }

    private func removeStateObserver(_ key: Int) { stateObservers.removeValue(forKey: key) }
    private func removeDocObserver(_ doc: String, _ key: Int) { docs[doc]?.observers.removeValue(forKey: key) }
}

/// One joined doc's state inside the connection actor (never leaves it).
final class DocEntry {
    let id: String
    var sync: DocSync
    var members = Members()
    var throttle = PresenceThrottle(interval: PresenceThrottle.interval(presenceRate: 20))
    /// This session's newest presence state.
    var presence: JSONValue?
    /// The record-schema version every join of this doc states (nil: none).
    var schema: Int?
    /// The presence mode every join of this doc states.
    var presenceMode = PresenceMode.full
    /// The state the last join carried.
    var joinSentState: JSONValue?
    /// Set by `joined`, cleared when the connection is lost.
    var role: String?
    var observers: [Int: AsyncStream<DocumentEvent>.Continuation] = [:]
    var readyWaiters: [CheckedContinuation<Void, any Error>] = []
    var ackArmed = false
    var ackedClock: UInt64 = 0
    /// A store write is scheduled.
    var persistArmed = false

    init(id: String, limits: DocSync.Limits) {
        self.id = id
        self.sync = DocSync(limits: limits)
    }
}
