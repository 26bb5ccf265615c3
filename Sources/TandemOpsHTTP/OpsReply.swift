import CMicroHTTPD
import Dispatch
import NIOConcurrencyHelpers

/// What a handler returns: a response now, or the promise of one (`deferred`).
///
/// Handlers run on libmicrohttpd's few polling threads, each serving many connections, so a handler must
/// never wait for anything slow (Redis, an event loop). Such work is `deferred`: the server suspends the
/// connection (`MHD_suspend_connection`, costing no thread), `start` kicks the work off and returns at
/// once, and whoever finishes it calls `OpsResponder.respond` from any thread. The server bounds both how
/// many are pending (`maxPendingResponses`, beyond which it answers 503 `busy` without calling `start`)
/// and how long each may take (`responseTimeoutMs`, then 503 `timeout`).
public struct OpsReply: Sendable {
    enum Kind: Sendable {
        case now(OpsResponse)
        case deferred(@Sendable (OpsResponder) -> Void)
    }

    let kind: Kind
    /// The route class reported with `OpsHTTPEvent.requestFinished` (a fixed set of values, for metrics).
    public var label: String?

    /// Answer at once.
    public static func response(_ response: OpsResponse, label: String? = nil) -> OpsReply {
        OpsReply(kind: .now(response), label: label)
    }

    /// Answer later: `start` runs on the polling thread and must return quickly; the answer goes to the
    /// responder it is given.
    public static func deferred(label: String? = nil, _ start: @escaping @Sendable (OpsResponder) -> Void) -> OpsReply {
        OpsReply(kind: .deferred(start), label: label)
    }
}

/// Delivers one deferred answer. Thread-safe; only the first answer counts (a late one — after the
/// timeout's 503, or after the server stopped — is dropped).
public final class OpsResponder: Sendable {
    private let pending: PendingResponses
    let id: UInt

    init(pending: PendingResponses, id: UInt) {
        self.pending = pending
        self.id = id
    }

    /// Whether an answer is still wanted: false once answered, timed out, or the server stopped. Work in
    /// several steps should check it between steps, so a request that timed out stops costing anything.
    public var isWaiting: Bool {
        pending.isWaiting(id)
    }

    /// Answers with `response`.
    public func respond(_ response: OpsResponse) {
        respond { response }
    }

    /// Answers with the response `build` makes. `build` runs later on the connection's polling thread, not
    /// on the caller's: an event loop can hand over data and leave the encoding to the ops threads.
    public func respond(building build: @escaping @Sendable () -> OpsResponse) {
        _ = pending.answer(id, with: build)
    }
}

/// The deferred answers of one running daemon: which connections are suspended waiting for one, and the
/// answers delivered but not yet picked up by their connection's thread.
///
/// Invariant (libmicrohttpd aborts in `MHD_stop_daemon` while a connection is suspended, and a resumed
/// connection may be freed at once): a connection is suspended and registered here in one step, and
/// answered, unregistered and resumed in one step, all under `state`'s lock. `stopAll()` takes the same
/// lock, so after it no connection is suspended and no later answer touches a connection pointer.
/// Lock order: this lock, then libmicrohttpd's internal mutex (taken inside suspend/resume);
/// libmicrohttpd never calls back into code that takes this lock while holding its own.
final class PendingResponses: Sendable {
    private struct Waiting {
        /// The suspended connection, as a bit pattern (a raw pointer is not Sendable).
        var connection: UInt
        /// When it gets 503 `timeout` unless answered before (monotonic ms).
        var deadlineMs: UInt64
    }

    private struct State {
        var waiting: [UInt: Waiting] = [:]
        /// Answered and resumed, waiting for the access handler's second call on the connection thread.
        var answers: [UInt: @Sendable () -> OpsResponse] = [:]
        var nextID: UInt = 1
        var stopping = false
        /// One timeout sweep is scheduled while anything waits: one timer in all, however many requests
        /// come and go (a timer per request would pile up with the request rate).
        var sweepScheduled = false
    }

    private let state = NIOLockedValueBox(State())
    let maxPending: Int
    let timeoutMs: Int
    private let observe: @Sendable (OpsHTTPEvent) -> Void

