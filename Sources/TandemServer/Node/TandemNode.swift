import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import TandemCore
import TandemOpsHTTP
import TandemRedis
import TandemSystem

/// One Tandem node: its event loops, the embedded redis-server (when there is one), the Redis connections,
/// the ops server, the doc shards, the WebSocket server and the once-a-second housekeeping, each a
/// `Service` in one `ServiceGroup`: started in that order, shut down gracefully in reverse (see
/// `makeServices` and docs/architecture.md).
///
/// As a `Service` itself (`run()`), the node runs inside the group of `tandem serve`, whose SIGTERM and
/// SIGINT shut it down gracefully; in a test, `start()` and `shutdown()` do the same in the background.
public final class TandemNode: Service, Sendable {
    public let configuration: ServerConfiguration
    public let metrics: TandemMetrics
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let context: NodeContext
    private let server: WebSocketServer
    private let ops: OpsHTTPServer
    private let embeddedRedis: EmbeddedRedis?
    private let housekeeping = NIOLockedValueBox<RepeatedTask?>(nil)
    /// The node's services, with the step the last one opens once everything listens.
    private let services: [NodeService]
    private let serviceGroup: ServiceGroup
    /// `start()`'s background run of the group, for `shutdown()` to wait for.
    private let background = NIOLockedValueBox<Task<Void, any Error>?>(nil)

    /// Housekeeping (storm state, gauges, status sample, directory heartbeat) runs this often.
    static let housekeepingInterval: TimeAmount = .seconds(1)
    /// Descriptors a node holds besides client and ops sockets: Redis connections, wake pipes, event-loop
    /// epoll and eventfds, the embedded Redis's pipes, log files.
    static let descriptorsBesidesSockets: UInt64 = 64
    /// On shutdown, clients get this long to close after their 1001 before the node moves on...
    static let clientCloseTimeout: TimeAmount = .seconds(3)
    /// ... the shards this long to delete this node's presence from Redis...
    static let presenceRemovalTimeout: TimeAmount = .seconds(3)
    /// ... and the node directory this long to record the node as stopped.
    static let directoryStopTimeout: TimeAmount = .seconds(1)
    /// At start, the node waits at most this long for Redis before it listens anyway.
    static let redisStartGrace: Duration = .seconds(1)

