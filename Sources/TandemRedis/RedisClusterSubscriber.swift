import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A pub/sub subscriber that follows its ``RedisClusterClient``: sharded pub/sub in cluster mode,
/// classic pub/sub with a single server.
///
/// - **Cluster mode**: one `SSUBSCRIBE` connection per primary (each a ``RedisSubscriber`` with its own
///   owner thread); a channel is subscribed on the primary of its name's slot (so `tandem:{doc}` lives
///   with the doc's keys). Publish with `SPUBLISH` (``RedisCommandClient/publishCommand(channel:payload:)``).
/// - **Single server**: one `SUBSCRIBE` connection, exactly like ``RedisSubscriber``.
///
/// Channels move by themselves: when the server drops a channel (`sunsubscribe` push after its slot
/// migrated or its primary became a replica), refuses it (`MOVED`, `CLUSTERDOWN`), or the client's slot
/// map changes (failover, resharding), the channel is subscribed again where it now lives, and
/// `onSubscribed` reports it. Messages published between losing and regaining a channel are lost: the
/// owner fills that gap from its log on `onSubscribed`.
///
/// The subscriber uses its client's slot map, refreshes and timer thread; start the client too.
public final class RedisClusterSubscriber: RedisChannelSubscriber {
    /// Hooks, timeouts and re-subscription pacing.
    public struct Configuration: Sendable {
        /// Timeouts, health checks and reconnect pacing of each connection.
        public var connection = RedisConnectionSettings()
        /// Receives each message of a desired channel, on a connection's owner thread, in the order
        /// that connection received them. Must be cheap and must not block.
        public var onMessage: @Sendable (_ channel: String, _ payload: [UInt8]) -> Void
        /// When set, receives instead of `onMessage` the messages of one read of a connection together
        /// (see ``RedisSubscriber/Configuration/onMessages``).
        public var onMessages: (@Sendable (_ messages: [RedisPubSubMessage]) -> Void)?
        /// Each confirmed (re)subscription of a desired channel (see
        /// ``RedisSubscriber/Configuration/onSubscribed``), on the connection's owner thread.
        public var onSubscribed: (@Sendable (_ channel: String) -> Void)?
        /// Called each time one connection has re-subscribed its channels after connecting (in cluster
        /// mode once per primary connection), on its owner thread.
        public var onReady: (@Sendable () -> Void)?
        /// Called on each change of ``RedisClusterSubscriber/isConnected``, on the client's timer thread.
        public var onConnectionStateChange: (@Sendable (Bool) -> Void)?
        /// A channel the server dropped (`sunsubscribe` push) or refused (`CLUSTERDOWN`) is placed again
        /// when the client has fetched a fresh slot map (it asks for one at once); if no map arrives
        /// within this delay, it is placed by the map at hand. The delay doubles (with jitter) per
        /// consecutive attempt, up to `resubscribeMaxDelay`. A `MOVED` refusal is followed at once.
        public var resubscribeInitialDelay: TimeAmount = .milliseconds(500)
        /// Largest delay between attempts to place a dropped or refused channel.
        public var resubscribeMaxDelay: TimeAmount = .seconds(2)

        /// A configuration with default settings.
        public init(onMessage: @escaping @Sendable (_ channel: String, _ payload: [UInt8]) -> Void) {
            self.onMessage = onMessage
        }
    }

    /// The configuration the subscriber was made with.
    public let configuration: Configuration
    private let core: ClusterSubscriberCore

    /// Creates a subscriber that follows `client`'s mode and slot map; it does nothing until ``start()``.
    public init(configuration: Configuration, client: RedisClusterClient, logger: Logger = Logger(label: "tandem.redis")) {
        self.configuration = configuration
        self.core = ClusterSubscriberCore(configuration: configuration, client: client.core, logger: logger)
    }

    deinit {
        core.requestShutdown()
    }

    public func start() { core.start() }

    /// Whether the mode is known and every connection (one per primary in cluster mode) is up.
    public var isConnected: Bool { core.isConnected }

