import NIOCore
import NIOPosix
import TandemClient
import TandemTestSupport

/// Drains a client's ``WebSocketClient/events`` in the background so tests can poll what
/// arrived with `waitUntil` instead of blocking on the stream.
final class EventRecorder: Sendable {
    private let storage: Locked<[WebSocketEvent]>
    private let task: Task<Void, Never>

    init(_ client: WebSocketClient) {
        let storage = Locked<[WebSocketEvent]>([])
        self.storage = storage
        self.task = Task {
            for await event in client.events {
                storage.withLock { $0.append(event) }
            }
        }
    }

    deinit {
        self.task.cancel()
    }

    var events: [WebSocketEvent] { self.storage.value }

    var texts: [String] {
        self.events.compactMap { event in
            if case .text(let text) = event { return text }
            return nil
        }
    }

    /// The final `.closed` event, once it arrived.
    var closed: (code: Int?, reason: String)? {
        for event in self.events {
            if case .closed(let code, let reason) = event { return (code, reason) }
        }
        return nil
    }

    func waitForTexts(_ count: Int) async throws -> [String] {
        try await waitUntil("\(count) text messages, got \(self.texts)") { self.texts.count >= count }
        return self.texts
    }

    func waitForClosed() async throws -> (code: Int?, reason: String) {
        try await waitUntil("closed event, events so far: \(self.events)") { self.closed != nil }
        return self.closed!
    }
}

/// Runs `body` with a fresh test server and stops the server afterwards, also on failure.
func withServer<Result>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: (TestWebSocketServer) async throws -> Result
) async throws -> Result {
    let server = try await TestWebSocketServer.start()
    do {
        let result = try await body(server)
        try await server.stop()
        return result
    } catch {
        try? await server.stop()
        throw error
    }
}

let group = MultiThreadedEventLoopGroup.singleton
