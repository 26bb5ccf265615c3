import TandemCore

/// A page of a doc's version list (protocol `history`, docs/history.md): checkpoints newest first.
public struct HistoryPage: Sendable, Equatable {
    /// The doc's head when the server answered.
    public var head: UInt64
    /// Versions before the clock asked for, newest first: each the state after `clock`, with the sessions
    /// that committed since the previous one (`by`, at most 32) and how many commits.
    public var versions: [HistoryVersion]
    /// More versions are older than the last one: ask again with `before` = its clock.
    public var more: Bool

    public init(head: UInt64, versions: [HistoryVersion], more: Bool) {
        self.head = head
        self.versions = versions
        self.more = more
    }
}

/// A doc's state after one commit (protocol `at`): a preview, not the live records. The same value as a
/// history checkpoint (`clock`, `atMs`, `records`), so TandemCore's type serves both.
public typealias HistoryState = HistoryCheckpoint

/// What a restore did (protocol `restored`).
public struct RestoreOutcome: Sendable, Equatable {
    /// The clock whose state was restored.
    public var restoredFrom: UInt64
    /// The new commit's clock; nil when the doc already was in that state (nothing committed).
    public var clock: UInt64?
    public var changed: Bool { clock != nil }

    public init(restoredFrom: UInt64, clock: UInt64?) {
        self.restoredFrom = restoredFrom
        self.clock = clock
    }
}

extension TandemDocument {
    /// Up to `limit` (1–100, default 100) versions before clock `before` (default: all), newest first.
    /// Any member (viewers too) may read history.
    /// - Throws: ``TandemError/server(_:)`` with the server's refusal (`bad_message`, `not_joined`, …),
    ///   ``TandemError/left(doc:)`` when the doc is left first, or the connection's end.
    public func history(before: UInt64? = nil, limit: Int? = nil) async throws(TandemError) -> HistoryPage {
        if let limit, !(1...100).contains(limit) {
            throw .server(ServerError(code: "bad_message", message: "limit must be 1–100", doc: id))
        }
        var fields: [String: JSONValue] = ["t": .string("history"), "doc": .string(id)]
        if let before { fields["before"] = .number(before) }
        if let limit { fields["limit"] = .number(limit) }
        guard case .page(let page) = try await connection.historyRequest(id, JSONValue.object(fields).serializedString) else {
            throw .server(ServerError(code: "bad_message", message: "unexpected answer to history", doc: id))
        }
        return page
    }

    /// The doc's records after commit `clock` (0: before the first commit), read from its history.
    public func state(at clock: UInt64) async throws(TandemError) -> HistoryState {
        try await state(["clock": .number(clock)])
    }

    /// The doc's records after the last commit at or before `unixMs`.
    public func state(atTime unixMs: UInt64) async throws(TandemError) -> HistoryState {
        try await state(["time": .number(unixMs)])
    }

    private func state(_ point: [String: JSONValue]) async throws(TandemError) -> HistoryState {
        let message = JSONValue.object(point.merging(["t": .string("at"), "doc": .string(id)]) { a, _ in a }).serializedString
        guard case .state(let state) = try await connection.historyRequest(id, message) else {
            throw .server(ServerError(code: "bad_message", message: "unexpected answer to at", doc: id))
        }
        return state
    }

    /// Restores the doc to its state after `clock` (editors only: a viewer gets `forbidden`): one new
    /// commit, which every member — this one too — receives as an ordinary patch. History keeps
    /// everything before it.
    public func restore(to clock: UInt64) async throws(TandemError) -> RestoreOutcome {
        let message = JSONValue.object(["t": .string("restore"), "doc": .string(id), "clock": .number(clock)]).serializedString
        guard case .restored(let outcome) = try await connection.historyRequest(id, message) else {
            throw .server(ServerError(code: "bad_message", message: "unexpected answer to restore", doc: id))
        }
        return outcome
    }
}