    /// Whether the mode is known and at least one connection is up: in a cluster, some shards' channels
    /// are served while another shard fails over.
    public var isPartlyConnected: Bool { core.isPartlyConnected }

    public var desiredChannels: Set<String> { core.desiredChannels }

    /// The channels confirmed on live connections.
    public var subscribedChannels: Set<String> { core.subscribedChannels }

    /// Adds `channel` to the desired set and subscribes it where it lives. Never blocks.
    public func subscribe(_ channel: String) { core.subscribe(channel) }

    /// Removes `channel` from the desired set; no message of it is delivered once this returns.
    public func unsubscribe(_ channel: String) { core.unsubscribe(channel) }

    public func shutdown() {
        for thread in core.requestShutdown() { thread.join() }
    }

    public func shutdown() async {
        for thread in core.requestShutdown() { await thread.join() }
    }
}

/// The state behind ``RedisClusterSubscriber``: which channel is subscribed on which connection.
///
/// Threading: `state` is under its lock. Subscribing and unsubscribing on a connection happen under that
/// lock too, so the connections see changes in the order they were decided (a connection's own lock is
/// a leaf: its owner thread never holds it while calling back here). User hooks are never called under
/// the lock.
final class ClusterSubscriberCore: Sendable {
    struct State {
        var started = false
        var shutdownRequested = false
        /// The latest routing the client reported (`nil` until the mode is known).
        var routing: ClusterRoutingUpdate?
        var desired: Set<String> = []
        /// The connection each placed channel is subscribed on.
        var assignment: [String: RedisEndpoint.Address] = [:]
        /// Desired channels placed nowhere yet (no routing, dropped, or refused).
        var waiting: Set<String> = []
        var connections: [RedisEndpoint.Address: RedisSubscriber] = [:]
        var retiredThreads: [OwnerThread] = []
        var observerID: UInt64?
        var reportedConnected = false
        /// A placement retry is scheduled on the timer.
        var retryScheduled = false
        var retryBackoff: Backoff
    }

    private let configuration: RedisClusterSubscriber.Configuration
    private let client: ClusterClientCore
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    init(configuration: RedisClusterSubscriber.Configuration, client: ClusterClientCore, logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.logger = logger
        state = NIOLockedValueBox(
            State(
                retryBackoff: Backoff(
                    initialNanoseconds: configuration.resubscribeInitialDelay.nanoseconds,
                    maxNanoseconds: configuration.resubscribeMaxDelay.nanoseconds)))
    }

    // MARK: - Public surface

    func start() {
        let first = state.withLockedValue { state -> Bool in
            guard !state.started, !state.shutdownRequested else { return false }
            state.started = true
            return true
        }
        guard first else { return }
        let id = client.addObserver { [weak self] update in self?.routingChanged(update) }
        state.withLockedValue { $0.observerID = id }
    }

    @discardableResult
    func requestShutdown() -> [OwnerThread] {
        let (connections, retired, observer) = state.withLockedValue { state in
            state.shutdownRequested = true
            defer {
                state.connections = [:]
                state.retiredThreads = []
                state.observerID = nil
            }
            return (Array(state.connections.values), state.retiredThreads, state.observerID)
        }
        if let observer { client.removeObserver(observer) }
        return retired + connections.compactMap { $0.requestShutdown() }
    }

    var isConnected: Bool { state.withLockedValue { Self.connected($0) } }

    var isPartlyConnected: Bool {
        state.withLockedValue { state in
            !state.shutdownRequested && state.routing != nil && state.connections.values.contains(where: \.isConnected)
        }
    }

    var desiredChannels: Set<String> { state.withLockedValue { $0.desired } }

    var subscribedChannels: Set<String> {
        let connections = state.withLockedValue { Array($0.connections.values) }
        return connections.reduce(into: Set<String>()) { $0.formUnion($1.subscribedChannels) }
    }

    func subscribe(_ channel: String) {
        let created = state.withLockedValue { state -> [RedisSubscriber] in
            guard state.desired.insert(channel).inserted else { return [] }
            var created: [RedisSubscriber] = []
            place(channel, in: &state, created: &created)
            return created
        }
        for connection in created { connection.start() }
    }

