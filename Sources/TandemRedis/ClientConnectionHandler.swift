import NIOConcurrencyHelpers

/// A command accepted from a caller and waiting in ``ClientSharedState/outbox``.
struct ClientRequest: Sendable {
    let command: RedisCommand
    let enqueuedAt: UInt64
    let completion: @Sendable (Result<RedisValue, RedisError>) -> Void
}

/// A command written to the socket, waiting for its reply (owner thread only).
struct ClientInFlight {
    enum Kind {
        /// A caller's command.
        case plain
        /// A caller's script call (`EVALSHA`), kept for its `EVAL` retry.
        case script(RedisCommand)
        /// The `EVAL` retry of a script call answered `NOSCRIPT`.
        case scriptRetry
        /// The client's own `SCRIPT LOAD`; no caller waits for it.
        case scriptLoad
    }

    let kind: Kind
    let enqueuedAt: UInt64
    let completion: (@Sendable (Result<RedisValue, RedisError>) -> Void)?

    static func scriptLoad() -> ClientInFlight { ClientInFlight(kind: .scriptLoad, enqueuedAt: 0, completion: nil) }
}

/// What callers and the owner thread of a ``RedisClient`` share. Every field is protected by the
/// lock of the `NIOLockedValueBox` that holds it; keeping the flags and the queue under one lock makes
/// "check connected, then enqueue" atomic against "mark disconnected, then fail the queue".
struct ClientSharedState: Sendable {
    /// Handshake done and the connection usable; new commands are refused while `false`.
    var connected = false
    /// `shutdown()` was called; new commands fail with `.shutdown`.
    var shutdownRequested = false
    /// Accepted commands the owner thread has not taken yet.
    var outbox: [ClientRequest] = []
    /// Commands queued or in flight (the owner thread subtracts completions once per loop iteration).
    var pending = 0
}

/// The ``RedisClient`` side of a connection: plain request/reply matching, in order, plus the scripts.
///
/// Runs on the owner thread only (see ``RedisConnectionHandler``); completion callbacks are invoked
/// there, outside the shared lock.
///
/// Scripts: every script the client has run is loaded (`SCRIPT LOAD`) as soon as a connection is ready,
/// ahead of anything else on it, and a script new to the connection just before its first call; so
/// `EVALSHA` finds it after a restart, a failover or a reconnect. A call still answered `NOSCRIPT` (the
/// cache was flushed under a live connection: `SCRIPT FLUSH`) is sent again as `EVAL` with the source,
/// which caches it again, and the calls made meanwhile keep their order (see `ScriptRecovery`). All of it
/// is owner-thread state: the common path of a script call takes no lock of its own.
final class ClientConnectionHandler: RedisConnectionHandler {
    typealias Request = ClientInFlight

    private let shared: NIOLockedValueBox<ClientSharedState>
    private let onConnectionStateChange: (@Sendable (Bool) -> Void)?
    private let commandObserver: (@Sendable (Double) -> Void)?
    /// Replies delivered since the last time `pending` was updated; batching the update saves a lock
    /// round trip per reply.
    private var completedSinceSync = 0
    /// Every script this client has run, loaded again on each new connection.
    private var knownScripts: [RedisScript] = []
    /// By ``RedisScript/id``: the script is in `knownScripts`.
    private var isKnown: [Bool] = []
    /// By ``RedisScript/id``: this connection loaded the script (or ran it with `EVAL`).
    private var isLoaded: [Bool] = []
    private var recovery = ScriptRecovery()
    /// The outbox's previous storage, emptied, handed back to callers on the next take: the queue keeps its
    /// capacity instead of growing afresh each burst.
    private var spareOutbox: [ClientRequest] = []

    init(
        shared: NIOLockedValueBox<ClientSharedState>,
        onConnectionStateChange: (@Sendable (Bool) -> Void)?,
        commandObserver: (@Sendable (Double) -> Void)?
    ) {
        self.shared = shared
        self.onConnectionStateChange = onConnectionStateChange
        self.commandObserver = commandObserver
    }

    func takeWork(_ send: (RedisCommand, ClientInFlight) -> Void) -> Bool {
        let completed = completedSinceSync
        completedSinceSync = 0
        var work: [ClientRequest] = []
        swap(&work, &spareOutbox)
        let shutdownRequested = shared.withLockedValue { state -> Bool in
            state.pending -= completed
            // On shutdown the queue stays put for connectionClosed to fail, after what is in flight.
            guard !state.shutdownRequested, !state.outbox.isEmpty else { return state.shutdownRequested }
            swap(&work, &state.outbox)
            return false
        }
        for request in work {
            if request.command.script != nil && recovery.recovering {
                recovery.held.append(request)
            } else {
                write(request, send)
            }
        }
        if work.capacity <= 4096 {
            work.removeAll(keepingCapacity: true)
            spareOutbox = work
        }
        return shutdownRequested
    }

    /// Writes a caller's command; a script call goes behind its script's `SCRIPT LOAD` if this
    /// connection has not loaded it yet.
    private func write(_ request: ClientRequest, _ send: (RedisCommand, ClientInFlight) -> Void) {
        guard let script = request.command.script else {
            send(request.command, ClientInFlight(kind: .plain, enqueuedAt: request.enqueuedAt, completion: request.completion))
            return
        }
        recovery.inFlight += 1
        if !loaded(script) {
            if !known(script) {
                knownScripts.append(script)
                set(&isKnown, script.id)
            }
            set(&isLoaded, script.id)
            send(RedisCommand("SCRIPT", "LOAD", script.source), .scriptLoad())
        }
        send(
            request.command,
            ClientInFlight(kind: .script(request.command), enqueuedAt: request.enqueuedAt, completion: request.completion))
    }

