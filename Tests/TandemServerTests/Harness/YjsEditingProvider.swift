import Foundation
import TandemTestSupport
import TandemYjs

/// A Yjs client as y-websocket's provider runs one, for tests on `/yjs/{room}`: client `clientID` appends
/// one character at a time to the root text "t" through one node and keeps every update it made (as a
/// Yjs document does). Whenever its connection ends — a node closes it with 1013 when Redis refuses an
/// append, or cannot open the room while its shard fails over — it connects again and uploads what the
/// server's step 1 says the room lacks, as the provider's step 2 does. An update is *acknowledged* when
/// the server sends it back (the node relays it from the room's channel after the append script stored
/// it) or a later step 1 of the server covers it.
final class YjsEditingProvider: @unchecked Sendable {
    // @unchecked: every `var` is guarded by `lock`; `task` is set once by `start`.
    let name: String
    let url: String
    let clientID: UInt64
    private let lock = NSLock()
    private var updates: [[UInt8]] = []
    private var clockOf: [[UInt8]: Int] = [:]
    private var echoed: Set<Int> = []
    private var connectionCount = 0
    private var stopped = false
    private var task: Task<Void, Never>?

    init(name: String, url: String, clientID: UInt64) {
        self.name = name
        self.url = url
        self.clientID = clientID
    }

    /// Updates made so far (update `k` writes clock `k`): the room must end with clock `made` for `clientID`.
    var made: Int { lock.withLock { updates.count } }
    /// Clocks of the updates the server sent back.
    var acknowledged: Set<Int> { lock.withLock { echoed } }
    /// Updates sent again on a new connection because the room lacked them (refused by Redis, or lost with
    /// a connection before the node read them).
    var reuploaded: Int { lock.withLock { uploadedAgain } }
    private var uploadedAgain = 0
    /// Connections opened, the first included.
    var connections: Int { lock.withLock { connectionCount } }
    private var isStopped: Bool { lock.withLock { stopped } }

    /// Starts editing (again, after `stop`).
    func start() {
        lock.withLock {
            stopped = false
            giveUpAt = nil
        }
        task = Task { await run() }
    }

    /// Stops making updates and keeps the connection (the room stays open on its node).
    func pause() { lock.withLock { paused = true } }

    /// Makes updates again after `pause`.
    func resume() { lock.withLock { paused = false } }

    private var paused = false
    var allAcknowledged: Bool { lock.withLock { echoed.count == updates.count } }

    /// Stops editing, then waits until every update made is acknowledged (reconnecting and uploading
    /// again if the connection ends meanwhile; at most `timeout` — then `acknowledged` says what is
    /// missing) and closes the connection.
    func stop(timeout: Duration = .seconds(30)) async {
        lock.withLock {
            stopped = true
            giveUpAt = ContinuousClock.now + TestTimeouts.scaled(timeout)
        }
        await task?.value
    }

    /// Stops at once, whatever is unacknowledged (the test's cleanup: a failed test must not leave it
    /// reconnecting to nodes that are gone).
    func abandon() async {
        lock.withLock {
            stopped = true
            giveUpAt = ContinuousClock.now
        }
        await task?.value
    }

    private var giveUpAt: ContinuousClock.Instant?
    private var givenUp: Bool { lock.withLock { giveUpAt.map { ContinuousClock.now >= $0 } ?? false } }

    private func run() async {
        while !(isStopped && (allAcknowledged || givenUp)) {
            guard let client = try? await YjsTestClient.connect(url, name: name) else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            lock.withLock { connectionCount += 1 }
            defer { client.socket.abort() }
            // The server's step 1 comes first; a node that cannot read the room closes the connection.
            guard let vector = await serverStep1(client) else {
                // No step 1 within 10 s (or closed): a new connection (the failed one is aborted).
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            // What the room has is stored (a node's document holds only what it relayed from the room's
            // channel, after the append script): acknowledged, even if its echo was lost with a connection.
            let missing = lock.withLock { () -> ArraySlice<[UInt8]> in
                let stored = min(vector[clientID], updates.count)
                echoed.formUnion(0..<stored)
                return updates[stored...]
            }
            for update in missing { client.send(.update(update)) }
            lock.withLock { uploadedAgain += missing.count }
            while !isStopped && !client.socket.isClosed {
                let update = lock.withLock { () -> [UInt8]? in
                    guard !paused else { return nil }
                    let update = YjsUpdates.text(client: clientID, clock: updates.count, "x")
                    clockOf[update] = updates.count
                    updates.append(update)
                    return update
                }
                if let update { client.send(.update(update)) }
                noteEchoes(client)
                try? await Task.sleep(for: .milliseconds(20))
            }
            if !client.socket.isClosed {
                // Stopped: stay connected until every update is back (or the connection ends).
                try? await waitUntil("\(name)'s updates acknowledged", timeout: .seconds(10)) {
                    self.noteEchoes(client)
                    return client.socket.isClosed || self.allAcknowledged || self.givenUp
                }
            }
            noteEchoes(client)
        }
    }

    private func serverStep1(_ client: YjsTestClient) async -> YStateVector? {
        for _ in 0..<1_000 {
            for case .syncStep1(let bytes) in client.messages { return try? YStateVector(decoding: bytes) }
            if client.socket.isClosed || givenUp { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    private func noteEchoes(_ client: YjsTestClient) {
        let updates = client.updates
        lock.withLock {
            for update in updates { if let clock = clockOf[update] { echoed.insert(clock) } }
        }
    }
}

extension [YjsEditingProvider] {
    /// Stops them all at once (none keeps editing while another waits for its acknowledgements).
    func stop() async {
        for editor in self { editor.pause() }
        await withTaskGroup(of: Void.self) { group in
            for editor in self { group.addTask { await editor.stop() } }
        }
    }
}
