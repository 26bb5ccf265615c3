import NIOConcurrencyHelpers

/// A command accepted from a caller and waiting in ``ClientSharedState/outbox``.
struct ClientRequest: Sendable {
    let command: RedisCommand
    let enqueuedAt: UInt64
    let completion: @Sendable (Result<RedisValue, RedisError>) -> Void
}

/// A command written to the socket, waiting for its reply (owner thread only).
struct ClientInFlight {
    let enqueuedAt: UInt64
    let completion: @Sendable (Result<RedisValue, RedisError>) -> Void
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

/// The ``RedisClient`` side of a connection: plain request/reply matching, in order.
///
/// Runs on the owner thread only (see ``RedisConnectionHandler``); completion callbacks are invoked
/// there, outside the shared lock.
final class ClientConnectionHandler: RedisConnectionHandler {
    typealias Request = ClientInFlight

    private let shared: NIOLockedValueBox<ClientSharedState>
    private let onConnectionStateChange: (@Sendable (Bool) -> Void)?
    private let commandObserver: (@Sendable (Double) -> Void)?
    /// Replies delivered since the last time `pending` was updated; batching the update saves a lock
    /// round trip per reply.
    private var completedSinceSync = 0

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
        let (work, shutdownRequested) = shared.withLockedValue { state -> ([ClientRequest], Bool) in
            state.pending -= completed
            // On shutdown the queue stays put for connectionClosed to fail, after what is in flight.
            guard !state.shutdownRequested, !state.outbox.isEmpty else { return ([], state.shutdownRequested) }
            var work: [ClientRequest] = []
            swap(&work, &state.outbox)
            return (work, false)
        }
        for request in work {
            send(request.command, ClientInFlight(enqueuedAt: request.enqueuedAt, completion: request.completion))
        }
        return shutdownRequested
    }

    func connectionReady(_ send: (RedisCommand, ClientInFlight) -> Void) {
        shared.withLockedValue { $0.connected = true }
        onConnectionStateChange?(true)
    }

    func handlePush(_ reply: RedisValue, oldest: ClientInFlight?) -> Bool {
        false  // RESP2 without SUBSCRIBE has no pushes
    }

    func complete(_ request: ClientInFlight, with reply: RedisValue) -> Bool {
        completedSinceSync += 1
        if let commandObserver {
            commandObserver(Double(monotonicNanoseconds() &- request.enqueuedAt) / 1e9)
        }
        request.completion(.success(reply))
        return true
    }

    func connectionClosed(failing outstanding: [ClientInFlight], with error: RedisError) {
        let completed = completedSinceSync
        completedSinceSync = 0
        let (queued, wasConnected) = shared.withLockedValue { state -> ([ClientRequest], Bool) in
            var queued: [ClientRequest] = []
            swap(&queued, &state.outbox)
            let wasConnected = state.connected
            state.connected = false
            state.pending -= completed + outstanding.count + queued.count
            return (queued, wasConnected)
        }
        // Report the state first, so a caller that sees `.connectionLost` also sees `isConnected == false`.
        if wasConnected { onConnectionStateChange?(false) }
        for request in outstanding { request.completion(.failure(error)) }
        for request in queued { request.completion(.failure(error)) }
    }
}
