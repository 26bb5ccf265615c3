/// One request to the ops plane, parsed from its path and query and range-checked: the pure front half of
/// the ops router, with no I/O, so it can be unit-tested and fuzzed on its own (issue 7).
///
/// Every number in a URL is checked here, where it is parsed: a value out of range is a 400 with a
/// message naming the parameter, never a trap further down (`from=18446744073709551615` used to crash the
/// node on `from + 1`).
///
/// | path | route |
/// | --- | --- |
/// | `/metrics` | `.metrics` |
/// | `/healthz` | `.health` |
/// | `/readyz` | `.ready` |
/// | `/api/status?history=N` | `.status(history:)`, N in 0...`maxHistory` |
/// | `/api/docs/{id}` | `.doc(_:)` |
/// | `/api/docs/{id}/log?from=N&limit=L` | `.docLog(doc:from:limit:)`, N ≤ 2^53−1, L in 1...`maxLogLimit` |
/// | `/api/docs/{id}/at?clock=N` or `?time=MS` | `.docAt(doc:point:)` |
/// | `/api/docs/{id}/versions?before=N&limit=L` | `.docVersions(doc:before:limit:)`, L in 1...`maxVersionsLimit` |
/// | `/api/docs/{id}/restore?clock=N` (POST) | `.docRestore(doc:clock:)` |
/// | `/api/docs/{id}/fork?clock=N&to=ID` (POST) | `.docFork(doc:clock:to:)` |
/// | any other `/api/…` | 404 |
/// | anything else | `.file(_:)` (the status page) |
public enum OpsRoute: Equatable, Sendable {
    case metrics
    case health
    case ready
    /// `history`: how many one-second samples to include (nil: all of them).
    case status(history: Int?)
    case doc(String)
    /// Entries with clocks after `from`, at most `limit` of them.
    case docLog(doc: String, from: UInt64, limit: Int)
    /// The state after a commit (`?clock=N`) or at a time (`?time=UNIX_MS`), from the history (issue 15).
    case docAt(doc: String, point: HistoryPoint)
    /// Versions (checkpoints) before clock `before` (nil: all), newest first, at most `limit`.
    case docVersions(doc: String, before: UInt64?, limit: Int)
    /// POST: one new commit that makes the doc what it was after `clock`.
    case docRestore(doc: String, clock: UInt64)
    /// POST: a new doc `to` whose first state is `doc`'s after `clock`.
    case docFork(doc: String, clock: UInt64, to: String)
    /// A path for the static files of the status page.
    case file(String)

    /// Where in a doc's history (`/at`).
    public enum HistoryPoint: Equatable, Sendable {
        case clock(UInt64)
        case time(UInt64)
    }

    /// Versions per page when `limit` is not given, and at most.
    public static let defaultVersionsLimit = 50
    public static let maxVersionsLimit = 1_000
    /// Largest `time` (ms since 1970): year 9999, far beyond any commit, and far from overflow.
    public static let maxTimeMs: UInt64 = 253_402_300_799_999

    /// Whether the route changes a doc (POST; `--ops-token` required, never a read-only token).
    public var isWrite: Bool {
        switch self {
        case .docRestore, .docFork: return true
        default: return false
        }
    }

    /// Largest clock a URL may name: the protocol's (`ClientMessage.maxClock`, 2^53−1), so every
    /// `clock + 1` on a checked value stays far from `UInt64.max`.
    public static let maxClock = ClientMessage.maxClock
    /// Log entries per page when `limit` is not given.
    public static let defaultLogLimit = 100

    /// Ranges the parser enforces.
    public struct Limits: Equatable, Sendable {
        /// Largest `history` (the status sampler keeps this many samples).
        public var maxHistory: Int
        /// Largest `limit` of a log page.
        public var maxLogLimit: Int

        public init(maxHistory: Int = 300, maxLogLimit: Int = ServerMessage.maxChunkItems) {
            self.maxHistory = maxHistory
            self.maxLogLimit = maxLogLimit
        }
    }

    /// The route's class for metric labels: a fixed set of values, never a path or doc id.
    public var label: String {
        switch self {
        case .metrics: return "metrics"
        case .health: return "health"
        case .ready: return "ready"
        case .status: return "status"
        case .doc, .docLog: return "docs"
        case .docAt, .docVersions: return "history"
        case .docRestore, .docFork: return "history_write"
        case .file: return "static"
        }
    }

    /// Whether the route hands out document content or user names (`--ops-token` guards these).
    public var isDocumentRoute: Bool {
        switch self {
        case .doc, .docLog, .docAt, .docVersions, .docRestore, .docFork: return true
        default: return false
        }
    }

