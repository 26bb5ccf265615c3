/// A joined doc: its records (optimistic view and confirmed state), its members, this session's presence.
/// A handle: copies refer to the same doc of the same ``TandemConnection``; all state lives in the connection.
///
/// Edits are applied to ``records()`` at once and sent as pushes, one at a time per doc; edits made while a
/// push is in flight leave together in the next. Offline, edits are queued and pushed after the reconnect's
/// catch-up (a push whose answer was lost with the connection is recognised in the catch-up or re-sent under
/// the same id, which the server answers `duplicate` if it had committed it).
public struct TandemDocument: Sendable {
    public let connection: TandemConnection
    /// The doc id.
    public let id: String

    // MARK: Records

    /// The records as this client sees them: the confirmed ones with its pending edits applied.
    public func records() async -> [String: JSONValue] { await connection.records(id) }

    /// One record of ``records()``.
    public func record(_ recordID: String) async -> JSONValue? { await connection.records(id)[recordID] }

    /// One record decoded as `T`.
    public func record<T: Decodable>(_ recordID: String, as type: T.Type) async throws(JSONConversionError) -> T? {
        guard let value = await record(recordID) else { return nil }
        return try value.decode(T.self)
    }

    /// The records as of ``clock()``, without pending edits.
    public func confirmedRecords() async -> [String: JSONValue] { await connection.confirmedRecords(id) }

    /// The last document clock applied.
    public func clock() async -> UInt64 { await connection.clock(id) }

    /// Pushes not answered yet (the one in flight and the queued ones).
    public func pendingPushes() async -> Int { await connection.pendingPushes(id) }

    /// Whether the doc is caught up on the current connection.
    public func isSynced() async -> Bool { await connection.isSynced(id) }

    // MARK: Edits

    /// Pushes `ops` and returns the server's answer (``PushOutcome``). Applied to ``records()`` at once; a
    /// `rebase` or `discard` replaces the optimistic change with what the server decided.
    /// - Throws: ``TandemError/server(_:)`` when refused (`too_large`, `bad_message`; `unavailable` is retried
    ///   by itself after the server's `retryAfterMs`), ``TandemError/left(doc:)``, ``TandemError/closed``.
    @discardableResult
    public func push(_ ops: Ops) async throws(TandemError) -> PushOutcome {
        // Only nil when not waiting.
        try await connection.push(id, ops, wait: true)!
    }

    /// Queues `ops` without waiting for the answer (it arrives as ``DocumentEvent/pushSettled(_:)``).
    public func submit(_ ops: Ops) async throws(TandemError) {
        _ = try await connection.push(id, ops, wait: false)
    }

    /// Creates or replaces a record (last writer wins).
    @discardableResult
    public func put(_ recordID: String, _ record: JSONValue) async throws(TandemError) -> PushOutcome {
        try await push(Ops([recordID: .put(record)]))
    }

    /// Creates or replaces a record from an `Encodable` value (it must encode as a JSON object).
    @discardableResult
    public func put<T: Encodable>(_ recordID: String, encoding value: T) async throws -> PushOutcome {
        try await put(recordID, JSONValue(encoding: value))
    }

    /// Changes fields of a record (void if it was removed concurrently).
    @discardableResult
    public func patch(_ recordID: String, _ fields: [String: FieldOp]) async throws(TandemError) -> PushOutcome {
        try await push(Ops([recordID: .patch(Diff(fields))]))
    }

    /// Removes a record.
    @discardableResult
    public func remove(_ recordID: String) async throws(TandemError) -> PushOutcome {
        try await push(Ops([recordID: .remove]))
    }

    // MARK: Presence

    /// Sets this session's presence state (a JSON object of at most the server's `maxStateBytes`). Sent at
    /// most `presenceRate` times a second (the rate in the `welcome`); states set meanwhile replace each
    /// other and the newest is sent when the interval is up. Offline, the next join carries the newest.
    public func setPresence(_ state: JSONValue) async throws(TandemError) {
        try await connection.setPresence(id, state)
    }

    /// Sets this session's presence from an `Encodable` value.
    public func setPresence<T: Encodable>(encoding value: T) async throws {
        try await setPresence(JSONValue(encoding: value))
    }

    /// Everyone in the doc (this session included), per session and per user.
    public func members() async -> Members { await connection.members(id) }

    /// `editor` or `viewer` while joined; nil while (re)connecting.
    public func role() async -> String? { await connection.role(id) }

    // MARK: Events

    /// Every change from now on, in order: records, presence, push answers, catch-ups. Each call makes a new
    /// stream; it finishes when the doc is left or the connection closed.
    public func events() async -> AsyncStream<DocumentEvent> { await connection.events(id) }

    /// Leaves the doc (others see this session leave at the next tick). Pending edits fail with
    /// ``TandemError/left(doc:)``.
    public func leave() async { await connection.leave(id) }
}
