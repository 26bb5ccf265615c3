import Logging
import NIOConcurrencyHelpers

/// Where things go now, as reported to routing observers (the cluster subscriber).
enum ClusterRoutingUpdate: Sendable, Equatable {
    /// A single server, reached at this endpoint.
    case single(RedisEndpoint)
    /// A cluster, with this slot table.
    case cluster(ClusterSlotRoutes)
}

/// Everything behind ``RedisClusterClient``: mode detection, the node connections, the slot map and its
/// refreshes (this file), and command routing with redirects and retries (`+Commands`).
///
/// Threading: `state` is the only mutable state, always under its lock, and never held while calling
/// out (into a ``RedisClient``'s `send`, a completion, a hook or an observer). Node clients, callers
/// and the timer thread all come through here. Detection, refreshes, observer and hook calls run on
/// the timer thread only, so they happen in order.
final class ClusterClientCore: Sendable {
    struct Node {
        let client: RedisClient
        /// Set while the node is not a primary in the map: its connection is closed at this time.
        var retireAt: UInt64?
    }

    struct State {
        var mode = RedisClusterClient.Mode.detecting
        /// The single server's client (single mode).
        var single: RedisClient?
        var started = false
        var shutdownRequested = false
        /// Connections by address: the seeds (kept for fetching the map) and every primary.
        var nodes: [RedisEndpoint.Address: Node] = [:]
        /// Owner threads of retired connections, joined at shutdown.
        var retiredThreads: [OwnerThread] = []
        var topology: ClusterTopology?
        /// The topology's table plus `MOVED` corrections.
        var routes = ClusterSlotRoutes()
        /// The addresses `routes` sends to, sorted.
        var primaries: [ClusterNodeAddress] = []
        var refresh: ClusterRefreshSchedule
        /// A `pump()` is queued on the timer thread (coalesces refresh requests).
        var pumpPosted = false
        /// The earliest timed `pump()` already scheduled.
        var pumpScheduledAt: UInt64?
        /// The server does not know `CLUSTER SHARDS` (Redis < 7): use `CLUSTER SLOTS`.
        var useClusterSlots = false
        /// An `INFO cluster` is in flight.
        var detecting = false
        /// Round-robin position for picking a node (keyless commands, map fetches).
        var rotation = 0
        /// Commands accepted and not completed (cluster mode).
        var pending = 0
        /// The last connectivity reported to the hook.
        var reportedConnected = false
        /// The primaries and whether each was connected, as last reported to the availability hook.
        var reportedAvailability: [ClusterNodeAddress: Bool] = [:]
        var observers: [UInt64: @Sendable (ClusterRoutingUpdate) -> Void] = [:]
        var nextObserverID: UInt64 = 0
        /// Failed map fetches in a row, for throttled logging.
        var refreshFailures = 0
        /// Failed `INFO cluster` questions in a row, for throttled logging.
        var detectionFailures = 0
    }

    let configuration: RedisClusterClient.Configuration
    let logger: Logger
    let policy: ClusterRetryPolicy
    /// Retries, map refreshes and hook calls run here.
    let timer = TimerThread()
    let state: NIOLockedValueBox<State>
    private let seedAddresses: Set<RedisEndpoint.Address>
    private let retireGrace: UInt64
    private let failureLogInterval: Int

