import NIOConcurrencyHelpers
import NIOCore
import TandemClient

/// One handshake attempt's outcome.
enum AttemptOutcome: Sendable {
    case connected(WebSocketClient)
    /// HTTP refusal before the upgrade (503 overloaded, 429, ...), with `Retry-After` seconds if given.
    case rejected(status: Int, retryAfter: Double?, error: String?)
    /// No HTTP answer: refused, timed out, reset.
    case failed(String)
}

/// Handshake counters, shared by every connecting task.
struct HandshakeCounts: Codable, Sendable {
    var attempts = 0
    var succeeded = 0
    /// HTTP status → refusals ("503" → n). JSON object keys are strings.
    var rejectedByStatus: [String: Int] = [:]
    /// `error` code of the refusal body → refusals (`overloaded`, `node_full`, ...).
    var rejectedByError: [String: Int] = [:]
    /// Connection failures without an HTTP answer, by description.
    var failures: [String: Int] = [:]
    var gaveUp = 0

    var rejected: Int { rejectedByStatus.values.reduce(0, +) }
}

/// Opens WebSocket connections for the scenarios: one attempt at a time with `attempt`, or paced and
/// admission-aware with `connectPaced` (used to ramp up). Thread-safe.
final class Connector: Sendable {
    let baseURL: String
    let configuration: WebSocketClient.Configuration
    private let counts = NIOLockedValueBox(HandshakeCounts())
    private let nextSlot = NIOLockedValueBox<UInt64>(0)
    /// Nanoseconds between paced attempts (1 / --connect-rate).
    private let spacingNs: UInt64

    init(baseURL: String, connectRate: Double, connectTimeoutSeconds: Int64 = 10) {
        self.baseURL = baseURL
        self.configuration = .init(connectTimeout: .seconds(connectTimeoutSeconds), closeTimeout: .seconds(2))
        self.spacingNs = UInt64(1e9 / max(1, connectRate))
    }

    var snapshot: HandshakeCounts { counts.withLockedValue { $0 } }

    func resetCounts() { counts.withLockedValue { $0 = HandshakeCounts() } }

    /// `baseURL` plus query items (values must be URL-safe; the bench's are).
    /// - Parameter base: another endpoint than `baseURL` (a second node).
    func url(_ query: [(String, String)], base: String? = nil) -> String {
        let q = query.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let base = base ?? baseURL
        return base + (base.contains("?") ? "&" : "?") + q
    }

    /// One handshake.
    func attempt(url: String, on loop: any EventLoop, callbacks: WebSocketClient.Callbacks) async -> AttemptOutcome {
        counts.withLockedValue { $0.attempts += 1 }
        do {
            let client = try await WebSocketClient.connect(
                to: url, on: loop, configuration: configuration, callbacks: callbacks)
            counts.withLockedValue { $0.succeeded += 1 }
            return .connected(client)
        } catch let error as WebSocketClientError {
            if case .handshakeRejected(let status, _, let body) = error {
                let retry = error.headerValue("retry-after").flatMap { Double($0.trimmedSpaces()) }
                let code = Self.errorCode(body)
                counts.withLockedValue {
                    $0.rejectedByStatus[String(status), default: 0] += 1
                    if let code { $0.rejectedByError[code, default: 0] += 1 }
                }
                return .rejected(status: status, retryAfter: retry, error: code)
            }
            let kind = Self.failureKind(error)
            counts.withLockedValue { $0.failures[kind, default: 0] += 1 }
            return .failed(kind)
        } catch {
            counts.withLockedValue { $0.failures["\(error)", default: 0] += 1 }
            return .failed("\(error)")
        }
    }

    /// Ramp-up connect: attempts are spaced at the connect rate across all callers; a refusal with
    /// `Retry-After` waits that long (then takes a new slot); a failure retries with a growing pause.
    /// Returns nil after `maxAttempts`.
    func connectPaced(
        url: String, on loop: any EventLoop, callbacks: WebSocketClient.Callbacks, maxAttempts: Int = 20
    ) async -> WebSocketClient? {
        var failures = 0
        for _ in 0..<maxAttempts {
            await sleep(untilNanos: takeSlot())
            switch await attempt(url: url, on: loop, callbacks: callbacks) {
            case .connected(let client):
                return client
            case .rejected(_, let retryAfter, _):
                // Honour Retry-After (the server already jitters it); a little extra spread on top.
                await sleep(seconds: (retryAfter ?? 1) + Double.random(in: 0..<0.25))
            case .failed:
                failures += 1
                await sleep(seconds: min(5, 0.1 * Double(1 << min(failures, 6))) * Double.random(in: 0.5..<1))
            }
        }
        counts.withLockedValue { $0.gaveUp += 1 }
        return nil
    }

    private func takeSlot() -> UInt64 {
        let now = monotonicNanos()
        return nextSlot.withLockedValue { next in
            let slot = max(now, next)
            next = slot + spacingNs
            return slot
        }
    }

    private static func errorCode(_ body: String) -> String? {
        guard let r = body.range(of: #""error":""#) else { return nil }
        let rest = body[r.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    private static func failureKind(_ error: WebSocketClientError) -> String {
        switch error {
        case .connectionRefused: return "connection refused"
        case .connectTimeout: return "connect timeout"
        case .handshakeTimeout: return "handshake timeout"
        case .handshakeFailed(let reason): return "handshake failed: \(reason)"
        case .connectionFailed(_, _, let underlying): return "connection failed: \(underlying)"
        default: return "\(error)"
        }
    }
}

extension String {
    func trimmedSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Runs `body` for 0..<count with at most `width` in flight.
func forEachConcurrently(
    _ count: Int, width: Int, _ body: @escaping @Sendable (Int) async -> Void
) async {
    await withTaskGroup(of: Void.self) { group in
        var next = 0
        while next < min(width, count) {
            let i = next
            group.addTask { await body(i) }
            next += 1
        }
        while await group.next() != nil {
            if next < count {
                let i = next
                group.addTask { await body(i) }
                next += 1
            }
        }
    }
}