    func unsubscribe(_ channel: String) {
        state.withLockedValue { state in
            guard state.desired.remove(channel) != nil else { return }
            state.waiting.remove(channel)
            if let address = state.assignment.removeValue(forKey: channel) {
                state.connections[address]?.unsubscribe(channel)
            }
        }
    }

    // MARK: - Placement

    /// Where `channel` belongs under the current routing, if anywhere yet.
    private func target(of channel: String, routing: ClusterRoutingUpdate?) -> RedisEndpoint.Address? {
        switch routing {
        case nil:
            return nil
        case .single(let endpoint)?:
            return endpoint.address
        case .cluster?:
            // The client's live table, which includes MOVED corrections made since the last update.
            return client.address(forSlot: ClusterSlot.slot(forKey: channel)).map(ClusterClientCore.key)
        }
    }

    /// Subscribes `channel` on the connection where it belongs (made if needed), or parks it in
    /// `waiting`. Under the state lock.
    private func place(_ channel: String, in state: inout State, created: inout [RedisSubscriber]) {
        guard !state.shutdownRequested, let address = target(of: channel, routing: state.routing) else {
            state.waiting.insert(channel)
            return
        }
        state.waiting.remove(channel)
        state.assignment[channel] = address
        connection(for: address, in: &state, created: &created)?.subscribe(channel)
    }

    /// The connection for `address`, made (returned in `created`, to start outside the lock) if needed.
    @discardableResult
    private func connection(
        for address: RedisEndpoint.Address, in state: inout State, created: inout [RedisSubscriber]
    ) -> RedisSubscriber? {
        if let existing = state.connections[address] { return existing }
        guard let routing = state.routing else { return nil }
        let endpoint: RedisEndpoint
        let kind: PubSubKind
        switch routing {
        case .single(let single):
            endpoint = single
            kind = .classic
        case .cluster:
            guard case .tcp(let host, let port) = address else { return nil }
            endpoint = client.endpoint(for: ClusterNodeAddress(host: host, port: port))
            kind = .sharded
        }
        var connectionConfiguration = RedisSubscriber.Configuration(endpoint: endpoint, onMessage: configuration.onMessage)
        connectionConfiguration.connection = configuration.connection
        connectionConfiguration.onMessages = configuration.onMessages
        connectionConfiguration.onReady = configuration.onReady
        connectionConfiguration.onSubscribed = configuration.onSubscribed
        connectionConfiguration.onConnectionStateChange = { [weak self] up in
            guard let self else { return }
            if !up { self.client.requestRefresh() }
            self.client.timer.execute { [weak self] in self?.evaluateConnectivity() }
        }
        let hooks = ShardSubscriptionHooks(
            onServerUnsubscribed: { [weak self] channel in self?.dropped(channel, from: address, refusal: nil) },
            onSubscribeRefused: { [weak self] channel, message in self?.dropped(channel, from: address, refusal: message) }
        )
        let subscriber = RedisSubscriber(
            configuration: connectionConfiguration, kind: kind, shardHooks: kind == .sharded ? hooks : nil, logger: logger)
        state.connections[address] = subscriber
        created.append(subscriber)
        return subscriber
    }

    /// The client fetched a slot map or settled its mode (timer thread): make one connection per
    /// primary, move every channel whose slot moved, place the waiting ones, close connections no
    /// longer needed.
    private func routingChanged(_ update: ClusterRoutingUpdate) {
        var created: [RedisSubscriber] = []
        var stopped: [RedisSubscriber] = []
        state.withLockedValue { state in
            guard !state.shutdownRequested else { return }
            if state.routing == update {
                // Same map: only the channels waiting for a fresh one need placing.
                for channel in state.waiting where state.desired.contains(channel) {
                    place(channel, in: &state, created: &created)
                }
                return
            }
            state.routing = update
            state.retryBackoff.reset()
            let needed: Set<RedisEndpoint.Address>
            switch update {
            case .single(let endpoint): needed = [endpoint.address]
            case .cluster(let routes): needed = Set(routes.servingAddresses.map(ClusterClientCore.key))
            }
            for address in needed { connection(for: address, in: &state, created: &created) }
            rebalance(&state, created: &created)
            for (address, connection) in state.connections where !needed.contains(address) {
                // Every channel has left it (rebalance went first), unless a MOVED correction still
                // points there; keep it then, the next map decides.
                guard !state.assignment.values.contains(address) else { continue }
                state.connections[address] = nil
                stopped.append(connection)
            }
        }
        for connection in created { connection.start() }
        let threads = stopped.compactMap { $0.requestShutdown() }
        if !threads.isEmpty { state.withLockedValue { $0.retiredThreads.append(contentsOf: threads) } }
        evaluateConnectivity()
    }