    init(configuration: RedisClusterClient.Configuration, logger: Logger) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "redis.role"] = "cluster"
        self.logger = logger
        let settings = configuration.cluster
        policy = ClusterRetryPolicy(settings)
        state = NIOLockedValueBox(
            State(
                refresh: ClusterRefreshSchedule(
                    minInterval: UInt64(max(1, settings.minRefreshInterval.nanoseconds)),
                    periodicInterval: UInt64(max(1, settings.refreshInterval.nanoseconds))
                )))
        seedAddresses = Set(configuration.seeds.map(\.address))
        retireGrace = UInt64(
            max(settings.retiredConnectionGrace.nanoseconds, 2 * configuration.connection.commandTimeout.nanoseconds, 0))
        failureLogInterval = max(1, configuration.connection.failureLogInterval)
    }

    // MARK: - Lifecycle and queries

    func start() {
        let clients = state.withLockedValue { state -> [RedisClient] in
            guard !state.started, !state.shutdownRequested else { return [] }
            state.started = true
            return configuration.seeds.compactMap { seed in
                guard state.nodes[seed.address] == nil else { return nil }
                let client = makeClient(endpoint: seed)
                state.nodes[seed.address] = Node(client: client)
                return client
            }
        }
        guard !clients.isEmpty else { return }
        timer.start(name: "redis-cluster")
        for client in clients { client.start() }
    }

    /// Flags the shutdown and stops every connection and the timer without waiting; returns the
    /// threads to join. Everything pending fails with ``RedisError/shutdown``.
    @discardableResult
    func requestShutdown() -> [OwnerThread] {
        let (clients, retired) = state.withLockedValue { state -> ([RedisClient], [OwnerThread]) in
            state.shutdownRequested = true
            let clients = state.nodes.values.map(\.client)
            state.nodes = [:]
            state.single = nil
            state.observers = [:]
            defer { state.retiredThreads = [] }
            return (clients, state.retiredThreads)
        }
        var threads = retired
        for client in clients {
            if let thread = client.requestShutdown() { threads.append(thread) }
        }
        if let thread = timer.stop() { threads.append(thread) }
        return threads
    }

    var mode: RedisClusterClient.Mode { state.withLockedValue { $0.mode } }

    var topology: ClusterTopology? { state.withLockedValue { $0.topology } }

    var isConnected: Bool { state.withLockedValue { Self.connected($0) } }

    var pendingCommandCount: Int {
        let (single, pending) = state.withLockedValue { ($0.single, $0.pending) }
        return single?.pendingCommandCount ?? pending
    }

    var endpointDescription: String {
        let seeds = configuration.seeds.map(\.description).joined(separator: ",")
        return state.withLockedValue { state in
            switch state.mode {
            case .detecting: return seeds
            case .single: return state.single.map { "\($0.configuration.endpoint)" } ?? seeds
            case .cluster: return "cluster \(seeds) (\(state.primaries.count) primaries)"
            }
        }
    }

    var shardStates: [ClusterShardState] {
        state.withLockedValue { state in
            guard state.mode == .cluster, let topology = state.topology else { return [] }
            return topology.shards.enumerated().map { index, shard in
                ClusterShardState(
                    index: index, primary: shard.primary.address, slots: shard.slots.reduce(0) { $0 + $1.count },
                    connected: state.nodes[Self.key(shard.primary.address)]?.client.isConnected ?? false)
            }
        }
    }

    /// The shard (index in the map) a command on `route` sent to `address` counts for. Under the lock.
    func shardIndex(route: ClusterRoute, address: ClusterNodeAddress, in state: State) -> Int? {
        guard configuration.shardObserver != nil, let topology = state.topology else { return nil }
        if case .slot(let slot) = route { return topology.shardIndex(forSlot: slot) }
        return topology.shards.firstIndex { $0.primary.address == address }
    }

    /// Single mode: the connection is up. Cluster mode: `slot` is routed to a primary with a live
    /// connection.
    func isAvailable(slot: Int) -> Bool {
        state.withLockedValue { state in
            if state.shutdownRequested { return false }
            switch state.mode {
            case .detecting: return false
            case .single: return state.single?.isConnected ?? false
            case .cluster:
                guard let address = state.routes.address(forSlot: slot) else { return false }
                return state.nodes[Self.key(address)]?.client.isConnected ?? false
            }
        }
    }

    /// Single mode: the connection is up. Cluster mode: every slot has a primary with a live connection.
    private static func connected(_ state: State) -> Bool {
        if state.shutdownRequested { return false }
        switch state.mode {
        case .detecting:
            return false
        case .single:
            return state.single?.isConnected ?? false
        case .cluster:
            guard let topology = state.topology, topology.coversAllSlots, !state.primaries.isEmpty else { return false }
            return state.primaries.allSatisfy { state.nodes[Self.key($0)]?.client.isConnected ?? false }
        }
    }

    /// Reports a change of ``isConnected`` to the hook. Timer thread only, so reports stay in order.
    func evaluateConnectivity() {
        let (changed, availabilityChanged) = state.withLockedValue { state -> (Bool?, Bool) in
            var availability: [ClusterNodeAddress: Bool] = [:]
            if state.mode == .cluster {
                for address in state.primaries { availability[address] = state.nodes[Self.key(address)]?.client.isConnected ?? false }
            }
            let availabilityChanged = availability != state.reportedAvailability
            state.reportedAvailability = availability
            let now = Self.connected(state)
            guard now != state.reportedConnected else { return (nil, availabilityChanged) }
            state.reportedConnected = now
            return (now, availabilityChanged)
        }
        // Availability first: a node re-evaluates its docs before it hears that everything is back.
        if availabilityChanged || changed != nil { configuration.onAvailabilityChange?() }
        if let changed { configuration.onConnectionStateChange?(changed) }
    }

    // MARK: - Nodes

    static func key(_ address: ClusterNodeAddress) -> RedisEndpoint.Address {
        .tcp(host: address.host, port: address.port)
    }

    /// The endpoint of a cluster node: the first seed's credentials and database at `address`.
    func endpoint(for address: ClusterNodeAddress) -> RedisEndpoint {
        var endpoint = configuration.seeds[0]
        endpoint.address = Self.key(address)
        return endpoint
    }

    /// A client for one node (not started). Its state changes reach the timer thread.
    private func makeClient(endpoint: RedisEndpoint) -> RedisClient {
        var nodeConfiguration = RedisClient.Configuration(endpoint: endpoint)
        nodeConfiguration.connection = configuration.connection
        nodeConfiguration.maxPendingCommands = configuration.maxPendingCommands
        nodeConfiguration.commandObserver = configuration.commandObserver
        let address = endpoint.address
        nodeConfiguration.onConnectionStateChange = { [weak self] up in
            guard let self else { return }
            self.timer.execute { [weak self] in self?.nodeStateChanged(address, up: up) }
        }
        return RedisClient(configuration: nodeConfiguration, logger: logger)
    }

    /// The client for `address`, made (and returned in `created`, to be started outside the lock) if
    /// there is none. Called under the state lock.
    func client(
        for address: ClusterNodeAddress, in state: inout State, created: inout [RedisClient]
    ) -> RedisClient? {
        guard !state.shutdownRequested else { return nil }
        let key = Self.key(address)
        if let node = state.nodes[key] { return node.client }
        let client = makeClient(endpoint: endpoint(for: address))
        state.nodes[key] = Node(client: client)
        created.append(client)
        return client
    }

    /// A node's connection went up or down (timer thread).
    private func nodeStateChanged(_ address: RedisEndpoint.Address, up: Bool) {
        let (mode, hasTopology) = state.withLockedValue { ($0.mode, $0.topology != nil) }
        switch mode {
        case .detecting:
            if up { detect(via: address) }
        case .single:
            break
        case .cluster:
            // A lost primary may be failing over; a new connection may be the first chance to fetch a map.
            if !up || !hasTopology { requestRefresh() }
        }
        evaluateConnectivity()
    }

    /// Stops the connections whose grace period is over. Called under the state lock; returns their
    /// clients, to be stopped outside it.
    private func takeRetired(now: UInt64, in state: inout State) -> [RedisClient] {
        let due = state.nodes.filter { $0.value.retireAt.map { $0 <= now } ?? false }
        for key in due.keys { state.nodes[key] = nil }
        return due.values.map(\.client)
    }

    private func retire(_ clients: [RedisClient]) {
        let threads = clients.compactMap { $0.requestShutdown() }
        guard !threads.isEmpty else { return }
        state.withLockedValue { $0.retiredThreads.append(contentsOf: threads) }
    }

    // MARK: - Mode detection

    /// Asks the node at `address` whether cluster mode is on (unless a question is already out).
    private func detect(via address: RedisEndpoint.Address) {
        let client = state.withLockedValue { state -> RedisClient? in
            guard state.mode == .detecting, !state.detecting, !state.shutdownRequested,
                let node = state.nodes[address], node.client.isConnected
            else { return nil }
            state.detecting = true
            return node.client
        }
        client?.send(RedisCommand("INFO", "cluster")) { [weak self] result in
            self?.timer.execute { [weak self] in self?.detected(result, via: address) }
        }
    }

    private func detected(_ result: Result<RedisValue, RedisError>, via address: RedisEndpoint.Address) {
        state.withLockedValue { $0.detecting = false }
        let enabled: Bool?
        if case .success(let value) = result, let info = value.string {
            enabled = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cluster_enabled:") }
                .map { $0.hasSuffix("1") } ?? false
        } else {
            enabled = nil
        }
        switch enabled {
        case true?: becomeCluster(via: address)
        case false?: becomeSingle(address)
        case nil:
            let failures = state.withLockedValue { state -> Int in
                state.detectionFailures += 1
                return state.detectionFailures
            }
            let metadata: Logger.Metadata = ["redis.reply": "\(result)", "redis.failures": "\(failures)"]
            if failures == 1 || failures % failureLogInterval == 0 {
                logger.warning("cannot tell whether Redis runs in cluster mode (INFO cluster failed); asking again", metadata: metadata)
            } else {
                logger.debug("cannot tell whether Redis runs in cluster mode (INFO cluster failed); asking again", metadata: metadata)
            }
            let delay = state.withLockedValue { $0.refresh.minInterval }
            timer.schedule(at: monotonicNanoseconds() &+ delay) { [weak self] in
                self?.retryDetection()
            }
        }
    }

    private func retryDetection() {
        let candidate = state.withLockedValue { state in
            state.nodes.first { $0.value.client.isConnected }?.key
        }
        if let candidate { detect(via: candidate) }
    }

    private func becomeSingle(_ address: RedisEndpoint.Address) {
        let others = state.withLockedValue { state -> [RedisClient]? in
            guard state.mode == .detecting, let node = state.nodes[address] else { return nil }
            state.mode = .single
            state.single = node.client
            let others = state.nodes.filter { $0.key != address }.map(\.value.client)
            state.nodes = [address: node]
            return others
        }
        guard let others else { return }
        retire(others)
        logger.info("Redis is a single server (cluster mode off)", metadata: ["redis.endpoint": "\(address)"])
        notifyObservers()
        evaluateConnectivity()
    }

    private func becomeCluster(via address: RedisEndpoint.Address) {
        let changed = state.withLockedValue { state -> Bool in
            guard state.mode == .detecting else { return false }
            state.mode = .cluster
            return true
        }
        guard changed else { return }
        if configuration.seeds[0].database != 0 {
            logger.error("Redis Cluster has only database 0; the database in the Redis URL is ignored by the cluster")
        }
        logger.info("Redis runs in cluster mode; fetching the slot map", metadata: ["redis.endpoint": "\(address)"])
        requestRefresh()
    }

    // MARK: - Slot map refresh

    /// Asks for a fresh slot map as soon as the rate limit allows. Any thread.
    func requestRefresh() {
        let post = state.withLockedValue { state -> Bool in
            guard state.mode == .cluster, !state.shutdownRequested else { return false }
            state.refresh.request()
            guard !state.pumpPosted else { return false }
            state.pumpPosted = true
            return true
        }
        if post { timer.execute { [weak self] in self?.pump() } }
    }

    /// The primary `slot` is routed to now (the map plus `MOVED` corrections). Any thread.
    func address(forSlot slot: Int) -> ClusterNodeAddress? {
        state.withLockedValue { $0.routes.address(forSlot: slot) }
    }

    /// Whether no map fetch is in flight, asked for, or due within `nanoseconds`: until then the map
    /// changes only through `MOVED` replies (tests use it to keep a stale map stale on purpose).
    func refreshIsQuiet(forNanoseconds nanoseconds: UInt64) -> Bool {
        state.withLockedValue { state in
            !state.refresh.isInFlight && !state.refresh.requested && !state.pumpPosted
                && state.refresh.nextPeriodic > monotonicNanoseconds() &+ nanoseconds
        }
    }

    /// Records that `slot` is served at `address` (a `MOVED` reply) and starts a connection there if
    /// needed. Any thread.
    func learnMoved(slot: Int, to address: ClusterNodeAddress) {
        var created: [RedisClient] = []
        state.withLockedValue { state in
            guard state.mode == .cluster, state.routes.update(slot: slot, to: address) else { return }
            _ = client(for: address, in: &state, created: &created)
            state.nodes[Self.key(address)]?.retireAt = nil
            state.primaries = state.routes.servingAddresses.sorted()
        }
        for client in created { client.start() }
    }

    private enum PumpAction {
        case none
        case fetch(RedisClient, host: String, slots: Bool)
        case schedule(UInt64)
    }

    /// Starts a map fetch if one is due, else makes sure a later `pump()` is scheduled; also closes
    /// connections whose grace period is over. Timer thread only.
    private func pump() {
        let now = monotonicNanoseconds()
        var retired: [RedisClient] = []
        var action = PumpAction.none
        state.withLockedValue { state in
            state.pumpPosted = false
            guard state.mode == .cluster, !state.shutdownRequested else { return }
            retired = takeRetired(now: now, in: &state)
            // Wake up for the next retirement too, not only for the next fetch.
            let nextRetirement = state.nodes.values.compactMap(\.retireAt).min()
            func wake(at time: UInt64) {
                let time = min(time, nextRetirement ?? .max)
                if state.pumpScheduledAt.map({ time < $0 }) ?? true {
                    state.pumpScheduledAt = time
                    action = .schedule(time)
                }
            }
            for _ in 0..<2 {
                switch state.refresh.poll(now: now) {
                case .inFlight:
                    if let nextRetirement { wake(at: nextRetirement) }
                    return
                case .wait(let until):
                    wake(at: until)
                    return
                case .start:
                    let candidates = state.nodes.filter { $0.value.client.isConnected }.sorted { "\($0.key)" < "\($1.key)" }
                    guard !candidates.isEmpty else {
                        // Nobody to ask: count it as a failed fetch, which schedules the next try.
                        state.refresh.finished(now: now, healthy: false)
                        continue
                    }
                    let (key, node) = candidates[state.rotation % candidates.count]
                    state.rotation &+= 1
                    let host: String
                    if case .tcp(let tcpHost, _) = key { host = tcpHost } else { host = "127.0.0.1" }
                    action = .fetch(node.client, host: host, slots: state.useClusterSlots)
                    return
                }
            }
        }
        retire(retired)
        switch action {
        case .none:
            break
        case .schedule(let at):
            timer.schedule(at: at) { [weak self] in self?.timedPump(at: at) }
        case .fetch(let client, let host, let slots):
            let command = slots ? RedisCommand("CLUSTER", "SLOTS") : RedisCommand("CLUSTER", "SHARDS")
            client.send(command) { [weak self] result in
                self?.timer.execute { [weak self] in self?.fetched(result, host: host, slots: slots) }
            }
        }
    }

    private func timedPump(at: UInt64) {
        state.withLockedValue { state in
            if state.pumpScheduledAt == at { state.pumpScheduledAt = nil }
        }
        pump()
    }

    /// A map fetch ended (timer thread).
    private func fetched(_ result: Result<RedisValue, RedisError>, host: String, slots: Bool) {
        let now = monotonicNanoseconds()
        guard !state.withLockedValue({ $0.shutdownRequested }) else { return }
        var failure: String
        switch result {
        case .success(.error(let message)):
            if !slots, message.lowercased().contains("unknown subcommand") {
                logger.info("CLUSTER SHARDS unsupported (Redis < 7); using CLUSTER SLOTS")
                state.withLockedValue { state in
                    state.useClusterSlots = true
                    state.refresh.finished(now: now, healthy: false)
                    state.refresh.request()
                }
                pump()
                return
            }
            failure = message
        case .success(let value):
            do {
                let topology = try slots
                    ? ClusterTopology.parseSlots(value, defaultHost: host)
                    : ClusterTopology.parseShards(value, defaultHost: host)
                apply(topology, now: now)
                return
            } catch {
                failure = error.description
            }
        case .failure(let error):
            failure = error.description
        }
        let failures = state.withLockedValue { state -> Int in
            state.refresh.finished(now: now, healthy: false)
            state.refreshFailures += 1
            return state.refreshFailures
        }
        let metadata: Logger.Metadata = ["redis.error": "\(failure)", "redis.failures": "\(failures)"]
        if failures == 1 || failures % failureLogInterval == 0 {
            logger.warning("cannot fetch the Redis Cluster slot map; retrying", metadata: metadata)
        } else {
            logger.debug("cannot fetch the Redis Cluster slot map; retrying", metadata: metadata)
        }
        pump()
    }

    /// Installs a fetched map: routes, a connection per primary, retirement of former primaries.
    private func apply(_ topology: ClusterTopology, now: UInt64) {
        var created: [RedisClient] = []
        var retired: [RedisClient] = []
        let changed = state.withLockedValue { state -> Bool in
            guard state.mode == .cluster, !state.shutdownRequested else { return false }
            let changed = state.topology != topology
            state.topology = topology
            state.routes = topology.routes()
            state.primaries = topology.primaries
            let primaryKeys = Set(state.primaries.map(Self.key))
            for address in state.primaries {
                _ = client(for: address, in: &state, created: &created)
                state.nodes[Self.key(address)]?.retireAt = nil
            }
            for (key, node) in state.nodes where !primaryKeys.contains(key) && !seedAddresses.contains(key) {
                if node.retireAt == nil { state.nodes[key]?.retireAt = now &+ retireGrace }
            }
            retired = takeRetired(now: now, in: &state)
            let reachable = state.primaries.allSatisfy { state.nodes[Self.key($0)]?.client.isConnected ?? false }
            state.refresh.finished(now: now, healthy: topology.isHealthy && reachable)
            state.refreshFailures = 0
            return changed
        }
        for client in created { client.start() }
        retire(retired)
        if changed {
            let shards = topology.shards.map { shard in
                "\(shard.primary.address)=\(shard.slots.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ","))"
            }
            logger.info(
                "Redis Cluster slot map updated",
                metadata: [
                    "redis.primaries": "\(topology.primaries.count)", "redis.shards": "\(shards.joined(separator: " "))",
                    "redis.covers_all_slots": "\(topology.coversAllSlots)",
                ])
        }
        // Observers hear of every fetched map, changed or not: a subscriber waiting to re-place a
        // channel that the server dropped waits for a map fetched after the drop.
        notifyObservers()
        evaluateConnectivity()
        pump()
    }

    // MARK: - Observers (the cluster subscriber)

    /// Registers `observer` for routing updates; it is called on the timer thread, first with the
    /// current routing (once known), then after every fetched slot map (changed or not). Returns an id for ``removeObserver(_:)``.
    func addObserver(_ observer: @escaping @Sendable (ClusterRoutingUpdate) -> Void) -> UInt64 {
        let id = state.withLockedValue { state -> UInt64 in
            let id = state.nextObserverID
            state.nextObserverID += 1
            state.observers[id] = observer
            return id
        }
        // Read the routing when this runs, on the timer thread, so it cannot overtake a newer update.
        timer.execute { [weak self] in
            guard let self, let update = self.state.withLockedValue({ Self.routingUpdate($0) }) else { return }
            observer(update)
        }
        return id
    }

    func removeObserver(_ id: UInt64) {
        _ = state.withLockedValue { $0.observers.removeValue(forKey: id) }
    }

    private func notifyObservers() {
        let (update, observers) = state.withLockedValue { state in
            (Self.routingUpdate(state), Array(state.observers.values))
        }
        guard let update else { return }
        for observer in observers { observer(update) }
    }

    private static func routingUpdate(_ state: State) -> ClusterRoutingUpdate? {
        switch state.mode {
        case .detecting: return nil
        case .single: return state.single.map { .single($0.configuration.endpoint) }
        case .cluster: return state.topology == nil ? nil : .cluster(state.routes)
        }
    }
}
