import NIOConcurrencyHelpers

/// What callers and the owner thread of a ``RedisSubscriber`` share. Every field is protected by the
/// lock of the `NIOLockedValueBox` that holds it.
struct SubscriberSharedState: Sendable {
    /// Handshake done and the connection usable.
    var connected = false
    /// `shutdown()` was called.
    var shutdownRequested = false
    /// Channels the owner wants; re-subscribed in full after every (re)connect. Messages for channels
    /// not in here are dropped, so delivery stops as soon as `unsubscribe` returns.
    var desired: Set<String> = []
    /// Channels the server has confirmed on the current connection.
    var confirmed: Set<String> = []
    /// Changes to `desired` made while connected, for the owner thread to send (in order).
    var operations: [SubscriptionRequest] = []
}

/// A `SUBSCRIBE` or `UNSUBSCRIBE` of one channel, waiting for its confirmation.
enum SubscriptionRequest: Sendable {
    /// `initial` marks the re-subscriptions made right after connecting, which gate `onReady`.
    case subscribe(String, initial: Bool)
    case unsubscribe(String)
}

/// The ``RedisSubscriber`` side of a connection: tracks subscriptions and delivers messages.
///
/// Runs on the owner thread only (see ``RedisConnectionHandler``); all hooks are invoked there, in
/// arrival order, outside the shared lock.
final class SubscriberConnectionHandler: RedisConnectionHandler {
    typealias Request = SubscriptionRequest

    private let shared: NIOLockedValueBox<SubscriberSharedState>
    private let onMessage: @Sendable (String, [UInt8]) -> Void
    private let onReady: (@Sendable () -> Void)?
    private let onConnectionStateChange: (@Sendable (Bool) -> Void)?
    /// Initial re-subscriptions not yet confirmed on this connection; `onReady` fires when it hits 0.
    private var awaitingReady = 0

    init(
        shared: NIOLockedValueBox<SubscriberSharedState>,
        onMessage: @escaping @Sendable (String, [UInt8]) -> Void,
        onReady: (@Sendable () -> Void)?,
        onConnectionStateChange: (@Sendable (Bool) -> Void)?
    ) {
        self.shared = shared
        self.onMessage = onMessage
        self.onReady = onReady
        self.onConnectionStateChange = onConnectionStateChange
    }

    func takeWork(_ send: (RedisCommand, SubscriptionRequest) -> Void) -> Bool {
        let (operations, shutdownRequested) = shared.withLockedValue { state -> ([SubscriptionRequest], Bool) in
            guard !state.shutdownRequested, !state.operations.isEmpty else { return ([], state.shutdownRequested) }
            var operations: [SubscriptionRequest] = []
            swap(&operations, &state.operations)
            return (operations, false)
        }
        for operation in operations {
            send(Self.command(for: operation), operation)
        }
        return shutdownRequested
    }

    func connectionReady(_ send: (RedisCommand, SubscriptionRequest) -> Void) {
        let channels = shared.withLockedValue { state -> Set<String> in
            state.connected = true
            state.confirmed = []
            // The full re-subscription below covers every change queued before this point.
            state.operations = []
            return state.desired
        }
        onConnectionStateChange?(true)
        awaitingReady = channels.count
        // One SUBSCRIBE per channel: each gets exactly one confirmation, which keeps reply matching
        // one-to-one.
        for channel in channels.sorted() {
            let request = SubscriptionRequest.subscribe(channel, initial: true)
            send(Self.command(for: request), request)
        }
        if channels.isEmpty { onReady?() }
    }

    func handlePush(_ reply: RedisValue) -> Bool {
        guard case .array(let items) = reply, items.count == 3, items[0].string == "message" else {
            return false
        }
        guard let channel = items[1].string, let payload = items[2].bytes else { return false }
        if shared.withLockedValue({ $0.desired.contains(channel) }) {
            onMessage(channel, payload)
        }
        return true
    }

    func complete(_ request: SubscriptionRequest, with reply: RedisValue) -> Bool {
        let items = reply.array ?? []
        switch request {
        case .subscribe(let channel, let initial):
            guard items.count == 3, items[0].string == "subscribe", items[1].string == channel else { return false }
            shared.withLockedValue { _ = $0.confirmed.insert(channel) }
            if initial {
                awaitingReady -= 1
                // After every desired channel is live, so what the owner reconciles cannot be missed again.
                if awaitingReady == 0 { onReady?() }
            }
        case .unsubscribe(let channel):
            guard items.count == 3, items[0].string == "unsubscribe", items[1].string == channel else { return false }
            shared.withLockedValue { _ = $0.confirmed.remove(channel) }
        }
        return true
    }

    func connectionClosed(failing outstanding: [SubscriptionRequest], with error: RedisError) {
        // Nothing to fail: the desired set survives and is re-subscribed on the next connection.
        awaitingReady = 0
        let wasConnected = shared.withLockedValue { state -> Bool in
            let wasConnected = state.connected
            state.connected = false
            state.confirmed = []
            state.operations = []
            return wasConnected
        }
        if wasConnected { onConnectionStateChange?(false) }
    }

    private static func command(for request: SubscriptionRequest) -> RedisCommand {
        switch request {
        case .subscribe(let channel, _): return RedisCommand("SUBSCRIBE", channel)
        case .unsubscribe(let channel): return RedisCommand("UNSUBSCRIBE", channel)
        }
    }
}
