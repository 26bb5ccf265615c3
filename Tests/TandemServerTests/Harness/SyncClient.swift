import Foundation
import TandemCore
import TandemTestSupport

/// What one test client knows of one document, rebuilt from the sync messages it received, with the
/// protocol's ordering guarantee checked message by message:
///
/// - after `joined`, the catch-up (`log` entries contiguous from `since + 1`, or `snapshot` chunks of one
///   clock) ends with the chunk whose `more` is false — the sync point;
/// - from then on every clock arrives exactly once, in order: a `patch` or the `result` (commit/rebase)
///   of an own push at `position + 1`; a `discard` carries the current position;
/// - nothing of the stream arrives before the sync point or after `left`.
///
/// `log`/`snapshot` messages that arrive while live answer explicit `sync` requests; they are checked
/// against the stream (never ahead of it) and kept in `explicitReplies`, not applied.
struct SyncView {
    enum Phase: Equatable { case idle, catchingUp, live }

    private(set) var phase: Phase = .idle
    /// The confirmed state: catch-up, patches and own results, applied in clock order.
    private(set) var replica = DocReplica()
    /// False when the records are not fully known (joined with a `since` other than the replica's head).
    private(set) var complete = true
    private(set) var joinedClock: UInt64?
    /// Catch-ups completed (sync points reached).
    private(set) var syncPoints = 0
    private(set) var violations: [String] = []
    /// `result` messages by push id (serialized).
    private(set) var results: [String: [String: JSONValue]] = [:]
    /// `error` messages that named a push id, by push id (serialized).
    private(set) var pushErrors: [String: [String: JSONValue]] = [:]
    /// Log entries of the latest catch-up: clock → entry.
    private(set) var catchUpEntries: [UInt64: [String: JSONValue]] = [:]
    /// Own pushes (any of the client's sessions) seen committed in a catch-up log, by push id → clock.
    private(set) var ownCommitsInLog: [String: UInt64] = [:]
    /// Patches whose `by` is one of the client's own sessions (commits it was not answered for).
    private(set) var ownPatches: [[String: JSONValue]] = []
    /// Chunks of the latest catch-up, in order (type, more, item count).
    private(set) var chunks: [(type: String, more: Bool, items: Int)] = []
    /// Replies to explicit `sync` requests.
    private(set) var explicitReplies: [[String: JSONValue]] = []
    /// Every clock delivered to this client on the live stream (patch or own result), in order.
    private(set) var liveClocks: [UInt64] = []
    /// Checksums (`sum`, issue 13) compared with the state they describe: every one must match.
    private(set) var checksumsChecked = 0
    /// The records after every clock delivered live, when asked for (`SyncClient.recordStates`): the
    /// model of the history tests.
    var statesByClock: [UInt64: [String: JSONValue]]?

    /// A test that expects the node to restart this member from a snapshot while it is live — a reload
    /// after Redis lost commits (the snapshot may be behind the stream's position) or after a divergence
    /// (issue 13: same clock, other records) — sets this: a live snapshot whose clock or records differ
    /// from the view's then starts a catch-up, checked like a join's, instead of being an explicit `sync`
    /// reply (which must equal the view).
    var acceptsRestart = false
    /// Restarts received (see `acceptsRestart`).
    private(set) var restarts = 0
    /// Ops of own pushes by push id, applied when their `commit` comes back.
    var sent: [String: Ops] = [:]
    /// `since` of joins sent and not yet answered.
    var pendingSince: [UInt64?] = []
    private var since: UInt64?
    private var snapshotRecords: [String: JSONValue]?
    private var snapshotClock: UInt64?

    var head: UInt64 { replica.head }
    var records: [String: JSONValue] { replica.records }

    private mutating func violation(_ text: String) { violations.append(text) }

    /// Forgets the answer to push `key` (before pushing the same id again).
    mutating func forgetAnswer(_ key: String) {
        results.removeValue(forKey: key)
        pushErrors.removeValue(forKey: key)
    }