    private func known(_ script: RedisScript) -> Bool { script.id < isKnown.count && isKnown[script.id] }
    private func loaded(_ script: RedisScript) -> Bool { script.id < isLoaded.count && isLoaded[script.id] }

    private func set(_ flags: inout [Bool], _ id: Int) {
        if id >= flags.count { flags.append(contentsOf: repeatElement(false, count: id + 1 - flags.count)) }
        flags[id] = true
    }

    func connectionReady(_ send: (RedisCommand, ClientInFlight) -> Void) {
        // Before the first caller's command can be taken: the scripts go first on the connection.
        isLoaded = []
        for script in knownScripts {
            set(&isLoaded, script.id)
            send(RedisCommand("SCRIPT", "LOAD", script.source), .scriptLoad())
        }
        shared.withLockedValue { $0.connected = true }
        onConnectionStateChange?(true)
    }

    /// RESP2 without SUBSCRIBE has no pushes: `handlePush` is never asked.
    static var receivesPushes: Bool { false }

    func handlePush(_ reply: RedisValue, oldest: ClientInFlight?) -> Bool {
        false
    }

    func complete(_ request: ClientInFlight, with reply: RedisValue, send: (RedisCommand, ClientInFlight) -> Void) -> Bool {
        // A SCRIPT LOAD's answer needs nothing: a script that does not compile fails its own call.
        guard let completion = request.completion else { return true }
        switch request.kind {
        case .plain, .scriptLoad:
            finish(request, completion, reply)
        case .script(let command):
            if case .error(let message) = reply, message.hasPrefix("NOSCRIPT"), let script = command.script {
                // The cache was flushed under this connection: every script is gone, not just this one.
                // The retry caches this one; the others are loaded again before their next call.
                recovery.recovering = true
                isLoaded = []
                set(&isLoaded, script.id)
                send(command.evalForm, ClientInFlight(kind: .scriptRetry, enqueuedAt: request.enqueuedAt, completion: completion))
                return true
            }
            finish(request, completion, reply)
            scriptCompleted(send)
        case .scriptRetry:
            finish(request, completion, reply)
            scriptCompleted(send)
        }
        return true
    }

    private func finish(
        _ request: ClientInFlight, _ completion: @Sendable (Result<RedisValue, RedisError>) -> Void, _ reply: RedisValue
    ) {
        completedSinceSync += 1
        if let commandObserver {
            commandObserver(Double(monotonicNanoseconds() &- request.enqueuedAt) / 1e9)
        }
        completion(.success(reply))
    }

    /// A script call completed: once none sent before a `NOSCRIPT` is out, the held calls go, in order.
    private func scriptCompleted(_ send: (RedisCommand, ClientInFlight) -> Void) {
        recovery.inFlight -= 1
        guard recovery.recovering, recovery.inFlight == 0 else { return }
        recovery.recovering = false
        let held = recovery.held
        recovery.held = []
        // All at once, in order; one that meets `NOSCRIPT` again starts the next round the same way.
        for request in held { write(request, send) }
    }

    func connectionClosed(failing outstanding: [ClientInFlight], with error: RedisError) {
        let completed = completedSinceSync
        completedSinceSync = 0
        let held = recovery.held
        recovery = ScriptRecovery()
        let callers = outstanding.filter { $0.completion != nil }
        let (queued, wasConnected) = shared.withLockedValue { state -> ([ClientRequest], Bool) in
            var queued: [ClientRequest] = []
            swap(&queued, &state.outbox)
            let wasConnected = state.connected
            state.connected = false
            state.pending -= completed + callers.count + held.count + queued.count
            return (queued, wasConnected)
        }
        // Report the state first, so a caller that sees `.connectionLost` also sees `isConnected == false`.
        if wasConnected { onConnectionStateChange?(false) }
        for request in callers { request.completion?(.failure(error)) }
        for request in held { request.completion(.failure(error)) }
        for request in queued { request.completion(.failure(error)) }
    }
}

/// Script calls of one connection, kept in the order they were made across `NOSCRIPT` retries.
///
/// Why: a call answered `NOSCRIPT` is sent again as `EVAL` when its reply arrives, and by then later
/// calls may be in Redis already. Those that were sent before the reply also find the script missing
/// (nothing loaded it on this connection in between) and are retried in the same order, behind it. But a
/// call made after the first retry went out would find the script loaded by it and run at once — ahead
/// of an earlier call still waiting for its own retry (with group commits pipelined per doc, a batch
/// would run before the one it was decided behind, and lose its race for nothing). So from the first
/// `NOSCRIPT` until every script call sent before it has completed, new script calls are held here, then
/// sent in the order they were made.
///
/// (Calls already in Redis when a script is flushed cannot be reordered back; another connection loading
/// the script between two of them is the one case this cannot cover. Since scripts are loaded on connect,
/// only a `SCRIPT FLUSH` under a live connection gets here at all.)
struct ScriptRecovery {
    /// Script calls sent and not completed (retries included).
    var inFlight = 0
    /// A `NOSCRIPT` was answered and calls sent before it are still out: new calls wait in `held`.
    var recovering = false
    var held: [ClientRequest] = []
}