    /// Moves every desired channel to where it belongs now. Under the state lock.
    private func rebalance(_ state: inout State, created: inout [RedisSubscriber]) {
        for channel in state.desired {
            let current = state.assignment[channel]
            let target = target(of: channel, routing: state.routing)
            guard current != target || current == nil else { continue }
            if let current {
                state.assignment[channel] = nil
                state.connections[current]?.unsubscribe(channel)
            }
            place(channel, in: &state, created: &created)
        }
    }

    /// A connection lost `channel` (server push or refused `SSUBSCRIBE`), on its owner thread.
    private func dropped(_ channel: String, from address: RedisEndpoint.Address, refusal: String?) {
        var learned: (slot: Int, address: ClusterNodeAddress)?
        if let refusal, case .tcp(let host, _) = address,
            case .moved(let slot, let to) = ClusterReplyError(message: refusal, replyingHost: host)
        {
            learned = (slot, to)
        }
        let isCurrent = state.withLockedValue { state -> Bool in
            guard state.assignment[channel] == address else { return false }
            state.assignment[channel] = nil
            state.waiting.insert(channel)
            return true
        }
        guard isCurrent else { return }
        logger.debug(
            "Redis dropped a sharded subscription; placing it again",
            metadata: ["redis.channel": "\(channel)", "redis.node": "\(address)", "redis.reply": "\(refusal ?? "sunsubscribe")"])
        if let learned {
            // Place it right away where the cluster says it lives.
            client.learnMoved(slot: learned.slot, to: learned.address)
            client.requestRefresh()
            placeWaiting()
        } else {
            client.requestRefresh()
            scheduleRetry()
        }
    }

    /// Places every waiting channel where the current routing says it belongs.
    private func placeWaiting() {
        let (created, stillWaiting) = state.withLockedValue { state -> ([RedisSubscriber], Bool) in
            state.retryScheduled = false
            guard !state.shutdownRequested else { return ([], false) }
            var created: [RedisSubscriber] = []
            for channel in state.waiting where state.desired.contains(channel) {
                place(channel, in: &state, created: &created)
            }
            return (created, !state.waiting.isEmpty)
        }
        for connection in created { connection.start() }
        if stillWaiting { scheduleRetry() }
    }

    /// Places waiting channels again after the next backoff delay (one retry scheduled at a time).
    private func scheduleRetry() {
        let delay = state.withLockedValue { state -> Int64? in
            guard !state.retryScheduled, !state.shutdownRequested else { return nil }
            state.retryScheduled = true
            return state.retryBackoff.nextDelay()
        }
        guard let delay else { return }
        client.timer.schedule(at: monotonicNanoseconds() &+ UInt64(delay)) { [weak self] in self?.placeWaiting() }
    }

    // MARK: - Connectivity

    private static func connected(_ state: State) -> Bool {
        guard !state.shutdownRequested, state.routing != nil, !state.connections.isEmpty else { return false }
        return state.connections.values.allSatisfy(\.isConnected)
    }

    /// Reports a change of ``isConnected`` (timer thread, so reports stay in order).
    private func evaluateConnectivity() {
        let changed = state.withLockedValue { state -> Bool? in
            let now = Self.connected(state)
            guard now != state.reportedConnected else { return nil }
            state.reportedConnected = now
            return now
        }
        if let changed { configuration.onConnectionStateChange?(changed) }
    }
}
