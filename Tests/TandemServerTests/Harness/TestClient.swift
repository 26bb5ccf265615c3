import Foundation
import NIOCore
import NIOPosix
import TandemClient
import TandemTestSupport

/// A protocol-v1 test client: collects every JSON message it receives and lets tests wait for them.
final class TestClient: @unchecked Sendable {
    // @unchecked: the stores are guarded by `lock`; `socket` is set once in `connect`.
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    private(set) var socket: WebSocketClient!
    private let lock = NSLock()
    private var rawStore: [String] = []
    private var parsedStore: [[String: Any]] = []
    private var cursorValue = 0
    let name: String

    private func received(_ text: String) {
        let object = try? JSON.parse(text)
        lock.lock()
        rawStore.append(text)
        if let object { parsedStore.append(object) }
        lock.unlock()
    }

    private var messages: [[String: Any]] {
        lock.lock()
        defer { lock.unlock() }
        return parsedStore
    }

    private init(name: String) { self.name = name }

    /// Connects and waits for `welcome`. Tests that stall a reader give it a small `receiveBufferBytes`, so
    /// that the server backs up after a known amount and not after what the kernel auto-tunes the buffer to
    /// (up to tcp_rmem's maximum, 32 MiB here).
    static func connect(
        _ url: String, headers: [(String, String)] = [], autoPong: Bool = true, name: String = "client",
        receiveBufferBytes: Int? = nil
    ) async throws -> TestClient {
        let client = TestClient(name: name)
        var configuration = WebSocketClient.Configuration()
        configuration.autoPong = autoPong
        configuration.receiveBufferBytes = receiveBufferBytes
        client.socket = try await WebSocketClient.connect(
            to: url, headers: headers, on: group, configuration: configuration,
            // Weak: the socket keeps its callbacks, so a strong capture made every TestClient (and all it
            // received) live as long as the process (LeakSanitizer).
            callbacks: .init(onText: { [weak client] buffer in client?.received(String(buffer: buffer)) }))
        _ = try await client.next("welcome")
        return client
    }

    var session: String { all("welcome").first.flatMap { JSON.string($0, at: "session") } ?? "" }

    func send(_ object: [String: Any]) {
        socket.send(text: try! JSON.string(from: object))
    }

    func sendRaw(_ text: String) { socket.send(text: text) }

    /// Every message of `type` received so far (not consumed).
    func all(_ type: String? = nil) -> [[String: Any]] {
        messages.filter { type == nil || JSON.string($0, at: "t") == type }
    }

    var rawMessages: [String] {
        lock.lock()
        defer { lock.unlock() }
        return rawStore
    }

    /// The next not-yet-consumed message of `type` matching `predicate` (messages before it that match
    /// the type are consumed too).
    @discardableResult
    func next(
        _ type: String, doc: String? = nil, timeout: Duration = .seconds(10),
        where predicate: @escaping ([String: Any]) -> Bool = { _ in true }
    ) async throws -> [String: Any] {
        var found: [String: Any]?
        try await waitUntil("\(name): a \(type) message\(doc.map { " for \($0)" } ?? ""); got \(summary())", timeout: timeout) {
            let messages = self.messages
            let start = lock.withLock { cursorValue }
            for index in start..<messages.count {
                let message = messages[index]
                guard JSON.string(message, at: "t") == type, doc == nil || JSON.string(message, at: "doc") == doc,
                    predicate(message)
                else { continue }
                found = message
                lock.withLock { cursorValue = index + 1 }
                return true
            }
            return false
        }
        return found!
    }

    func summary() -> String {
        let messages = rawMessages
        return "\(messages.count) messages, last: \(messages.suffix(3).joined(separator: " | ").prefix(600))"
    }

    /// Joins and waits for `joined` (and the catch-up's final chunk).
    @discardableResult
    func join(_ doc: String, state: [String: Any]? = nil, since: UInt64? = nil) async throws -> [String: Any] {
        var message: [String: Any] = ["t": "join", "doc": doc]
        if let state { message["state"] = state }
        if let since { message["since"] = since }
        send(message)
        let joined = try await next("joined", doc: doc)
        return joined
    }

    func presence(_ doc: String, _ state: [String: Any]) {
        send(["t": "presence", "doc": doc, "state": state])
    }

    /// Session ids this client currently believes are present in `doc`, from joined + deltas.
    func members(of doc: String) -> Set<String> {
        var members: Set<String> = []
        for message in messages where JSON.string(message, at: "doc") == doc {
            switch JSON.string(message, at: "t") {
            case "joined":
                members = Set((JSON.array(message, at: "presence") ?? []).compactMap { JSON.string($0, at: "sid") })
            case "presence":
                for entry in JSON.array(message, at: "joined") ?? [] { if let s = JSON.string(entry, at: "sid") { members.insert(s) } }
                for entry in JSON.array(message, at: "updated") ?? [] { if let s = JSON.string(entry, at: "sid") { members.insert(s) } }
                for sid in JSON.array(message, at: "left") ?? [] { if let s = sid as? String { members.remove(s) } }
            default:
                break
            }
        }
        return members
    }

    /// The latest state this client saw for `sid` in `doc`.
    func state(of sid: String, in doc: String) -> [String: Any]? {
        var state: [String: Any]?
        for message in messages where JSON.string(message, at: "doc") == doc {
            let entries: [Any]
            switch JSON.string(message, at: "t") {
            case "joined": entries = JSON.array(message, at: "presence") ?? []
            case "presence": entries = (JSON.array(message, at: "joined") ?? []) + (JSON.array(message, at: "updated") ?? [])
            default: entries = []
            }
            for entry in entries where JSON.string(entry, at: "sid") == sid { state = JSON.object(entry, at: "state") }
        }
        return state
    }

    func close() async { await socket.close() }
    func abort() { socket.abort() }
    var closeCode: Int? { socket.closeCode }
    var isClosed: Bool { socket.isClosed }

    func waitClosed(timeout: Duration = .seconds(10)) async throws -> Int? {
        try await waitUntil("\(name) closed", timeout: timeout) { self.socket.isClosed }
        return socket.closeCode
    }
}

/// Waits for a connection attempt to be refused and returns the HTTP status and headers.
func handshakeRejection(_ url: String, headers: [(String, String)] = []) async throws -> (status: Int, headers: [(String, String)], body: String) {
    do {
        let client = try await WebSocketClient.connect(to: url, headers: headers, on: TestClient.group)
        await client.close()
        throw HTTP.HTTPError(message: "handshake to \(url) was accepted")
    } catch WebSocketClientError.handshakeRejected(let status, let headers, let body) {
        return (status, headers, body)
    }
}
