import Logging
import NIOConcurrencyHelpers

/// A pub/sub subscriber with its own Redis connection and owner thread.
///
/// It keeps the set of channels the owner wants. ``subscribe(_:)`` and ``unsubscribe(_:)`` are
/// idempotent and never block; after every (re)connect the subscriber subscribes to the whole set
/// again and then calls `onReady`, so the owner can reconcile whatever it missed during the gap.
/// Messages go to `onMessage` on the owner thread, in arrival order. Reconnects, backoff, health
/// checks (`PING` in subscribed mode) and timeouts work as in ``RedisClient``.
public final class RedisSubscriber: RedisChannelSubscriber {
    /// Where to connect, timeouts and hooks. Hooks are fixed here so the subscriber stays `Sendable`.
    public struct Configuration: Sendable {
        /// The server and credentials.
        public var endpoint: RedisEndpoint
        /// Timeouts, health checks and reconnect pacing.
        public var connection = RedisConnectionSettings()
        /// Receives each message of a subscribed channel, on the owner thread, in arrival order.
        /// Must be cheap and must not block: hand the payload off (e.g. to an event loop) and return.
        public var onMessage: @Sendable (_ channel: String, _ payload: [UInt8]) -> Void
        /// When set, receives instead of `onMessage` the messages of one read from the socket together,
        /// in arrival order, on the owner thread: an owner that hands messages off to other threads makes
        /// one hand-off per read and destination rather than one per message (issue 11: a busy node's
        /// pub/sub connection reads several docs' deltas at once). Every other hook of the connection
        /// comes after the batch of the messages that preceded it. Must be cheap and must not block.
        public var onMessages: (@Sendable (_ messages: [RedisPubSubMessage]) -> Void)?
        /// Called on the owner thread once every desired channel is subscribed on a fresh connection
        /// (right after connecting when there are none); messages sent before it may have been missed.
        public var onReady: (@Sendable () -> Void)?
        /// Called on each transition between connected (`true`) and disconnected (`false`), on the owner
        /// thread; must be cheap.
        public var onConnectionStateChange: (@Sendable (Bool) -> Void)?
        /// Called on the owner thread each time the server confirms a subscription of a desired channel:
        /// the first one and every re-subscription after a reconnect (and, with
        /// ``RedisClusterSubscriber``, after a slot migration or failover). From then on every message
        /// of the channel is delivered; messages published before may have been missed, so this is the
        /// moment to catch up from a log. Comes before any message it makes possible. Must be cheap.
        public var onSubscribed: (@Sendable (_ channel: String) -> Void)?

        /// A configuration with default settings.
        public init(endpoint: RedisEndpoint, onMessage: @escaping @Sendable (_ channel: String, _ payload: [UInt8]) -> Void) {
            self.endpoint = endpoint
            self.onMessage = onMessage
        }
    }

    /// The configuration the subscriber was made with.
    public let configuration: Configuration
    /// `SUBSCRIBE` or, for one shard of a cluster, `SSUBSCRIBE`.
    private let kind: PubSubKind
    private let shardHooks: ShardSubscriptionHooks?
    private let logger: Logger
    private let shared = NIOLockedValueBox(SubscriberSharedState())
    private let wake = WakePipe()
    private let lifecycle = OwnerThreadLifecycle()

    /// Creates a subscriber; it does nothing until ``start()``.
    /// - Parameters:
    ///   - configuration: Endpoint, timeouts and hooks.
    ///   - logger: Receives connect, disconnect and reconnect events (tagged `redis.endpoint`).
    public convenience init(configuration: Configuration, logger: Logger = Logger(label: "tandem.redis")) {
        self.init(configuration: configuration, kind: .classic, shardHooks: nil, logger: logger)
    }

    /// A subscriber of one kind; ``RedisClusterSubscriber`` makes sharded ones, one per primary.
    init(configuration: Configuration, kind: PubSubKind, shardHooks: ShardSubscriptionHooks?, logger: Logger) {
        self.configuration = configuration
        self.kind = kind
        self.shardHooks = shardHooks
        var logger = logger
        logger[metadataKey: "redis.role"] = kind == .classic ? "subscriber" : "shard-subscriber"
        self.logger = logger
    }

