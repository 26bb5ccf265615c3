import Foundation
import Testing
import TandemServer
import TandemTestSupport

// Helpers for the presence, connection, auth, ops and shutdown integration tests. Additive to the
// harness in TestNode.swift and TestClient.swift (which stay as they are).

/// Async clean-ups that run when a test ends, whether it returned or threw (a `defer { Task {…} }` would
/// let the next test start before the nodes are stopped). Tests of suites marked `.cleanup` register
/// with `Cleanup.current`.
final class Cleanup: @unchecked Sendable {
    // @unchecked: `actions` is guarded by `lock`.
    @TaskLocal static var current = Cleanup()

    private let lock = NSLock()
    private var actions: [@Sendable () async -> Void] = []

    func add(_ action: @escaping @Sendable () async -> Void) {
        lock.withLock { actions.append(action) }
    }

    func run() async {
        let pending = lock.withLock {
            let pending = actions
            actions = []
            return pending
        }
        for action in pending.reversed() { await action() }
    }
}

/// Gives each test of a suite its own `Cleanup.current` and runs it after the test.
struct CleanupTrait: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else { return try await function() }
        let cleanup = Cleanup()
        do {
            try await Cleanup.$current.withValue(cleanup) { try await function() }
        } catch {
            await cleanup.run()
            throw error
        }
        await cleanup.run()
    }
}

extension Trait where Self == CleanupTrait {
    /// Stops what a test registered with `Cleanup.current` (nodes) when it ends.
    static var cleanup: CleanupTrait { CleanupTrait() }
}

extension InProcessNode {
    /// Starts a node that the test's `Cleanup.current` stops at the end of the test.
    static func start(
        redis: String, nodeID: String, stopWhenDone: Bool, configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws -> InProcessNode {
        let node = try await InProcessNode.start(redis: redis, nodeID: nodeID, configure: configure)
        if stopWhenDone { Cleanup.current.add { await node.stop() } }
        return node
    }

    /// A counter or gauge (exact series, e.g. `tandem_presence_updates_total{result="accepted"}`).
    func value(_ series: String) async throws -> Double { try await HTTP.metric(port: opsPort, series) }

    /// `/api/status` as JSON.
    func status() async throws -> [String: Any] { try JSON.parse(try await get("/api/status").body) }
}

extension ProcessNode {
    func value(_ series: String) async throws -> Double { try await HTTP.metric(port: opsPort, series) }
}

extension RedisServerProcess {
    /// `INFO section` as key → value.
    func info(_ section: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in command("INFO", section).split(whereSeparator: \.isNewline) {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard !text.hasPrefix("#"), let colon = text.firstIndex(of: ":") else { continue }
            fields[String(text[..<colon])] = String(text[text.index(after: colon)...])
        }
        return fields
    }

    /// `total_commands_processed` (commands run inside Lua scripts count too).
    var commandsProcessed: Int { Int(info("stats")["total_commands_processed"] ?? "") ?? -1 }

    /// How many times `command` ran since the last `CONFIG RESETSTAT` (from `INFO commandstats`).
    func calls(of command: String) -> Int {
        guard let stat = info("commandstats")["cmdstat_\(command.lowercased())"] else { return 0 }
        for part in stat.split(separator: ",") where part.hasPrefix("calls=") {
            return Int(part.dropFirst("calls=".count)) ?? -1
        }
        return -1
    }

    /// `HKEYS key` as a set (empty when the key does not exist).
    func hashKeys(_ key: String) -> Set<String> {
        Set(command("HKEYS", key).split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty })
    }

    /// Every key (test Redis instances are tiny).
    var allKeys: [String] {
        command("KEYS", "*").split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }.sorted()
    }

    /// Redis's own clock in milliseconds.
    var nowMs: Int64 {
        let parts = command("TIME").split(whereSeparator: \.isNewline).compactMap { Int64($0) }
        guard parts.count == 2 else { return 0 }
        return parts[0] * 1000 + parts[1] / 1000
    }
}

extension TestClient {
    /// Number of messages received so far (a mark for `since:` windows). The server sends only JSON
    /// objects, so parsed and raw messages line up.
    var count: Int { all().count }

    /// Parsed messages received after the mark `from`.
    func messages(since from: Int) -> [[String: Any]] { Array(all().dropFirst(from)) }

    /// Presence deltas (`t == presence`) of `doc` received after the mark.
    func deltas(of doc: String, since from: Int = 0) -> [[String: Any]] {
        messages(since: from).filter { JSON.string($0, at: "t") == "presence" && JSON.string($0, at: "doc") == doc }
    }

    /// Raw frames of presence deltas of `doc` after the mark, as received.
    func rawDeltas(of doc: String, since from: Int = 0) -> [String] {
        let raw = rawMessages
        guard from < raw.count else { return [] }
        return raw[from...].filter { text in
            guard let object = try? JSON.parse(text) else { return false }
            return JSON.string(object, at: "t") == "presence" && JSON.string(object, at: "doc") == doc
        }
    }

    /// Sids listed in `field` (`joined`, `updated` as entries; `left` as strings) of deltas after the mark.
    func sids(_ field: String, of doc: String, since from: Int = 0) -> [String] {
        deltas(of: doc, since: from).flatMap { delta -> [String] in
            let items = JSON.array(delta, at: field) ?? []
            if field == "left" { return items.compactMap { $0 as? String } }
            return items.compactMap { JSON.string($0, at: "sid") }
        }
    }

    /// Errors with `code` received after the mark.
    func errors(_ code: String, since from: Int = 0) -> [[String: Any]] {
        messages(since: from).filter { JSON.string($0, at: "t") == "error" && JSON.string($0, at: "code") == code }
    }

    var welcome: [String: Any] { all("welcome").first ?? [:] }
}

/// A signed token for JWT mode.
func makeToken(
    secret: String, user: String, name: String? = nil, docs: [String: String], expiresIn: TimeInterval = 3600
) async throws -> String {
    try await Authenticator.makeToken(
        secret: secret, claims: TandemClaims(sub: user, name: name, exp: Date().addingTimeInterval(expiresIn), docs: docs))
}

/// Sends `count` presence updates (`{"seq": i}` plus `extra`) spread evenly over `seconds`, in batches
/// every 10 ms. Returns the number sent (the last state carries `seq == count`).
@discardableResult
func sendPresence(
    _ client: TestClient, doc: String, count: Int, over seconds: Double, extra: String = ""
) async throws -> Int {
    let clock = ContinuousClock()
    let start = clock.now
    var sent = 0
    while sent < count {
        let elapsed = (clock.now - start).seconds
        let due = min(count, Int((elapsed / seconds) * Double(count)) + 1)
        while sent < due {
            sent += 1
            client.sendRaw(#"{"t":"presence","doc":"\#(doc)","state":{"seq":\#(sent)\#(extra)}}"#)
        }
        if sent < count { try await Task.sleep(for: .milliseconds(10)) }
    }
    return sent
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
