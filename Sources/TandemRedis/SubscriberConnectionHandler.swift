import NIOConcurrencyHelpers

/// Classic pub/sub (`SUBSCRIBE`/`PUBLISH`, every message reaches every node of a cluster) or sharded
/// pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis ≥ 7: a channel lives in the hash slot of its name, and its
/// messages stay within the shard that owns the slot).
enum PubSubKind: Sendable {
    case classic
    case sharded

    var subscribe: String { self == .classic ? "SUBSCRIBE" : "SSUBSCRIBE" }
    var unsubscribe: String { self == .classic ? "UNSUBSCRIBE" : "SUNSUBSCRIBE" }
    /// The first element of a confirmation or push, as Redis sends it.
    var subscribeReply: String { self == .classic ? "subscribe" : "ssubscribe" }
    var unsubscribeReply: String { self == .classic ? "unsubscribe" : "sunsubscribe" }
    var messageReply: String { self == .classic ? "message" : "smessage" }
}

/// Hooks of a sharded subscription connection that only the cluster subscriber uses. All run on the
/// connection's owner thread and must be cheap.
struct ShardSubscriptionHooks: Sendable {
    /// The server dropped a channel on its own (`sunsubscribe` push): its slot moved to another shard,
    /// or this node stopped being a primary. The channel is no longer desired on this connection.
    var onServerUnsubscribed: @Sendable (_ channel: String) -> Void
    /// `SSUBSCRIBE` was refused (`MOVED`, `CLUSTERDOWN`…). The channel is no longer desired on this
    /// connection.
    var onSubscribeRefused: @Sendable (_ channel: String, _ message: String) -> Void
}

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
    private let kind: PubSubKind
    private let onMessage: @Sendable (String, [UInt8]) -> Void
    private let onMessages: (@Sendable ([RedisPubSubMessage]) -> Void)?
    /// With `onMessages`: the messages of the current read, delivered when it ends (`readBurstEnded`) or
    /// before any other hook, so hooks keep their order with the messages.
    private var pending: [RedisPubSubMessage] = []
    private let onReady: (@Sendable () -> Void)?
    private let onSubscribed: (@Sendable (String) -> Void)?
    private let onConnectionStateChange: (@Sendable (Bool) -> Void)?
    private let shardHooks: ShardSubscriptionHooks?
    /// `kind.messageReply`'s bytes, for the pushes taken straight from the read buffer.
    private let messagePushBytes: [UInt8]
    /// Initial re-subscriptions not yet answered on this connection; `onReady` fires when it hits 0.
    private var awaitingReady = 0

    init(
        shared: NIOLockedValueBox<SubscriberSharedState>,
        kind: PubSubKind,
        onMessage: @escaping @Sendable (String, [UInt8]) -> Void,
        onMessages: (@Sendable ([RedisPubSubMessage]) -> Void)? = nil,
        onReady: (@Sendable () -> Void)?,
        onSubscribed: (@Sendable (String) -> Void)?,
        onConnectionStateChange: (@Sendable (Bool) -> Void)?,
        shardHooks: ShardSubscriptionHooks?
    ) {
        self.shared = shared
        self.kind = kind
        self.messagePushBytes = Array(kind.messageReply.utf8)
        self.onMessage = onMessage
        self.onMessages = onMessages
        self.onReady = onReady
        self.onSubscribed = onSubscribed
        self.onConnectionStateChange = onConnectionStateChange
        self.shardHooks = shardHooks
    }

    func takeWork(_ send: (RedisCommand, SubscriptionRequest) -> Void) -> Bool {
        let (operations, shutdownRequested) = shared.withLockedValue { state -> ([SubscriptionRequest], Bool) in
            guard !state.shutdownRequested, !state.operations.isEmpty else { return ([], state.shutdownRequested) }
            var operations: [SubscriptionRequest] = []
            swap(&operations, &state.operations)
            return (operations, false)
        }
        for operation in operations {
            send(command(for: operation), operation)
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
        // One command per channel: each gets exactly one confirmation, which keeps reply matching
        // one-to-one (and SSUBSCRIBE of several channels must stay within one slot anyway).
        for channel in channels.sorted() {
            let request = SubscriptionRequest.subscribe(channel, initial: true)
            send(command(for: request), request)
        }
        if channels.isEmpty { onReady?() }
    }

    func handlePush(_ reply: RedisValue, oldest: SubscriptionRequest?) -> Bool {
        guard case .array(let items) = reply, items.count == 3, let type = items[0].string else { return false }
        if type == kind.messageReply {
            // (Most arrive through `handleMessage` instead: only one hiredis read first is here.)
            guard let channel = items[1].string, let payload = items[2].bytes else { return false }
            handleMessage(RedisPubSubMessage(channel: channel, payload: payload))
            return true
        }
        deliverPending()
        // Sharded only: the server unsubscribes us when the channel's slot leaves this node (resharding,
        // failover). It looks exactly like the confirmation of our own SUNSUBSCRIBE, which is only
        // expected when that is the oldest thing outstanding.
        guard kind == .sharded, type == kind.unsubscribeReply, let channel = items[1].string else { return false }
        if case .unsubscribe(let pending)? = oldest, pending == channel { return false }
        let wasDesired = shared.withLockedValue { state -> Bool in
            state.confirmed.remove(channel)
            return state.desired.remove(channel) != nil
        }
        if wasDesired { shardHooks?.onServerUnsubscribed(channel) }
        return true
    }

    var messagePushType: [UInt8]? { messagePushBytes }

    func handleMessage(_ message: RedisPubSubMessage) {
        if onMessages != nil {
            pending.append(message)
        } else if shared.withLockedValue({ $0.desired.contains(message.channel) }) {
            onMessage(message.channel, message.payload)
        }
    }

    func complete(_ request: SubscriptionRequest, with reply: RedisValue, send _: (RedisCommand, SubscriptionRequest) -> Void) -> Bool {
        deliverPending()
        let items = reply.array ?? []
        switch request {
        case .subscribe(let channel, let initial):
            if case .error(let message) = reply, kind == .sharded {
                // MOVED (the slot is elsewhere) or CLUSTERDOWN: this connection is the wrong place for
                // now; the cluster subscriber decides where the channel goes next.
                let wasDesired = shared.withLockedValue { $0.desired.remove(channel) != nil }
                if wasDesired { shardHooks?.onSubscribeRefused(channel, message) }
            } else {
                guard items.count == 3, items[0].string == kind.subscribeReply, items[1].string == channel else {
                    return false
                }
                let stillDesired = shared.withLockedValue { state -> Bool in
                    state.confirmed.insert(channel)
                    return state.desired.contains(channel)
                }
                // From here on every message of the channel arrives; what was published before may not.
                if stillDesired { onSubscribed?(channel) }
            }
            if initial {
                awaitingReady -= 1
                // After every desired channel is live, so what the owner reconciles cannot be missed again.
                if awaitingReady == 0 { onReady?() }
            }
        case .unsubscribe(let channel):
            guard items.count == 3, items[0].string == kind.unsubscribeReply, items[1].string == channel else {
                return false
            }
            shared.withLockedValue { _ = $0.confirmed.remove(channel) }
        }
        return true
    }

    func connectionClosed(failing outstanding: [SubscriptionRequest], with error: RedisError) {
        // Nothing to fail: the desired set survives and is re-subscribed on the next connection. What
        // was read before the connection went is delivered first.
        deliverPending()
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

    func readBurstEnded() {
        deliverPending()
    }

    /// Hands the gathered messages to `onMessages`, without those of channels no longer desired (checked
    /// now, under one lock for the batch: no message of a channel goes out once `unsubscribe` returned).
    private func deliverPending() {
        guard !pending.isEmpty, let onMessages else { return }
        var batch: [RedisPubSubMessage] = []
        swap(&batch, &pending)
        pending.reserveCapacity(batch.count)
        shared.withLockedValue { state in
            guard !batch.allSatisfy({ state.desired.contains($0.channel) }) else { return }
            batch.removeAll { !state.desired.contains($0.channel) }
        }
        if !batch.isEmpty { onMessages(batch) }
    }

    private func command(for request: SubscriptionRequest) -> RedisCommand {
        switch request {
        case .subscribe(let channel, _): return RedisCommand(kind.subscribe, channel)
        case .unsubscribe(let channel): return RedisCommand(kind.unsubscribe, channel)
        }
    }
}
