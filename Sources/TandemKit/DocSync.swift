import TandemCore

/// One doc's records on the client, as a pure state machine: the server-confirmed records at `clock`, the
/// pushes not yet answered, and the optimistic view (confirmed + pending, in order). It applies what the
/// server sends under the rules of docs/protocol.md and returns what to do; ``TandemConnection`` does it.
///
/// Pushes: at most one is in flight. Edits made meanwhile are folded into the next one
/// (``OpsCoalescing``), so a burst of keystrokes costs one push per round trip, and every push is based on
/// the clock its predecessor's answer produced. A push whose connection broke keeps its id and ops: it is
/// recognised in the catch-up (a log entry or patch with one of this client's sessions and its id) or sent
/// again after the catch-up (the server answers a re-push of something it committed `duplicate`).
struct DocSync: Sendable {
    /// Limits on how far edits are folded into one push (a push beyond the server's `--max-push-ops` or
    /// `--max-push-bytes` would be refused whole).
    struct Limits: Sendable, Equatable {
        var maxOpsPerPush = 500
        var maxBytesPerPush = 256 * 1024
    }

    struct Push: Sendable, Equatable {
        var id: Int
        var ops: Ops
        /// The edits folded into this push (their callers wait for its outcome).
        var tickets: [Int]
        /// Serialized size of the edits folded in (an upper bound of the push's ops).
        var bytes: Int
        var sent = false
    }

    typealias Source = RecordChange.Source

    enum Action: Sendable, Equatable {
        /// Send `{"t":"push","doc":…,"id":id,"base":base,"ops":ops}`.
        case send(id: Int, base: UInt64, ops: Ops)
        /// The edits with these tickets are settled.
        case settle(tickets: [Int], Result<PushOutcome, TandemError>)
        /// Call ``retryDue()`` after this delay (`unavailable`).
        case retry(after: Duration)
        /// The records changed: `ids` (nil: possibly all, after a snapshot).
        case changed(Source, ids: Set<String>?)
        /// In sync with the server at this clock (after a catch-up).
        case synced(clock: UInt64)
        /// Commits were applied: acknowledge the clock (debounced by the caller).
        case ack
        /// The confirmed records after `clock` do not match the server's checksum (issue 13): report it
        /// (`{"t":"diverged"}`) and re-join — `since` is nil until the snapshot replaced everything.
        case diverged(clock: UInt64, expected: DocChecksum, actual: DocChecksum)
    }

    let limits: Limits
    private(set) var confirmed = DocReplica()
    private(set) var view: [String: JSONValue] = [:]
    private(set) var synced = false
    private(set) var everSynced = false
    private(set) var inFlight: Push?
    private(set) var queue: [Push] = []
    private var waitingForRetry = false
    private var staging: [String: JSONValue]?
    /// Re-joined without `since` after a checksum mismatch: waiting for the snapshot.
    private(set) var resyncing = false

    init(limits: Limits = .init()) {
        self.limits = limits
    }

    /// A doc restored from a ``TandemStore``: in sync as of the stored clock (the next join asks for what came
    /// after). The store is written before every push goes out, so of the stored pushes only the first may have
    /// been sent by the previous process: it becomes the push in flight, as after a dropped connection
    /// (recognised in the catch-up by session and id, or sent again; never folded into), the rest are queued.
    init(restoring stored: StoredDoc, limits: Limits = .init()) {
        self.limits = limits
        confirmed = DocReplica(head: stored.clock, records: stored.records)
        var pushes = stored.pending.map { Push(id: $0.id, ops: $0.ops, tickets: [], bytes: $0.ops.json.serialized.count) }
        if !pushes.isEmpty { inFlight = pushes.removeFirst() }
        queue = pushes
        everSynced = true
        recompute()
    }

    /// What a ``TandemStore`` keeps of this doc (nil before the first sync: nothing worth keeping).
    func stored(doc: String, nextPushID: Int, sessions: Set<String>) -> StoredDoc? {
        guard everSynced else { return nil }
        return StoredDoc(
            doc: doc, clock: clock, records: records, pending: pending.map { .init(id: $0.id, ops: $0.ops) },
            nextPushID: nextPushID, sessions: Array(sessions))
    }

    var clock: UInt64 { confirmed.head }
    var records: [String: JSONValue] { confirmed.records }
    /// Pushes not answered yet, oldest first.
    var pending: [Push] { (inFlight.map { [$0] } ?? []) + queue }