    mutating func receive(_ m: [String: JSONValue], sessions: Set<String>) {
        let type = m["t"]?.stringValue ?? ""
        switch type {
        case "joined":
            joinedClock = m["clock"]?.uint64Value
            since = pendingSince.isEmpty ? nil : pendingSince.removeFirst()
            phase = .catchingUp
            chunks.removeAll()
            catchUpEntries.removeAll()
            snapshotRecords = nil
            snapshotClock = nil
            if let since, since != replica.head {
                replica = DocReplica(head: since)
                complete = false
            }
        case "left":
            phase = .idle
        case "snapshot":
            receiveSnapshot(m)
        case "log":
            receiveLog(m, sessions: sessions)
        case "patch":
            guard let clock = m["clock"]?.uint64Value, let opsJSON = m["ops"] else {
                return violation("malformed patch \(m)")
            }
            if let by = m["by"]?.stringValue, sessions.contains(by) { ownPatches.append(m) }
            guard phase == .live else { return violation("patch \(clock) while \(phase)") }
            deliver(clock: clock, ops: try? Ops(json: opsJSON), what: "patch")
            checkSum(m, what: "patch \(clock)")
        case "result":
            guard let id = m["id"], let action = m["action"]?.stringValue, let clock = m["clock"]?.uint64Value else {
                return violation("malformed result \(m)")
            }
            let key = id.serializedString
            if results[key] != nil, action != "discard" { violation("second result for push \(key)") }
            results[key] = m
            switch action {
            case "commit", "rebase":
                guard phase == .live else { return violation("result \(clock) for \(key) while \(phase)") }
                let ops: Ops?
                if action == "commit" {
                    ops = sent[key]
                    if ops == nil { violation("commit of unknown push \(key)") }
                } else {
                    ops = m["ops"].flatMap { try? Ops(json: $0) }
                    if ops == nil { violation("rebase without valid ops: \(m)") }
                }
                deliver(clock: clock, ops: ops, what: "result \(key)")
                checkSum(m, what: "result \(key)")
            case "discard":
                if phase == .live, clock != replica.head {
                    violation("discard of \(key) at clock \(clock), position \(replica.head)")
                }
            default:
                violation("unknown action \(action)")
            }
        case "error":
            if let id = m["id"] { pushErrors[id.serializedString] = m }
        default:
            break
        }
    }

    /// A message's `sum` must be the checksum of the state it leaves (when the state is fully known).
    private mutating func checkSum(_ m: [String: JSONValue], what: String) {
        guard complete, let text = m["sum"]?.stringValue else { return }
        checksumsChecked += 1
        if DocChecksum(hex: text) != replica.sum { violation("\(what): sum \(text), but the state's checksum is \(replica.sum)") }
    }

    private mutating func deliver(clock: UInt64, ops: Ops?, what: String) {
        liveClocks.append(clock)
        if clock <= replica.head {
            return violation("\(what) at clock \(clock) again (position \(replica.head))")
        }
        if clock != replica.head + 1 {
            violation("\(what) at clock \(clock) after \(replica.head): gap")
            replica = DocReplica(head: clock - 1, records: replica.records)
            complete = false
        }
        replica.apply(clock: clock, ops: ops ?? Ops([:]))
        if statesByClock != nil { statesByClock?[clock] = replica.records }
    }

    private mutating func receiveSnapshot(_ m: [String: JSONValue]) {
        guard let clock = m["clock"]?.uint64Value, case .object(let records)? = m["records"],
            case .bool(let more)? = m["more"]
        else { return violation("malformed snapshot") }
        let differs =
            clock != replica.head || records.contains(where: { replica.records[$0.key] != $0.value })
            || (!more && records.count != replica.records.count)
        if phase == .live, acceptsRestart, differs {
            restarts += 1
            phase = .catchingUp
            chunks.removeAll()
            snapshotRecords = nil
            snapshotClock = nil
            joinedClock = nil
        }
        if phase == .live {
            // An explicit sync answered with a snapshot: it must be exactly the state at our position.
            explicitReplies.append(m)
            if clock != replica.head { violation("explicit snapshot at \(clock), position \(replica.head)") }
            return
        }
        guard phase == .catchingUp else { return violation("snapshot while \(phase)") }
        chunks.append(("snapshot", more, records.count))
        if snapshotRecords == nil {
            snapshotRecords = [:]
            snapshotClock = clock
            if let joinedClock, clock < joinedClock { violation("snapshot at \(clock) behind joined clock \(joinedClock)") }
        } else if clock != snapshotClock {
            violation("snapshot chunks of different clocks \(snapshotClock ?? 0) and \(clock)")
        }
        for (id, record) in records {
            if snapshotRecords![id] != nil { violation("record \(id) in two snapshot chunks") }
            snapshotRecords![id] = record
        }
        if !more {
            replica = DocReplica(head: clock, records: snapshotRecords!)
            complete = true
            checkSum(m, what: "snapshot \(clock)")
            snapshotRecords = nil
            phase = .live
            syncPoints += 1
        }
    }

