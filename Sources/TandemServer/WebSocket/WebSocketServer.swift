import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import TandemCore

/// The client data plane: `GET /v1/ws` upgraded to WebSocket (SwiftNIO's codec), with admission
/// control and authentication decided before the upgrade.
final class WebSocketServer: Sendable {
    private let node: NodeContext
    private let authenticator: Authenticator
    private let admission: HandshakeAdmission
    private let group: EventLoopGroup
    private let serverChannel = NIOLockedValueBox<Channel?>(nil)
    private let draining = NIOLockedValueBox(false)
    private let nextConnectionID = NIOLockedValueBox<UInt64>(0)

    init(node: NodeContext, authenticator: Authenticator, group: EventLoopGroup) {
        self.node = node
        self.authenticator = authenticator
        self.admission = HandshakeAdmission(maxPerSecond: node.config.maxNewConnectionsPerSecond)
        self.group = group
    }

    /// Binds and starts accepting; returns the bound port.
    func start() async throws -> Int {
        let config = node.config
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: config.outboundLowWaterBytes, high: config.outboundHighWaterBytes)
            )
            .childChannelInitializer { [self] channel in
                self.initializeChild(channel)
            }
        let channel = try await bootstrap.bind(host: config.host, port: config.port).get()
        serverChannel.withLockedValue { $0 = channel }
        return channel.localAddress?.port ?? config.port
    }

    /// Stops accepting new connections (existing ones stay until closed).
    func stopAccepting() async {
        draining.withLockedValue { $0 = true }
        let channel = serverChannel.withLockedValue { $0 }
        try? await channel?.close()
    }

    private func initializeChild(_ channel: Channel) -> EventLoopFuture<Void> {
        let state = HandshakeState()
        let fallback = HandshakeFallbackHandler(state: state)
        let config = node.config
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: config.maxFrameBytes,
            automaticErrorHandling: true,
            shouldUpgrade: { [self] channel, head in
                self.evaluate(channel: channel, head: head, state: state)
            },
            upgradePipelineHandler: { [self] channel, _ in
                // The fallback sits before the WebSocket codec; once upgraded it must not see frames.
                channel.pipeline.syncOperations.removeHandler(fallback, promise: nil)
                return self.upgraded(channel: channel, state: state)
            })
        return channel.pipeline.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            withErrorHandling: true
        ).flatMapThrowing {
            try channel.pipeline.syncOperations.addHandler(fallback)
        }
    }

    /// Decides a handshake: path, drain state, admission rate, authentication, connection limits, resume.
    /// Returning nil hands the request to `HandshakeFallbackHandler`, which answers with the rejection.
    private func evaluate(channel: Channel, head: HTTPRequestHead, state: HandshakeState) -> EventLoopFuture<HTTPHeaders?> {
        let loop = channel.eventLoop
        let (path, query) = QueryString.parse(uri: head.uri)
        @Sendable func reject(_ status: HTTPResponseStatus, _ error: String, _ message: String, headers: [(String, String)] = [])
            -> EventLoopFuture<HTTPHeaders?>
        {
            state.decision = .rejected(.init(status: status, error: error, message: message, headers: headers))
            return loop.makeSucceededFuture(nil)
        }
        guard path == "/v1/ws" else {
            return reject(.notFound, "not_found", "the client endpoint is /v1/ws")
        }
        if draining.withLockedValue({ $0 }) {
            node.metrics.admissionRejected[.draining]!.increment()
            return reject(.serviceUnavailable, "draining", "this node is shutting down", headers: [("Retry-After", "1")])
        }
        if let retryAfter = admission.admit() {
            node.metrics.admissionRejected[.rate]!.increment()
            node.holdDetachedSessions()
            return reject(
                .serviceUnavailable, "overloaded", "too many new connections; retry after the delay",
                headers: [("Retry-After", "\(retryAfter)")])
        }
        let authorization = head.headers.first(name: "Authorization")
        let promise = loop.makePromise(of: Result<Identity, AuthenticationError>.self)
        let authenticator = self.authenticator
        promise.completeWithTask { await authenticator.authenticate(query: query, authorization: authorization) }
        return promise.futureResult.flatMap { [self] result in
            switch result {
            case .failure(let error):
                self.node.metrics.admissionRejected[.unauthorized]!.increment()
                return reject(.unauthorized, "unauthorized", error.message, headers: [("WWW-Authenticate", "Bearer")])
            case .success(let identity):
                let config = self.node.config
                if let full = self.node.registry.reserveSlot(
                    user: identity.user, maxTotal: config.maxConnections, maxPerUser: config.maxConnectionsPerUser)
                {
                    self.node.metrics.admissionRejected[full]!.increment()
                    if full == .userFull {
                        return reject(
                            .tooManyRequests, "too_many_connections",
                            "at most \(config.maxConnectionsPerUser) connections per user", headers: [("Retry-After", "5")])
                    }
                    return reject(
                        .serviceUnavailable, "node_full", "this node is at --max-connections",
                        headers: [("Retry-After", "\(Int.random(in: 1...5))")])
                }
                let registry = self.node.registry
                channel.closeFuture.whenComplete { _ in registry.releaseSlot(user: identity.user) }
                // Only the session's own user may take it over: this node knows the owners of its open and
                // recently ended sessions; Redis knows them cluster-wide.
                guard let resume = query["resume"], SessionID.isValid(resume),
                    registry.owner(of: resume).map({ $0 == identity.user }) ?? true
                else {
                    let sessionID = SessionID.make()
                    _ = self.node.sessions.claim(sessionID, user: identity.user, on: loop)
                    state.decision = .accepted(.init(identity: identity, sessionID: sessionID, resumed: false))
                    return loop.makeSucceededFuture(HTTPHeaders())
                }
                return self.node.sessions.claim(resume, user: identity.user, on: loop).map { claimed in
                    let resumed = claimed ?? true
                    let sessionID = resumed ? resume : SessionID.make()
                    if !resumed { _ = self.node.sessions.claim(sessionID, user: identity.user, on: loop) }
                    state.decision = .accepted(.init(identity: identity, sessionID: sessionID, resumed: resumed))
                    return HTTPHeaders()
                }
            }
        }
    }

    private func upgraded(channel: Channel, state: HandshakeState) -> EventLoopFuture<Void> {
        guard case .accepted(let accepted)? = state.decision else { return channel.close() }
        let id = nextConnectionID.withLockedValue { id in
            id += 1
            return id
        }
        let connection = ClientConnection(
            id: id, sessionID: accepted.sessionID, identity: accepted.identity, resumed: accepted.resumed,
            channel: channel, node: node)
        if let replaced = node.registry.register(connection), replaced !== connection {
            replaced.eventLoop.execute {
                replaced.close(code: .normalClosure, reason: .resumed, text: "session resumed on a new connection")
            }
        }
        let config = node.config
        do {
            try channel.pipeline.syncOperations.addHandlers([
                NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024,
                    maxAccumulatedFrameSize: config.maxFrameBytes),
                ConnectionHandler(connection: connection),
            ])
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// Closes every client with 1001 (going away) and waits until they are gone (at most `timeout`).
    func closeAllClients(timeout: TimeAmount) async {
        let connections = node.registry.allConnections
        let closed = connections.map { connection in
            connection.eventLoop.execute {
                connection.close(code: .goingAway, reason: .shutdown, text: "server shutting down")
            }
            return connection.channel.closeFuture
        }
        guard let loop = closed.first?.eventLoop else { return }
        await EventLoopFuture.andAllComplete(closed, on: loop).wait(atMost: timeout)
    }
}