    /// The `since` of the next join: the clock once in sync, none before (a snapshot is needed).
    var since: UInt64? { everSynced && !resyncing ? clock : nil }

    // MARK: Edits

    /// A local edit: applied to the view at once, folded into the last unsent push or queued as push `newID`.
    mutating func edit(_ ops: Ops, ticket: Int, newID: Int) -> [Action] {
        let bytes = ops.json.serialized.count
        if let last = queue.indices.last,
            queue[last].bytes + bytes <= limits.maxBytesPerPush,
            let merged = OpsCoalescing.compose(queue[last].ops, ops),
            merged.records.count <= limits.maxOpsPerPush
        {
            queue[last].ops = merged
            queue[last].tickets.append(ticket)
            queue[last].bytes += bytes
        } else {
            queue.append(Push(id: newID, ops: ops, tickets: [ticket], bytes: bytes))
        }
        recompute()
        return [.changed(.local, ids: Set(ops.records.keys))] + pump()
    }

    /// Sends the next push if nothing is in flight and the doc is in sync.
    private mutating func pump() -> [Action] {
        guard synced, !waitingForRetry else { return [] }
        if inFlight == nil, !queue.isEmpty { inFlight = queue.removeFirst() }
        guard var push = inFlight, !push.sent else { return [] }
        push.sent = true
        inFlight = push
        return [.send(id: push.id, base: clock, ops: push.ops)]
    }

    /// The delay after `unavailable` is over.
    mutating func retryDue() -> [Action] {
        waitingForRetry = false
        return pump()
    }

    // MARK: Connection

    /// The connection is gone: the push in flight has an unknown outcome (kept, recognised or re-sent later).
    mutating func disconnected() {
        synced = false
        staging = nil
        waitingForRetry = false
        inFlight?.sent = false
    }

    /// A `joined` arrived. A re-join already at the head is in sync at once (a catch-up may still follow).
    mutating func joined(clock head: UInt64?) -> [Action] {
        synced = false
        staging = nil
        inFlight?.sent = false
        if everSynced, !resyncing, head == clock { return becameSynced() }
        return []
    }

    private mutating func becameSynced() -> [Action] {
        guard !synced else { return [] }
        synced = true
        everSynced = true
        return [.synced(clock: clock)] + pump()
    }

    // MARK: Server messages

    /// A snapshot chunk; the last one (`more == false`) replaces every record.
    mutating func snapshot(clock head: UInt64, records: [String: JSONValue], more: Bool, sum: DocChecksum? = nil) -> [Action] {
        staging = (staging ?? [:]).merging(records) { _, new in new }
        guard !more else { return [] }
        confirmed = DocReplica(head: head, records: staging ?? [:])
        staging = nil
        resyncing = false
        recompute()
        // A snapshot that does not match its own checksum is not resynced from (it is the snapshot).
        return [.changed(.snapshot, ids: nil)] + verify(sum, resync: false) + becameSynced()
    }

    /// Compares the confirmed records with the server's checksum after a commit or snapshot.
    private mutating func verify(_ sum: DocChecksum?, resync: Bool = true) -> [Action] {
        guard let sum, !resyncing, sum != confirmed.sum else { return [] }
        let actions: [Action] = [.diverged(clock: clock, expected: sum, actual: confirmed.sum)]
        guard resync else { return actions }
        resyncing = true
        synced = false
        staging = nil
        inFlight?.sent = false
        return actions
    }

    /// A `log` chunk (catch-up or `sync`).
    /// `sum`: the checksum after the chunk's last entry.
    mutating func log(
        entries: [(clock: UInt64, ops: Ops, by: String?, id: Int?)], more: Bool, sessions: Set<String>, sum: DocChecksum? = nil
    ) -> [Action] {
        var actions: [Action] = []
        var ids = Set<String>()
        for entry in entries {
            actions += commit(clock: entry.clock, ops: entry.ops, by: entry.by, id: entry.id, sessions: sessions)
            ids.formUnion(entry.ops.records.keys)
        }
        if !entries.isEmpty {
            recompute()
            actions.append(.changed(.remote, ids: ids))
            actions.append(.ack)
            let diverged = verify(sum)
            if !diverged.isEmpty { return actions + diverged }
        }
        if !more { actions += becameSynced() }
        return actions
    }