    private mutating func receiveLog(_ m: [String: JSONValue], sessions: Set<String>) {
        guard case .array(let entries)? = m["entries"], let head = m["head"]?.uint64Value, case .bool(let more)? = m["more"]
        else { return violation("malformed log") }
        if phase == .live {
            // An explicit sync: entries we already have (the stream is never behind a reply).
            explicitReplies.append(m)
            for entry in entries {
                if let clock = entry.objectValue?["clock"]?.uint64Value, clock > replica.head {
                    violation("explicit log entry \(clock) ahead of the stream (position \(replica.head))")
                }
            }
            return
        }
        guard phase == .catchingUp else { return violation("log while \(phase)") }
        if since == nil && snapshotClock == nil && syncPoints == 0 && replica.head == 0 && !entries.isEmpty {
            // Joined without `since`: the protocol promises a snapshot.
            violation("log catch-up for a join without since")
        }
        chunks.append(("log", more, entries.count))
        for entry in entries {
            guard let e = entry.objectValue, let clock = e["clock"]?.uint64Value, let opsJSON = e["ops"] else {
                violation("malformed log entry")
                continue
            }
            catchUpEntries[clock] = e
            if let by = e["by"]?.stringValue, sessions.contains(by), let id = e["id"] {
                ownCommitsInLog[id.serializedString] = clock
            }
            if clock != replica.head + 1 {
                violation("log entry \(clock) after \(replica.head)")
                if clock <= replica.head { continue }
                replica = DocReplica(head: clock - 1, records: replica.records)
                complete = false
            }
            replica.apply(clock: clock, ops: (try? Ops(json: opsJSON)) ?? Ops([:]))
            checkSum(e, what: "log entry \(clock)")
        }
        if let last = entries.last?.objectValue?["clock"]?.uint64Value, last > head {
            violation("log entry \(last) beyond the chunk's head \(head)")
        }
        if !more {
            if replica.head != head { violation("catch-up ended at \(replica.head), its head says \(head)") }
            if let joinedClock, head < joinedClock { violation("catch-up head \(head) behind joined clock \(joinedClock)") }
            phase = .live
            syncPoints += 1
        }
    }

    /// The records as canonical JSON, one string per record.
    var serializedRecords: [String: String] { replica.records.mapValues(\.serializedString) }
}

