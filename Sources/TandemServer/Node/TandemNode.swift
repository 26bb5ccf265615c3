import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TandemCore
import TandemOpsHTTP
import TandemRedis

/// One Tandem node: the WebSocket data plane, the doc shards, the Redis connections and the ops server,
/// started in dependency order and stopped in reverse.
public final class TandemNode: Sendable {
    public let configuration: ServerConfiguration
    public let metrics: TandemMetrics
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let context: NodeContext
    private let server: WebSocketServer
    private let ops: OpsHTTPServer
    private let housekeeping = NIOLockedValueBox<RepeatedTask?>(nil)

    /// Builds the node; nothing listens or connects until `start()`.
    public init(configuration: ServerConfiguration, logger: Logger, eventLoopThreads: Int = System.coreCount) async throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        let metrics = TandemMetrics(nodeID: configuration.nodeID)
        self.metrics = metrics
        let endpoint = try RedisEndpoint(url: configuration.redisURL)
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, eventLoopThreads))

        // The Redis hooks need the context, which needs the clients: bind them late.
        let late = NIOLockedValueBox<NodeContext?>(nil)
        var redisConfig = RedisClient.Configuration(endpoint: endpoint)
        redisConfig.onConnectionStateChange = { up in
            metrics.redisUp.set(to: up ? 1 : 0)
            guard let context = late.withLockedValue({ $0 }) else { return }
            // Pushes are refused at once while Redis is down, and committed again once it is back.
            context.shards.forEach { $0.redisAvailabilityChanged(up) }
            guard up else { return }
            context.logger.info("redis connected; re-registering presence")
            context.shards.forEach { $0.redisRecovered(rewrite: true) }
        }
        redisConfig.commandObserver = { seconds in metrics.redisCommandSeconds.record(seconds) }
        var redisLogger = logger
        redisLogger[metadataKey: "redis.endpoint"] = "\(endpoint)"
        let redis = RedisClient(configuration: redisConfig, logger: redisLogger)

        // A node hears its own messages back: presence it applied already, commits it delivered from
        // the commit script's reply. Skip them by their first bytes, before decoding (decoding every
        // entry of every echo was a sizeable part of a busy node's CPU).
        let ownMessages = NodeMessage.ownPrefixes(node: configuration.nodeID)
        var subscriberConfig = RedisSubscriber.Configuration(endpoint: endpoint) { channel, payload in
            guard !ownMessages.contains(where: { payload.starts(with: $0) }) else { return }
            guard let context = late.withLockedValue({ $0 }), let doc = RedisKeys.doc(fromChannel: channel),
                let message = NodeMessage.decode(payload)
            else { return }
            context.shard(for: doc).received(message, doc: doc)
        }
        subscriberConfig.onReady = {
            // Re-subscribed after a (re)connect: whatever was published in the gap is lost, so check every
            // doc against Redis.
            late.withLockedValue { $0 }?.shards.forEach { $0.redisRecovered(rewrite: false) }
        }
        let subscriber = RedisSubscriber(configuration: subscriberConfig, logger: redisLogger)

        let context = NodeContext(
            config: configuration, metrics: metrics, logger: logger, redis: redis, subscriber: subscriber,
            loops: Array(group.makeIterator()))
        late.withLockedValue { $0 = context }
        self.context = context

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
        server = WebSocketServer(node: context, authenticator: authenticator, group: group)

        let opsMetrics = OpsMetrics(registry: metrics.registry)
        let routes = OpsRoutes(
            node: context, webRoot: configuration.webRoot, metrics: opsMetrics, token: configuration.opsToken,
            maxListItems: configuration.opsMaxListItems)
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
    }

    /// The bound client port (useful with `--port 0`).
    public var port: Int { context.ports.withLockedValue { $0.ws } }
    public var opsPort: Int { context.ports.withLockedValue { $0.ops } }

    public func start() async throws {
        context.redis.start()
        context.subscriber.start()
        context.shards.forEach { $0.start() }
        let wsPort = try await server.start()
        try ops.start()
        context.ports.withLockedValue { $0 = (wsPort, ops.boundPort) }
        let context = self.context
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            Self.housekeeping(context)
        }
        housekeeping.withLockedValue { $0 = task }
        logger.info(
            "listening",
            metadata: [
                "node": "\(configuration.nodeID)", "port": "\(wsPort)", "ops.port": "\(ops.boundPort)",
                "ws": "ws://\(configuration.host):\(wsPort)/v1/ws",
                "ops": "http://\(configuration.opsHost):\(ops.boundPort)/",
                "auth": "\(authMode)",
            ])
    }

    /// How clients are authenticated, for the `listening` line.
    private var authMode: String {
        if configuration.jwtSecret != nil { return "jwt" }
        return configuration.insecureDevMode
            ? "INSECURE-development-mode(anyone-reaching-this-port-is-any-user)" : "development(loopback-only)"
    }

    /// Once a second: storm state, queue gauges, the status sample and the directory heartbeat.
    private static func housekeeping(_ context: NodeContext) {
        context.storm.evaluate()
        if context.storm.snapshot().inStorm { context.holdDetachedSessions() }
        context.metrics.redisQueueDepth.set(to: Double(context.redis.pendingCommandCount))
        let loop = context.shards[0].eventLoop
        context.redisMemory.sample(nowNanos: context.clock.nowNanos(), on: loop)
        // Outbound bytes must be read on each connection's own loop.
        let byLoop = Dictionary(grouping: context.registry.allConnections) { ObjectIdentifier($0.eventLoop) }
        let readings = byLoop.values.map { group in
            group[0].eventLoop.submit { group.map { (ObjectIdentifier($0), $0.outboundBytes()) } }
        }
        let outbound = EventLoopFuture.whenAllSucceed(readings, on: loop).map { Dictionary($0.flatMap { $0 }) { a, _ in a } }
        let docs = EventLoopFuture.whenAllSucceed(context.shards.map { $0.status() }, on: loop).map { $0.flatMap { $0 } }
        outbound.and(docs).whenSuccess { outbound, docs in
            context.metrics.outboundQueueBytes.set(to: Double(outbound.values.reduce(0, +)))
            context.sampler.sample(metrics: context.metrics, docs: docs, outbound: outbound)
            let entry = context.directoryEntry(docs: docs.count, sessions: docs.reduce(0) { $0 + $1.localMembers })
            _ = context.directory.beat(entry, on: loop)
        }
    }

    /// Graceful shutdown: stop accepting, close clients with 1001, remove this node's presence from
    /// Redis, then close Redis, the ops server and the event loops.
    public func shutdown() async {
        logger.info("shutting down")
        housekeeping.withLockedValue { $0?.cancel() }
        await server.stopAccepting()
        await server.closeAllClients(timeout: .seconds(3))
        let flushes = context.shards.map { $0.shutdown() }
        if let loop = flushes.first?.eventLoop {
            await EventLoopFuture.andAllComplete(flushes, on: loop).wait(atMost: .seconds(3))
        }
        ops.stop()
        await context.directory.beat(context.directoryEntry(docs: 0, sessions: 0, state: "stopped"), stopping: true, on: group.next())
            .wait(atMost: .seconds(1))
        await context.subscriber.shutdown()
        await context.redis.shutdown()
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }
}