    /// A live `patch` (someone's commit; our own only after a re-join, with our session and id).
    mutating func patch(clock head: UInt64, ops: Ops, by: String?, id: Int?, sessions: Set<String>, sum: DocChecksum? = nil)
        -> [Action]
    {
        guard !resyncing else { return [] }  // the snapshot on its way replaces everything
        let fresh = head > clock
        var actions = commit(clock: head, ops: ops, by: by, id: id, sessions: sessions)
        recompute()
        actions.append(.changed(.remote, ids: Set(ops.records.keys)))
        actions.append(.ack)
        return actions + (fresh ? verify(sum) : [])
    }

    /// Applies a commit in clock order; one of ours settles the push in flight.
    private mutating func commit(clock head: UInt64, ops: Ops, by: String?, id: Int?, sessions: Set<String>) -> [Action] {
        guard head > clock else { return [] }
        if head != clock + 1 {
            // A gap cannot happen (the server sends every clock once, in order); never apply out of order.
            confirmed = DocReplica(head: head - 1, records: confirmed.records)
        }
        confirmed.apply(clock: head, ops: ops)
        guard let push = inFlight, let id, push.id == id, let by, sessions.contains(by) else { return [] }
        inFlight = nil
        waitingForRetry = false
        let outcome: PushOutcome = ops == push.ops ? .commit(clock: head, recovered: true) : .rebase(clock: head, applied: ops)
        return [.settle(tickets: push.tickets, .success(outcome))] + pump()
    }

    /// A `result` for push `id`.
    mutating func result(id: Int, action: String, clock head: UInt64?, ops: Ops?, reason: String?, sum: DocChecksum? = nil)
        -> [Action]
    {
        guard let push = inFlight, push.id == id else { return [] }
        inFlight = nil
        let before = clock
        let outcome: PushOutcome
        switch action {
        case "commit":
            let head = head ?? clock + 1
            if head > clock { confirmed.apply(clock: head, ops: push.ops) }
            outcome = .commit(clock: head, recovered: false)
        case "rebase":
            let head = head ?? clock + 1
            let applied = ops ?? Ops([:])
            if head > clock { confirmed.apply(clock: head, ops: applied) }
            outcome = .rebase(clock: head, applied: applied)
        default:
            outcome = .discard(reason: reason ?? action)
        }
        recompute()
        var actions: [Action] = [.changed(.result, ids: Set(push.ops.records.keys)), .settle(tickets: push.tickets, .success(outcome))]
        if action != "discard" { actions.append(.ack) }
        if action != "discard" && clock > before {
            let diverged = verify(sum)
            if !diverged.isEmpty { return actions + diverged }
        }
        return actions + pump()
    }

    /// An `error` naming push `id`: `unavailable` is retried after `retryAfterMs` (same id), anything else
    /// fails the push (nothing of it was applied).
    mutating func pushError(_ error: ServerError, id: Int) -> [Action] {
        guard var push = inFlight, push.id == id else { return [] }
        if error.code == "unavailable" {
            push.sent = false
            inFlight = push
            waitingForRetry = true
            return [.retry(after: Self.retryDelay(retryAfterMs: error.retryAfterMs))]
        }
        inFlight = nil
        recompute()
        return [.changed(.result, ids: Set(push.ops.records.keys)), .settle(tickets: push.tickets, .failure(.server(error)))] + pump()
    }

    /// The doc was left: every pending edit fails.
    mutating func left(doc: String) -> [Action] {
        let tickets = pending.flatMap(\.tickets)
        inFlight = nil
        queue = []
        synced = false
        recompute()
        return tickets.isEmpty ? [] : [.settle(tickets: tickets, .failure(.left(doc: doc)))]
    }

    /// How long to wait after `unavailable`: the server's `retryAfterMs` (already jittered, it spreads a busy
    /// doc's refused pushes over the time it needs), at most a minute; a second when it gave none.
    static func retryDelay(retryAfterMs: Int?) -> Duration {
        guard let retryAfterMs, retryAfterMs >= 0 else { return .seconds(1) }
        return .milliseconds(min(retryAfterMs, 60_000))
    }

    private mutating func recompute() {
        var replica = confirmed.untracked  // the view is never compared: no hashing per edit
        for push in pending { replica.apply(clock: replica.head &+ 1, ops: push.ops) }
        view = replica.records
    }
}
