/// What Tandem programs against to receive pub/sub messages, whether Redis is one server
/// (``RedisSubscriber``, `SUBSCRIBE`) or a cluster (``RedisClusterSubscriber``, `SSUBSCRIBE` on the
/// shard that owns each channel, or `SUBSCRIBE` when its client found a single server).
///
/// Contract shared by every implementation:
/// - The subscriber keeps a *desired* set of channels; ``subscribe(_:)`` and ``unsubscribe(_:)`` are
///   idempotent, never block, and work while disconnected (the set is subscribed on connect).
/// - Messages arrive on `onMessage` in the order the server sent them on one connection; no message
///   of a channel is delivered once `unsubscribe` returned.
/// - Every confirmed (re)subscription of a desired channel is reported to `onSubscribed`, before any
///   message it makes possible; messages published while the channel was not subscribed (a
///   reconnect, a slot migration, a failover) are lost, so that is when to catch up from a log.
public protocol RedisChannelSubscriber: AnyObject, Sendable {
    /// Starts connecting in the background; calling it again, or after `shutdown()`, does nothing.
    func start()

    /// Whether every connection the subscriber needs is up.
    var isConnected: Bool { get }

    /// The channels asked for and not since unsubscribed.
    var desiredChannels: Set<String> { get }

    /// The channels the server has confirmed on live connections.
    var subscribedChannels: Set<String> { get }

    /// Adds `channel` to the desired set (subscribing now if connected).
    func subscribe(_ channel: String)

    /// Removes `channel` from the desired set; no message of it is delivered once this returns.
    func unsubscribe(_ channel: String)

    /// Closes every connection and waits for the owner threads (blocks briefly; not on an event loop).
    func shutdown()

    /// Stops like `shutdown()`, suspending instead of blocking.
    func shutdown() async
}

/// One pub/sub message: the channel it came on and its payload (see `onMessages` in the subscribers'
/// configurations).
public struct RedisPubSubMessage: Sendable {
    public let channel: String
    public let payload: [UInt8]

    public init(channel: String, payload: [UInt8]) {
        self.channel = channel
        self.payload = payload
    }
}