/// A test client that keeps its document state across connections: it applies what it receives (see
/// `SyncView`), remembers the ops of its pushes, and can reconnect (with `?resume=` or as a new session).
final class SyncClient: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `lock`.
    let name: String
    let user: String
    private let lock = NSLock()
    private var connection: TestClient
    private var processed = 0
    private var viewStore: [String: SyncView] = [:]
    private var sessionStore: Set<String> = []

    private init(name: String, user: String, connection: TestClient) {
        self.name = name
        self.user = user
        self.connection = connection
        sessionStore.insert(connection.session)
    }

    /// Connects to `url` (which names the user) and waits for `welcome`.
    static func connect(_ url: String, name: String, user: String? = nil, receiveBufferBytes: Int? = nil) async throws
        -> SyncClient
    {
        let connection = try await TestClient.connect(url, name: name, receiveBufferBytes: receiveBufferBytes)
        return SyncClient(name: name, user: user ?? name, connection: connection)
    }

    var socket: TestClient { lock.withLock { connection } }
    var session: String { socket.session }
    var sessions: Set<String> { lock.withLock { sessionStore } }

    /// Reads what the current connection received since the last call into the views.
    func update() {
        lock.withLock {
            let raw = connection.rawMessages
            guard processed < raw.count else { return }
            for text in raw[processed...] {
                guard case .object(let m)? = try? JSONParser.parse(text, maxDepth: 200) else {
                    continue
                }
                guard let doc = m["doc"]?.stringValue else { continue }
                viewStore[doc, default: SyncView()].receive(m, sessions: sessionStore)
            }
            processed = raw.count
        }
    }

    /// Keeps the records after every clock of `doc` delivered from now on (`SyncView.statesByClock`).
    func recordStates(_ doc: String) { modify(doc) { $0.statesByClock = $0.statesByClock ?? [0: [:]] } }

    func view(_ doc: String) -> SyncView {
        update()
        return lock.withLock { viewStore[doc] ?? SyncView() }
    }

    /// The node may restart this client's stream of `doc` from a snapshot (see `SyncView.acceptsRestart`).
    func acceptRestart(_ doc: String) { modify(doc) { $0.acceptsRestart = true } }

    private func modify(_ doc: String, _ body: (inout SyncView) -> Void) {
        lock.withLock { body(&viewStore[doc, default: SyncView()]) }
    }

    /// Sends `join` and (by default) waits for the end of the catch-up.
    func join(_ doc: String, since: UInt64? = nil, waitForSync: Bool = true, timeout: Duration = .seconds(15)) async throws {
        let before = view(doc).syncPoints
        modify(doc) { $0.pendingSince.append(since) }
        var message: [String: JSONValue] = ["t": .string("join"), "doc": .string(doc)]
        if let since { message["since"] = .number(since) }
        sendJSON(.object(message))
        if waitForSync { try await waitSynced(doc, syncPoints: before + 1, timeout: timeout) }
    }

    /// Waits until the client has reached `syncPoints` sync points in `doc` (and is live).
    func waitSynced(_ doc: String, syncPoints: Int? = nil, timeout: Duration = .seconds(15)) async throws {
        let wanted = syncPoints ?? max(1, view(doc).syncPoints)
        try await waitUntil("\(name): catch-up of \(doc) (sync point \(wanted)); \(socket.summary())", timeout: timeout) {
            let view = self.view(doc)
            return view.syncPoints >= wanted && view.phase == .live
        }
    }

    /// Waits until the client's confirmed head of `doc` is `clock`.
    func waitHead(_ doc: String, _ clock: UInt64, timeout: Duration = .seconds(15)) async throws {
        try await waitUntil("\(name): head of \(doc) at \(clock), is \(view(doc).head); \(socket.summary())", timeout: timeout) {
            self.view(doc).head >= clock
        }
    }

    /// Sends a push; `base` defaults to the confirmed head.
    func push(_ doc: String, id: JSONValue, base: UInt64? = nil, ops: JSONValue) {
        let base = base ?? view(doc).head
        if let parsed = try? Ops(json: ops) { modify(doc) { $0.sent[id.serializedString] = parsed } }
        sendJSON(.object(["t": .string("push"), "doc": .string(doc), "id": id, "base": .number(base), "ops": ops]))
    }

    func push(_ doc: String, id: Int, base: UInt64? = nil, ops: String) {
        push(doc, id: .number(id), base: base, ops: json(ops))
    }

    /// The `result` or push `error` for push `id` (as a message), waiting for it.
    @discardableResult
    func answer(_ doc: String, id: JSONValue, timeout: Duration = .seconds(15)) async throws -> [String: JSONValue] {
        let key = id.serializedString
        var found: [String: JSONValue]?
        try await waitUntil("\(name): answer to push \(key) in \(doc); \(socket.summary())", timeout: timeout) {
            let view = self.view(doc)
            found = view.results[key] ?? view.pushErrors[key]
            return found != nil
        }
        return found!
    }

    func answer(_ doc: String, id: Int, timeout: Duration = .seconds(15)) async throws -> [String: JSONValue] {
        try await answer(doc, id: .number(id), timeout: timeout)
    }

    /// Pushes (again) until the answer is something other than `unavailable`, as a client retries while
    /// Redis comes back; returns that answer.
    func pushUntilAnswered(_ doc: String, id: JSONValue, ops: JSONValue, timeout: Duration = .seconds(20)) async throws
        -> [String: JSONValue]
    {
        var answer: [String: JSONValue] = [:]
        try await waitUntil("\(name): push \(id.serializedString) answered other than unavailable: \(answer)", timeout: timeout, poll: .milliseconds(100)) {
            forgetAnswer(doc, id: id)
            push(doc, id: id, ops: ops)
            answer = try await self.answer(doc, id: id)
            return answer.string("code") != "unavailable"
        }
        return answer
    }

    func forgetAnswer(_ doc: String, id: JSONValue) { modify(doc) { $0.forgetAnswer(id.serializedString) } }

    func sendJSON(_ value: JSONValue) { socket.sendRaw(value.serializedString) }

    /// Replaces the connection (the old one must be closed or aborted): its remaining messages are read
    /// first, then the views wait for new joins.
    func reconnect(_ url: String) async throws {
        let old = socket
        try await waitUntil("\(name): old connection closed") { old.isClosed }
        update()
        let fresh = try await TestClient.connect(url, name: name)
        lock.withLock {
            connection = fresh
            processed = 0
            sessionStore.insert(fresh.session)
            for doc in viewStore.keys {
                viewStore[doc]!.pendingSince.removeAll()
            }
        }
        update()
    }

    /// Fails the test with every ordering violation seen in any doc.
    func orderingViolations() -> [String] {
        update()
        return lock.withLock { viewStore.flatMap { doc, view in view.violations.map { "\(name) \(doc): \($0)" } } }
    }
}

// MARK: - JSON and Redis helpers