    init(maxPending: Int, timeoutMs: Int, observe: @escaping @Sendable (OpsHTTPEvent) -> Void) {
        self.maxPending = maxPending
        self.timeoutMs = timeoutMs
        self.observe = observe
    }

    enum SuspendResult {
        case suspended(OpsResponder)
        case full
        case stopping
    }

    /// Suspends `connection` and registers it, unless `maxPending` are pending or the server is stopping;
    /// after `timeoutMs` it is answered with 503 `timeout` unless answered before. Called only from the
    /// access handler (libmicrohttpd's rule for `MHD_suspend_connection`).
    func suspend(_ connection: OpaquePointer) -> SuspendResult {
        let deadline = monotonicMilliseconds() + UInt64(timeoutMs)
        return state.withLockedValue { state in
            if state.stopping { return .stopping }
            if state.waiting.count >= maxPending { return .full }
            let id = state.nextID
            state.nextID &+= 1  // wrapping is harmless: ids are only compared while pending
            MHD_suspend_connection(connection)
            state.waiting[id] = Waiting(connection: UInt(bitPattern: Int(bitPattern: connection)), deadlineMs: deadline)
            if !state.sweepScheduled {
                state.sweepScheduled = true
                scheduleSweep(at: deadline)
            }
            // Reported under the lock, so the gauge sees the counts in order.
            observe(.pendingResponses(state.waiting.count))
            return .suspended(OpsResponder(pending: self, id: id))
        }
    }

    /// Stores the answer and resumes the connection; false if `id` was already answered.
    func answer(_ id: UInt, with build: @escaping @Sendable () -> OpsResponse) -> Bool {
        state.withLockedValue { state in
            guard let waiting = state.waiting.removeValue(forKey: id) else { return false }
            state.answers[id] = build
            MHD_resume_connection(OpaquePointer(bitPattern: waiting.connection)!)
            observe(.pendingResponses(state.waiting.count))
            return true
        }
    }

    private func scheduleSweep(at deadlineMs: UInt64) {
        let delay = deadlineMs > monotonicMilliseconds() ? deadlineMs - monotonicMilliseconds() : 0
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(min(delay, 3_600_000)))) { [weak self] in
            self?.sweep()
        }
    }

    /// Answers every request past its deadline with 503 `timeout`, then schedules the next sweep for the
    /// earliest deadline left (or none when nothing waits).
    private func sweep() {
        let now = monotonicMilliseconds()
        let response = OpsResponse.responseTimeout(milliseconds: timeoutMs)
        state.withLockedValue { state in
            for (id, waiting) in state.waiting where waiting.deadlineMs <= now {
                state.waiting[id] = nil
                state.answers[id] = { response }
                MHD_resume_connection(OpaquePointer(bitPattern: waiting.connection)!)
                observe(.responseTimedOut)
                observe(.pendingResponses(state.waiting.count))
            }
            if let next = state.waiting.values.map(\.deadlineMs).min() {
                scheduleSweep(at: next)
            } else {
                state.sweepScheduled = false
            }
        }
    }

    func isWaiting(_ id: UInt) -> Bool {
        state.withLockedValue { $0.waiting[id] != nil }
    }

    /// The answer for `id`, once, on the connection's thread after the resume.
    func takeAnswer(_ id: UInt) -> (@Sendable () -> OpsResponse)? {
        state.withLockedValue { $0.answers.removeValue(forKey: id) }
    }

    /// Drops an answer whose connection went away before picking it up (request completed callback).
    func forget(_ id: UInt) {
        state.withLockedValue { state in
            _ = state.answers.removeValue(forKey: id)
        }
    }

    /// Answers every pending connection with `response` and refuses new ones; called by `stop()` before
    /// `MHD_stop_daemon`.
    func stopAll(with response: OpsResponse) {
        state.withLockedValue { state in
            state.stopping = true
            for (id, waiting) in state.waiting {
                state.answers[id] = { response }
                MHD_resume_connection(OpaquePointer(bitPattern: waiting.connection)!)
            }
            state.waiting = [:]
            observe(.pendingResponses(0))
        }
    }

    var pendingCount: Int { state.withLockedValue { $0.waiting.count } }
}