    /// Builds the node; nothing listens or connects until `run()` or `start()`.
    /// - Parameter embeddedRedis: The redis-server this node starts first and stops last (its `url` is
    ///   `configuration.redisURL`); nil when the node uses a Redis run elsewhere.
    public init(
        configuration: ServerConfiguration, logger: Logger, eventLoopThreads: Int = System.coreCount,
        embeddedRedis: EmbeddedRedis? = nil
    ) async throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        self.embeddedRedis = embeddedRedis
        let metrics = TandemMetrics(nodeID: configuration.nodeID)
        self.metrics = metrics
        // (No URL at all fails here, as an unparsable one.)
        let urls = configuration.redisSeedURLs
        let seeds = try (urls.isEmpty ? [configuration.redisURL] : urls).map { try RedisEndpoint(url: $0) }
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, eventLoopThreads))

        // One client and one subscriber, each serving a single Redis or a Redis Cluster, whichever the seeds
        // turn out to be (detected when they connect). The hooks reach the shards, which use the clients:
        // they go through `RedisHooks`, filled in (`installRedisHooks`) before the clients start.
        let hooks = RedisHooks()
        var redisConfig = RedisClusterClient.Configuration(seeds: seeds)
        redisConfig.commandObserver = { seconds in metrics.redisCommandSeconds.record(seconds) }
        redisConfig.onConnectionStateChange = { up in hooks.connectionStateChanged(up) }
        redisConfig.onAvailabilityChange = { hooks.availabilityChanged() }
        let shardMetrics = metrics.redisShards
        redisConfig.shardObserver = { shard, outcome in shardMetrics.record(shard: shard, outcome) }
        var redisLogger = logger
        redisLogger[metadataKey: "redis.endpoint"] = "\(seeds.map(\.description).joined(separator: ","))"
        let redis = RedisClusterClient(configuration: redisConfig, logger: redisLogger)
        var subscriberConfig = RedisClusterSubscriber.Configuration { channel, payload in
            hooks.messages([RedisPubSubMessage(channel: channel, payload: payload)])
        }
        // A read's messages together: one hop per doc shard per read, not per message (issue 11).
        subscriberConfig.onMessages = { messages in hooks.messages(messages) }
        subscriberConfig.onReady = { hooks.ready() }
        subscriberConfig.onSubscribed = { channel in hooks.subscribed(channel) }
        subscriberConfig.onConnectionStateChange = { up in hooks.subscriberStateChanged(up) }
        let subscriber = RedisClusterSubscriber(configuration: subscriberConfig, client: redis, logger: redisLogger)

        // Invalid schema files stop the node here, before it listens: it must not serve docs unchecked.
        let schemas: SchemaStore
        do {
            schemas = try SchemaStore(directory: configuration.schemaDir, metrics: metrics)
        } catch {
            try? await group.shutdownGracefully()
            throw ConfigurationError(message: error.description)
        }
        let context = NodeContext(
            config: configuration, metrics: metrics, logger: logger, redis: redis, subscriber: subscriber,
            schemas: schemas, loops: Array(group.makeIterator()))
        self.context = context

        // Every socket is a descriptor: take what the hard limit allows, and say so when even that cannot
        // hold the configured connection bounds.
        let descriptors = FileDescriptorLimit.raiseToHardLimit()
        let needed = UInt64(configuration.maxConnections + configuration.maxPendingHandshakes + configuration.opsMaxConnections)
            + Self.descriptorsBesidesSockets
        if descriptors.after < needed {
            logger.warning(
                "open-file limit too low for the connection bounds: clients will be refused (EMFILE) before --max-connections",
                metadata: ["limit": "\(descriptors.after)", "needed": "\(needed)", "raise": "ulimit -n / LimitNOFILE="])
        } else if descriptors.after > descriptors.before {
            logger.debug("raised the open-file limit", metadata: ["from": "\(descriptors.before)", "to": "\(descriptors.after)"])
        }

        let authenticator = await Authenticator(secret: configuration.jwtSecret)
        if authenticator.isDevelopmentMode {
            if configuration.insecureDevMode {
                // Loud on purpose (critical: shown at every --log-level), here and again in `listening`.
                logger.critical(
                    "INSECURE DEVELOPMENT MODE (--insecure-dev-mode) on \(configuration.host): no JWT secret, so anyone who can reach this port picks any user id, resumes any session and edits every doc")
            } else {
                logger.warning(
                    "no JWT secret: development mode on \(configuration.host) only; clients pick their user with ?user=&name= and edit every doc")
            }
        }
        server = WebSocketServer(dependencies: context.webSocketDependencies, authenticator: authenticator, group: group)

        let opsMetrics = OpsMetrics(registry: metrics.registry)
        let routes = OpsRoutes(dependencies: context.opsDependencies, metrics: opsMetrics)
        ops = OpsHTTPServer(
            configuration: .init(
                host: configuration.opsHost, port: configuration.opsPort, threads: configuration.opsThreads,
                maxConnections: configuration.opsMaxConnections,
                maxConnectionsPerAddress: configuration.opsMaxConnectionsPerIP,
                // libmicrohttpd counts whole seconds.
                connectionTimeoutSeconds: (configuration.opsIdleTimeoutMs + 999) / 1000,
                // Every ops route is a GET: a request body is refused before it is read.
                maxRequestBodyBytes: 0,
                maxPendingResponses: configuration.opsMaxPendingRequests,
                responseTimeoutMs: configuration.opsRequestTimeoutMs,
                hostPolicy: try OpsHostPolicy(allowedNames: configuration.opsAllowedHosts)),
            logger: logger, observe: { opsMetrics.observe($0) }, replying: { request in routes.handle(request) })
        if configuration.opsToken == nil, !["127.0.0.1", "localhost", "::1", "[::1]"].contains(configuration.opsHost) {
            logger.notice("no --ops-token: /api/docs (document content, user names) is open to anyone who reaches the ops port")
        }
        services = Self.makeServices(
            group: group, embeddedRedis: embeddedRedis, context: context, hooks: hooks, server: server, ops: ops,
            housekeeping: housekeeping, configuration: configuration, logger: logger)
        serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map {
                    // A component that fails (a port taken, redis-server missing) shuts the others down
                    // gracefully too, so the embedded redis-server is never left running.
                    ServiceGroupConfiguration.ServiceConfiguration(
                        service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                },
                logger: logger))
    }

    /// The node's components in start order; the group stops them in reverse. The shutdown order is the
    /// contract (ShutdownTests): stop housekeeping (its heartbeat must not undo the "stopped" entry); stop
    /// accepting and close every client with 1001; delete this node's presence from Redis; stop the ops
    /// server; record the node as stopped in the directory and close the Redis connections; stop the
    /// embedded redis-server; stop the event loops.
    private static func makeServices(
        group: MultiThreadedEventLoopGroup, embeddedRedis: EmbeddedRedis?, context: NodeContext, hooks: RedisHooks,
        server: WebSocketServer, ops: OpsHTTPServer, housekeeping: NIOLockedValueBox<RepeatedTask?>,
        configuration: ServerConfiguration, logger: Logger
    ) -> [NodeService] {
        var services: [NodeService] = []
        func add(
            _ name: String, start: @escaping @Sendable () async throws -> Void,
            stop: @escaping @Sendable () async -> Void
        ) {
            services.append(NodeService(description: name, started: StartupStep(), after: services.last?.started, start: start, stop: stop))
        }
        add("event loops", start: {}, stop: { try? await group.shutdownGracefully() })
        if let embeddedRedis {
            add("embedded redis", start: { try await embeddedRedis.start() }, stop: { await embeddedRedis.stop() })
        }
        add(
            "redis connections",
            start: {
                hooks.install(redisHandlers(context))
                // The subscriber follows the client's mode and slot map.
                context.redis.start()
                context.subscriber.start()
                // A reachable Redis answers within milliseconds (connect, then `INFO cluster` to tell a single
                // server from a cluster): give it that long before the node listens, so the first clients do
                // not meet `unavailable`. Bounded: a node still starts, and serves presence, without Redis.
                let deadline = ContinuousClock.now + redisStartGrace
                while !context.redis.isConnected, ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(10))
                }
            },
            stop: {
                await context.directory.beat(
                    context.directoryEntry(docs: 0, sessions: 0, state: "stopped"), stopping: true, on: group.next()
                ).wait(atMost: directoryStopTimeout)
                await context.subscriber.shutdown()
                await context.redis.shutdown()
                hooks.clear()
            })
        add("ops server", start: { try ops.start() }, stop: { ops.stop() })
        add(
            "doc shards",
            start: {
                context.shards.all.forEach { $0.start() }
                context.yjsRooms.start()
            },
            stop: {
                context.yjsRooms.stop()
                let flushes = context.shards.all.map { $0.shutdown() } + context.yjsRooms.shards.map { $0.removeAllAwareness() }
                if let loop = flushes.first?.eventLoop {
                    await EventLoopFuture.andAllComplete(flushes, on: loop).wait(atMost: presenceRemovalTimeout)
                }
            })
        add(
            "websocket server",
            start: {
                let wsPort = try await server.start()
                context.ports.withLockedValue { $0 = (wsPort, ops.boundPort) }
                var metadata: Logger.Metadata = [
                    "node": "\(configuration.nodeID)", "port": "\(wsPort)", "ops.port": "\(ops.boundPort)",
                    "ws": "ws://\(configuration.host):\(wsPort)/v1/ws",
                    "ops": "http://\(configuration.opsHost):\(ops.boundPort)/",
                    "auth": "\(authMode(configuration))",
                ]
                if let demo = demoURL(configuration, opsPort: ops.boundPort) { metadata["demo"] = "\(demo)" }
                logger.info("listening", metadata: metadata)
            },
            stop: {
                await server.stopAccepting()
                await server.closeAllClients(timeout: clientCloseTimeout)
            })
        add(
            "housekeeping",
            start: {
                let task = group.next().scheduleRepeatedTask(initialDelay: housekeepingInterval, delay: housekeepingInterval) { _ in
                    Self.housekeeping(context)
                }
                housekeeping.withLockedValue { $0 = task }
            },
            stop: {
                logger.info("shutting down")
                housekeeping.withLockedValue { $0?.cancel() }
            })
        return services
    }

    /// What the node does on its Redis clients' events.
    ///
    /// Command connection up or down: pushes are refused at once while Redis is down, and committed again
    /// (and presence re-registered) once it is back. In a cluster this is per shard: while one shard's
    /// primary is down (failing over), only the docs whose slot it serves refuse pushes; the others keep
    /// committing (issue 11). "Up" for the node as a whole (metric, re-registration) means every slot
    /// has a primary whose connection is up.
    ///
    /// Pub/sub: each doc channel's messages go to the doc's shard. Whatever was published while a channel
    /// was not subscribed is lost, so every re-subscription is followed by a check of the doc against Redis
    /// (its head, then its log: sync stays gap-free; its presence). With a single Redis all channels share
    /// one connection, re-subscribed together (`ready`: every doc is checked); in a cluster channels move
    /// one by one (a failover moves a shard's channels, a slot migration a slot's), so each confirmed
    /// subscription checks its doc (`subscribed`). A doc's first subscription is checked the same way in
    /// both modes: the doc's first read runs on another connection and may predate the SUBSCRIBE.
    private static func redisHandlers(_ context: NodeContext) -> RedisHooks.Handlers {
        // A node hears its own messages back: presence it applied already, commits it delivered from
        // the commit script's reply. Skip them by their first bytes, before decoding (decoding every
        // entry of every echo was a sizeable part of a busy node's CPU).
        let ownMessages = NodeMessage.ownPrefixes(node: context.config.nodeID)
        let yjsChannelPrefix = Array("tandem:yjs:".utf8)
        // Shares each remote session's unchanging fields between its entries, delta after delta (a lock:
        // in a cluster each shard's subscriber calls this from its own thread).
        let decoder = NIOLockedValueBox(NodeMessageDecoder())
        let (shards, redis, yjsRooms) = (context.shards, context.redis, context.yjsRooms)
        return RedisHooks.Handlers(
            connectionStateChanged: { up in
                context.metrics.redisUp.set(to: up ? 1 : 0)
                guard up else { return }
                context.logger.info("redis connected; re-registering presence")
                context.shards.all.forEach { $0.redisRecovered(rewrite: true) }
            },
            availabilityChanged: {
                context.shards.all.forEach { $0.redisAvailabilityChanged() }
            },
            messages: { messages in
                // Decoded here, on the subscriber's thread; each shard gets its messages of the read in
                // one hop (a busy node reads several docs' deltas at once: one `execute` per message was a
                // task, a wake-up and a closure each on the shard's loop).
                var routed = RemoteMessageRouting()
                for index in messages.indices {
                    let (channel, payload) = (messages[index].channel, messages[index].payload)
                    // (By bytes: `String.hasPrefix` compares characters, for every message.)
                    if channel.utf8.withContiguousStorageIfAvailable({ $0.starts(with: yjsChannelPrefix) }) ?? channel.hasPrefix("tandem:yjs:") {
                        yjsRooms.received(channel: channel, payload: payload)
                        continue
                    }
                    guard !ownMessages.contains(where: { payload.starts(with: $0) }) else { continue }
                    let arrivedNanos = context.clock.nowNanos()
                    guard let doc = RedisKeys.doc(fromChannel: channel),
                        let message = decoder.withLockedValue({ $0.decode(payload) })
                    else { continue }
                    routed.append(DocShard.RemoteMessage(message: message, doc: doc, arrivedNanos: arrivedNanos), to: shards.shard(for: doc))
                }
                routed.send()
            },
            ready: {
                yjsRooms.subscriberReady()
                guard !redis.isClusterMode else { return }
                shards.all.forEach { $0.redisRecovered(rewrite: false) }
            },
            subscribed: { channel in
                guard let doc = RedisKeys.doc(fromChannel: channel) else { return }
                shards.shard(for: doc).channelResubscribed(doc: doc)
            },
            subscriberStateChanged: { up in
                // Presence writes stop counting this node among a channel's subscribers until Redis confirms
                // the channel again (`subscribed`, which comes after this on a reconnect).
                guard !up else { return }
                shards.all.forEach { $0.channelsLost() }
            })
    }

    /// The bound client port (useful with `--port 0`).
    public var port: Int { context.ports.withLockedValue { $0.ws } }
    public var opsPort: Int { context.ports.withLockedValue { $0.ops } }

    /// Runs every component until the group this node runs in shuts down gracefully (SIGTERM/SIGINT in
    /// `tandem serve`), then stops them in reverse order. Throws the first component's failure.
    public func run() async throws {
        try await serviceGroup.run()
        logger.info("stopped")
    }

    /// Starts the node in the background and returns once it listens (for tests and embedding); stop it
    /// with `shutdown()`.
    public func start() async throws {
        let task = Task { try await self.run() }
        background.withLockedValue { $0 = task }
        do {
            try await services.last?.started.wait()
        } catch let failure as StartupStep.PreviousStepFailed {
            _ = try? await task.value
            throw failure.underlying
        }
    }

    /// Reads `--schema-dir` again (what `tandem serve` does on SIGHUP). On success the new schemas apply to
    /// every push decided from now on, in every loaded doc; on failure (a file is invalid) the schemas in
    /// force stay and the error is logged and returned. Returns nil without `--schema-dir`. Returns once
    /// every loaded doc decides with the new schemas (a push read after it is checked against them).
    @discardableResult
    public func reloadSchemas() async -> Result<Int, any Error>? {
        guard let outcome = context.schemas.reload() else { return nil }
        switch outcome {
        case .success(let registry):
            await context.shards.schemasChanged(context.schemas)
            logger.info(
                "record schemas reloaded",
                metadata: ["schemas.files": "\(registry.schemas.count)", "schemas.dir": "\(context.schemas.directory ?? "")"])
            return .success(registry.schemas.count)
        case .failure(let error):
            logger.error("record schemas not reloaded; the previous ones stay in force", metadata: ["error": "\(error)"])
            return .failure(error)
        }
    }

    /// Seals `doc`'s history up to its head now instead of at housekeeping's next ticks (see
    /// `HistorySealer.sealToHead`); the sealed clock. Internal: for tests (`@testable`).
    func sealHistory(_ doc: String) async throws -> UInt64 {
        try await context.sealer.sealToHead(doc, on: context.shards.all[0].eventLoop).get()
    }

    /// The shard serving `doc`. Internal: for tests (`@testable`) that act on a shard's loop.
    func shard(for doc: String) -> DocShard { context.shards.shard(for: doc) }

    /// The event loop of a session's open connection on this node. Internal: for tests (`@testable`).
    func eventLoop(ofSession sessionID: String) -> (any EventLoop)? { context.registry.connection(of: sessionID)?.eventLoop }

    /// Graceful shutdown of a node started with `start()`: the services stop in reverse order (see
    /// `makeServices`).
    public func shutdown() async {
        await serviceGroup.triggerGracefulShutdown()
        _ = try? await background.withLockedValue({ $0 })?.value
    }

    /// The demo's address on the ops port when the web root has it (the `Web/` tree), for the `listening` line.
    private static func demoURL(_ configuration: ServerConfiguration, opsPort: Int) -> String? {
        guard let root = configuration.webRoot, FileManager.default.fileExists(atPath: root + "/demo/index.html") else {
            return nil
        }
        return "http://\(configuration.opsHost):\(opsPort)/demo/"
    }

    /// How clients are authenticated, for the `listening` line.
    private static func authMode(_ configuration: ServerConfiguration) -> String {
        if configuration.jwtSecret != nil { return "jwt" }
        return configuration.insecureDevMode
            ? "INSECURE-development-mode(anyone-reaching-this-port-is-any-user)" : "development(loopback-only)"
    }

    /// Once a second: storm state, queue gauges, session-key refreshes, the status sample and the directory
    /// heartbeat.
    private static func housekeeping(_ context: NodeContext) {
        context.storm.evaluate()
        if context.storm.snapshot().inStorm { context.holdDetachedSessions() }
        context.metrics.redisQueueDepth.set(to: Double(context.redis.pendingCommandCount))
        let loop = context.shards.all[0].eventLoop
        context.redisMemory.sample(nowNanos: context.clock.nowNanos(), on: loop)
        let connections = context.registry.allConnections
        context.sessions.refreshOpenSessions(
            connections.map { ($0.id, $0.sessionID, $0.identity.user) }, second: context.clock.nowMs() / 1000, on: loop)
        // Outbound bytes must be read on each connection's own loop.
        let byLoop = Dictionary(grouping: connections) { ObjectIdentifier($0.eventLoop) }
        let readings = byLoop.values.map { group in
            group[0].eventLoop.submit { group.map { (ObjectIdentifier($0), $0.outboundBytes()) } }
        }
        let outbound = EventLoopFuture.whenAllSucceed(readings, on: loop).map { Dictionary($0.flatMap { $0 }) { a, _ in a } }
        let docs = EventLoopFuture.whenAllSucceed(context.shards.all.map { $0.status() }, on: loop).map { $0.flatMap { $0 } }
        outbound.and(docs).whenSuccess { outbound, docs in
            context.metrics.outboundQueueBytes.set(to: Double(outbound.values.reduce(0, +)))
            context.sampler.sample(metrics: context.metrics, docs: docs, outbound: outbound)
            context.sealer.tick(
                heads: Dictionary(docs.compactMap { doc in doc.headClock.map { (doc.doc, $0) } }) { a, _ in a },
                nowMs: context.clock.wallMs(), on: loop)
            let entry = context.directoryEntry(docs: docs.count, sessions: docs.reduce(0) { $0 + $1.localMembers })
            _ = context.directory.beat(entry, on: loop)
        }
    }
}