    /// Parses a request. `path` is the percent-decoded path without the query string; `query` holds the
    /// decoded query arguments (a repeated key keeps its last value).
    public static func parse(path: String, query: [String: String], limits: Limits = Limits()) -> Result<OpsRoute, OpsRouteError> {
        switch path {
        case "/metrics": return .success(.metrics)
        case "/healthz": return .success(.health)
        case "/readyz": return .success(.ready)
        case "/api/status":
            guard let text = query["history"] else { return .success(.status(history: nil)) }
            guard let history = integer(text, atMost: UInt64(max(0, limits.maxHistory))) else {
                return .failure(.badRequest("history must be an integer 0–\(limits.maxHistory)"))
            }
            return .success(.status(history: Int(history)))
        default:
            break
        }
        if path.hasPrefix("/api/docs/") { return parseDoc(path.dropFirst("/api/docs/".count), query: query, limits: limits) }
        if path.hasPrefix("/api/") || path == "/api" { return .failure(.notFound("no such API route")) }
        return .success(.file(path))
    }

    private static func parseDoc(_ rest: Substring, query: [String: String], limits: Limits) -> Result<OpsRoute, OpsRouteError> {
        let parts = rest.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard let first = parts.first, DocID.isValid(String(first)) else {
            return .failure(OpsRouteError(status: 400, code: "bad_doc_id", message: "doc ids are 1–128 characters of [A-Za-z0-9._:-]"))
        }
        let doc = String(first)
        switch parts.count {
        case 1:
            return .success(.doc(doc))
        case 2 where parts[1] == "log":
            var from: UInt64 = 0
            if let text = query["from"] {
                guard let value = integer(text, atMost: maxClock) else {
                    return .failure(.badRequest("from must be an integer clock 0–\(maxClock)"))
                }
                from = value
            }
            var limit = min(defaultLogLimit, max(1, limits.maxLogLimit))
            if let text = query["limit"] {
                guard let value = integer(text, atMost: UInt64(max(1, limits.maxLogLimit))), value >= 1 else {
                    return .failure(.badRequest("limit must be an integer 1–\(limits.maxLogLimit)"))
                }
                limit = Int(value)
            }
            return .success(.docLog(doc: doc, from: from, limit: limit))
        case 2 where parts[1] == "at":
            switch (query["clock"], query["time"]) {
            case (let text?, nil):
                guard let clock = integer(text, atMost: maxClock) else {
                    return .failure(.badRequest("clock must be an integer clock 0–\(maxClock)"))
                }
                return .success(.docAt(doc: doc, point: .clock(clock)))
            case (nil, let text?):
                guard let time = integer(text, atMost: maxTimeMs) else {
                    return .failure(.badRequest("time must be milliseconds since 1970, 0–\(maxTimeMs)"))
                }
                return .success(.docAt(doc: doc, point: .time(time)))
            default:
                return .failure(.badRequest("give exactly one of clock=N or time=UNIX_MS"))
            }
        case 2 where parts[1] == "versions":
            var before: UInt64?
            if let text = query["before"] {
                guard let value = integer(text, atMost: maxClock) else {
                    return .failure(.badRequest("before must be an integer clock 0–\(maxClock)"))
                }
                before = value
            }
            var limit = defaultVersionsLimit
            if let text = query["limit"] {
                guard let value = integer(text, atMost: UInt64(maxVersionsLimit)), value >= 1 else {
                    return .failure(.badRequest("limit must be an integer 1–\(maxVersionsLimit)"))
                }
                limit = Int(value)
            }
            return .success(.docVersions(doc: doc, before: before, limit: limit))
        case 2 where parts[1] == "restore" || parts[1] == "fork":
            guard let text = query["clock"], let clock = integer(text, atMost: maxClock) else {
                return .failure(.badRequest("clock must be an integer clock 0–\(maxClock)"))
            }
            guard parts[1] == "fork" else { return .success(.docRestore(doc: doc, clock: clock)) }
            guard let to = query["to"], DocID.isValid(to) else {
                return .failure(OpsRouteError(status: 400, code: "bad_doc_id", message: "to must be a doc id: 1–128 characters of [A-Za-z0-9._:-]"))
            }
            guard to != doc else { return .failure(.badRequest("a doc cannot be forked onto itself")) }
            return .success(.docFork(doc: doc, clock: clock, to: to))
        default:
            return .failure(.notFound("use /api/docs/{id}, /api/docs/{id}/log, /at, /versions, /restore or /fork"))
        }
    }

    /// A decimal integer of ASCII digits only (no sign, no spaces, no exponent) that is at most `max`.
    /// Long digit strings are refused before any arithmetic, so nothing here can overflow.
    static func integer(_ text: String, atMost max: UInt64) -> UInt64? {
        let digits = text.utf8
        guard !digits.isEmpty, digits.count <= 19 else { return nil }  // 19 digits always fit in UInt64
        var value: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        return value <= max ? value : nil
    }
}

/// Why an ops request could not be routed: the HTTP status (400 or 404), a stable `error` code for the
/// JSON body and a message for people.
public struct OpsRouteError: Error, Equatable, Sendable {
    public var status: Int
    public var code: String
    public var message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func badRequest(_ message: String) -> OpsRouteError {
        OpsRouteError(status: 400, code: "bad_request", message: message)
    }

    static func notFound(_ message: String) -> OpsRouteError {
        OpsRouteError(status: 404, code: "not_found", message: message)
    }
}