    /// Stops the owner thread if ``shutdown()`` was never called (without waiting for it).
    deinit {
        requestShutdown()
    }

    /// Starts the owner thread, which connects in the background and reconnects forever.
    /// Calling it again, or after ``shutdown()``, does nothing.
    public func start() { start(onMessage: nil, onReady: nil) }

    /// ``start()`` with handlers given now rather than in the configuration.
    /// - Parameters:
    ///   - onMessage: Replaces the configuration's handler, for an owner that can only exist once the
    ///     subscriber does (a node's doc shards subscribe through it, and receive its messages here).
    ///   - onReady: Replaces the configuration's `onReady` likewise.
    public func start(
        onMessage: (@Sendable (_ channel: String, _ payload: [UInt8]) -> Void)?,
        onReady: (@Sendable () -> Void)?
    ) {
        // As in RedisClient: the thread captures only Sendable pieces, never `self`.
        let (shared, wake, logger) = (self.shared, self.wake, self.logger)
        var chosen = self.configuration
        if let onMessage { chosen.onMessage = onMessage }
        if let onReady { chosen.onReady = onReady }
        let configuration = chosen
        let (kind, shardHooks) = (self.kind, self.shardHooks)
        lifecycle.start(name: "redis-subscriber") {
            let handler = SubscriberConnectionHandler(
                shared: shared,
                kind: kind,
                onMessage: configuration.onMessage,
                onMessages: configuration.onMessages,
                onReady: configuration.onReady,
                onSubscribed: configuration.onSubscribed,
                onConnectionStateChange: configuration.onConnectionStateChange,
                shardHooks: shardHooks
            )
            RedisConnection(
                endpoint: configuration.endpoint,
                settings: configuration.connection,
                handler: handler,
                wake: wake,
                logger: logger
            ).run()
        }
    }

    /// Whether the connection is up and past its handshake. Thread-safe.
    public var isConnected: Bool {
        shared.withLockedValue { $0.connected }
    }

    /// The channels asked for with ``subscribe(_:)`` and not since unsubscribed. Thread-safe.
    public var desiredChannels: Set<String> {
        shared.withLockedValue { $0.desired }
    }

    /// The channels the server has confirmed on the current connection (empty while disconnected).
    /// Thread-safe.
    public var subscribedChannels: Set<String> {
        shared.withLockedValue { $0.confirmed }
    }

    /// Adds `channel` to the desired set; subscribes now if connected, else on the next connect.
    /// Does nothing if it is already desired. Never blocks.
    public func subscribe(_ channel: String) {
        change(channel, subscribe: true)
    }

    /// Removes `channel` from the desired set and unsubscribes if connected. No message of it is
    /// delivered once this returns. Does nothing if it was not desired. Never blocks.
    public func unsubscribe(_ channel: String) {
        change(channel, subscribe: false)
    }

    /// Stops the owner thread, closes the connection and waits for the thread to end. Blocks for at most
    /// about `connectTimeout`, so do not call it on an event loop; use the `async` variant there.
    /// Called from a hook on the owner thread it only requests the stop.
    public func shutdown() {
        requestShutdown()?.join()
    }

    /// Stops the owner thread like the blocking `shutdown()` but suspends instead of blocking.
    public func shutdown() async {
        await requestShutdown()?.join()
    }

    private func change(_ channel: String, subscribe: Bool) {
        let needsWake = shared.withLockedValue { state -> Bool in
            let changed = subscribe ? state.desired.insert(channel).inserted : state.desired.remove(channel) != nil
            // While disconnected the desired set is all that matters: it is re-subscribed on connect.
            guard changed, state.connected, !state.shutdownRequested else { return false }
            state.operations.append(subscribe ? .subscribe(channel, initial: false) : .unsubscribe(channel))
            return state.operations.count == 1
        }
        if needsWake { wake.wake() }
    }

    @discardableResult
    func requestShutdown() -> OwnerThread? {
        shared.withLockedValue { $0.shutdownRequested = true }
        let thread = lifecycle.stop()
        wake.wake()
        return thread
    }
}
