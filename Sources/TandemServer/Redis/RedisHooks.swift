import NIOConcurrencyHelpers
import TandemRedis

/// The node's handlers for its Redis clients' events (connection state, pub/sub messages and
/// subscriptions). The clients are made before the doc shards that handle their events (the shards use
/// the clients), so the clients call through this box, which the node fills in before it starts them:
/// nothing can arrive earlier, since a client that was not started has no connection.
final class RedisHooks: Sendable {
    struct Handlers: Sendable {
        /// The command client's `isConnected` changed.
        var connectionStateChanged: @Sendable (Bool) -> Void
        /// Which keys the command client can serve may have changed (a cluster shard's primary went
        /// down or came back; in a single Redis, with `connectionStateChanged`). Called before it.
        var availabilityChanged: @Sendable () -> Void
        /// The messages of one read of a subscriber connection, in arrival order.
        var messages: @Sendable (_ messages: [RedisPubSubMessage]) -> Void
        /// A subscriber connection re-subscribed its channels after connecting.
        var ready: @Sendable () -> Void
        /// One channel's subscription was confirmed (first time or again).
        var subscribed: @Sendable (_ channel: String) -> Void
        /// The subscriber's `isConnected` changed.
        var subscriberStateChanged: @Sendable (Bool) -> Void
    }

    private let handlers = NIOLockedValueBox<Handlers?>(nil)

    /// Sets the handlers; call before starting the clients.
    func install(_ new: Handlers) { handlers.withLockedValue { $0 = new } }

    /// Drops the handlers once the clients have stopped. They reach the node's context, which owns the
    /// clients, which hold this box: without this a stopped node would keep itself alive.
    func clear() { handlers.withLockedValue { $0 = nil } }

    private var current: Handlers? { handlers.withLockedValue { $0 } }

    func connectionStateChanged(_ up: Bool) { current?.connectionStateChanged(up) }
    func availabilityChanged() { current?.availabilityChanged() }
    func messages(_ messages: [RedisPubSubMessage]) { current?.messages(messages) }
    func ready() { current?.ready() }
    func subscribed(_ channel: String) { current?.subscribed(channel) }
    func subscriberStateChanged(_ up: Bool) { current?.subscriberStateChanged(up) }
}