/// Parses JSON text written in a test (keeps number lexemes as written).
func json(_ text: String) -> JSONValue {
    do {
        return try JSONParser.parse(text, maxDepth: 200)
    } catch {
        fatalError("bad JSON in test: \(error): \(text)")
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    func string(_ key: String) -> String? { self[key]?.stringValue }
    func clock(_ key: String = "clock") -> UInt64? { self[key]?.uint64Value }
}

/// Reads doc state straight from Redis with redis-cli (raw output: one value per line; JSON written by
/// Tandem holds no raw newlines).
enum SyncRedis {
    static func key(_ doc: String, _ name: String) -> String { "tandem:{\(doc)}:\(name)" }

    static func head(_ redis: RedisServerProcess, _ doc: String) -> UInt64 {
        UInt64(redis.command("GET", key(doc, "clock"))) ?? 0
    }

    /// `HGETALL records`: id → the stored bytes (as text).
    static func records(_ redis: RedisServerProcess, _ doc: String) -> [String: String] {
        pairs(redis.command("HGETALL", key(doc, "records")))
    }

    static func pairs(_ output: String) -> [String: String] {
        let lines = output.isEmpty ? [] : output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var result: [String: String] = [:]
        var i = 0
        while i + 1 < lines.count {
            result[lines[i]] = lines[i + 1]
            i += 2
        }
        return result
    }

    struct Entry {
        var clock: UInt64
        var fields: [String: String]
        var ops: JSONValue { json(fields["ops"] ?? "{}") }
    }

    /// The whole log (`XRANGE - +`), one entry per commit. A classic entry prints as its id then its
    /// field/value lines (ops, by, node, id, at, and sum); a group commit's entry as its id (its last clock)
    /// then 4 (n, node, at, b), and stands for n commits (`GroupCommitScript`).
    static func log(_ redis: RedisServerProcess, _ doc: String) -> [Entry] {
        let output = redis.command("XRANGE", key(doc, "log"), "-", "+")
        let lines = output.isEmpty ? [] : output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var entries: [Entry] = []
        var i = 0
        while i < lines.count {
            let id = lines[i]
            let clock = UInt64(id.split(separator: "-").first ?? "") ?? 0
            // Field names (values may be anything, but never sit where a name is expected): a classic entry
            // may also have `sum` (issue 13), after `at`.
            let names: Set<String> = ["ops", "by", "node", "id", "at", "sum", "n", "b"]
            var fields: [String: String] = [:]
            var j = i + 1
            while j + 1 < lines.count, names.contains(lines[j]), fields[lines[j]] == nil {
                fields[lines[j]] = lines[j + 1]
                j += 2
            }
            i = j
            guard fields["n"] != nil, let n = UInt64(fields["n"] ?? ""), n >= 1, n <= clock,
                case .array(let members)? = try? JSONParser.parse(fields["b"] ?? "")
            else {
                entries.append(Entry(clock: clock, fields: fields))
                continue
            }
            for (k, member) in members.enumerated() {
                let m = member.objectValue ?? [:]
                entries.append(
                    Entry(
                        clock: clock - n + 1 + UInt64(k),
                        fields: [
                            "ops": m["ops"]?.serializedString ?? "{}", "by": m["by"]?.stringValue ?? "",
                            "id": m["id"]?.serializedString ?? "", "node": fields["node"] ?? "", "at": fields["at"] ?? "",
                            "sum": m["sum"]?.stringValue ?? "",
                        ]))
            }
        }
        return entries
    }

    /// Pushes (session/id) that appear more than once in the log, with their clocks.
    static func pushesCommittedTwice(_ redis: RedisServerProcess, _ doc: String) -> [String] {
        var clocks: [String: [UInt64]] = [:]
        for entry in log(redis, doc) {
            clocks["\(entry.fields["by"] ?? "?")/\(entry.fields["id"] ?? "?")", default: []].append(entry.clock)
        }
        return clocks.filter { $0.value.count > 1 }.map { "\($0.key) at \($0.value)" }.sorted()
    }

    /// Replays the log from an empty doc.
    static func replay(_ entries: [Entry]) throws -> DocReplica {
        var replica = DocReplica()
        for entry in entries {
            let applied = replica.apply(clock: entry.clock, ops: try Ops(json: entry.ops))
            if !applied { throw ReplayError(message: "log entry \(entry.clock) after \(replica.head)") }
        }
        return replica
    }

    struct ReplayError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}

extension DocReplica {
    var serializedRecords: [String: String] { records.mapValues(\.serializedString) }
}