/// One history request of the connection (`history`, `at`, `restore`): the server answers one at a time
/// per connection, so they go out one after the other.
final class HistoryRequest {
    let doc: String
    let message: String
    let continuation: CheckedContinuation<HistoryAnswer, any Error>
    /// `at` chunks gathered so far.
    var records: [String: JSONValue] = [:]
    /// Times the server said to try again (`rate_limited`, `unavailable`).
    var retries = 0
    var sent = false

    init(doc: String, message: String, continuation: CheckedContinuation<HistoryAnswer, any Error>) {
        self.doc = doc
        self.message = message
        self.continuation = continuation
    }
}

enum HistoryAnswer: Sendable {
    case page(HistoryPage)
    case state(HistoryState)
    case restored(RestoreOutcome)
}

extension TandemConnection {
    /// Most times one request is sent again after `rate_limited` / `unavailable` before it fails.
    static let maxHistoryRetries = 5

    func historyRequest(_ doc: String, _ message: String) async throws(TandemError) -> HistoryAnswer {
        guard hasDoc(doc) else { throw .left(doc: doc) }
        do {
            return try await withCheckedThrowingContinuation { continuation in
                historyQueue.append(HistoryRequest(doc: doc, message: message, continuation: continuation))
                pumpHistory()
            }
        } catch {
            throw (error as? TandemError) ?? .closed
        }
    }

    /// Sends the first queued request when none is in flight and its doc is joined (after a reconnect, the
    /// request in flight goes out again once the doc is joined again: reads are repeatable, and a restore
    /// repeated finds the doc already restored).
    func pumpHistory() {
        guard let request = historyQueue.first, !request.sent, historyJoined(request.doc) else { return }
        request.sent = true
        request.records = [:]
        sendText(request.message)
    }

    /// The connection was lost: the request in flight is sent again after the next join.
    func historyConnectionLost() {
        historyQueue.first?.sent = false
    }

    /// A history answer or an error for the request in flight; false when `message` is neither.
    func historyReceived(_ message: Inbound) -> Bool {
        guard let request = historyQueue.first, request.sent else { return false }
        switch message {
        case .history(let doc, let head, let versions, let more) where doc == request.doc:
            completeHistory(.success(.page(HistoryPage(head: head, versions: versions, more: more))))
        case .at(let doc, let clock, let atMs, let records, let more) where doc == request.doc:
            request.records.merge(records) { _, new in new }
            if !more { completeHistory(.success(.state(HistoryState(clock: clock, atMs: atMs, records: request.records)))) }
        case .restored(let doc, let from, let clock) where doc == request.doc:
            completeHistory(.success(.restored(RestoreOutcome(restoredFrom: from, clock: clock))))
        case .error(let error) where error.doc == request.doc && error.pushID == nil:
            // Errors name the doc but not the request: with one request in flight, an error of its doc
            // that is one a history request gets is its answer.
            switch error.code {
            case "rate_limited", "unavailable":
                guard request.retries < Self.maxHistoryRetries else {
                    completeHistory(.failure(.server(error)))
                    break
                }
                request.retries += 1
                request.sent = false
                Task {
                    try? await Task.sleep(for: DocSync.retryDelay(retryAfterMs: error.retryAfterMs))
                    self.pumpHistory()
                }
            case "bad_message", "not_joined", "forbidden", "too_large":
                completeHistory(.failure(.server(error)))
            default:
                return false
            }
        default:
            return false
        }
        return true
    }

    func completeHistory(_ result: Result<HistoryAnswer, TandemError>) {
        guard !historyQueue.isEmpty else { return }
        let request = historyQueue.removeFirst()
        request.continuation.resume(with: result.mapError { $0 as any Error })
        pumpHistory()
    }

    /// Fails the requests of `doc` (left), or all of them (`doc` nil: the connection closed for good).
    func failHistory(doc: String?, _ error: TandemError) {
        let failing = historyQueue.filter { doc == nil || $0.doc == doc }
        historyQueue.removeAll { doc == nil || $0.doc == doc }
        for request in failing { request.continuation.resume(throwing: error) }
        pumpHistory()
    }
}
