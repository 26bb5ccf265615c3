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
    private let config: ServerConfiguration
    private let metrics: TandemMetrics
    private let clock: NodeClock
    private let registry: SessionRegistry
    private let sessions: SessionOwnership
    private let shards: DocShards
    /// What each accepted connection gets (explicitly: connections hold no node).
    private let connectionDependencies: ConnectionDependencies
    private let yjsRooms: YjsRooms
    private let yjsSettings: YjsConnection.Settings
    private let logger: Logger
    private let authenticator: Authenticator
    private let originPolicy: OriginPolicy
    private let admission: HandshakeAdmission
    private let group: EventLoopGroup
    private let serverChannel = NIOLockedValueBox<Channel?>(nil)
    private let draining = NIOLockedValueBox(false)
    private let nextConnectionID = NIOLockedValueBox<UInt64>(0)
    /// Sockets accepted and not upgraded (nor closed) yet; at most `--max-pending-handshakes`, the oldest
    /// displaced by a newcomer at the limit.
    private let pendingHandshakes: NIOLockedValueBox<PendingHandshakeQueue<Channel>>

    /// Accepted-but-not-yet-taken connections the kernel queues: a reconnect storm arrives in thousands
    /// within a second, and admission (not the kernel dropping SYNs) is what should shed them.
    static let listenBacklog: Int32 = 4096
    /// Reads per socket per event-loop turn: one busy client cannot starve the others on its loop.
    static let maxMessagesPerRead: UInt = 16
    /// Fragments one message may arrive in (the byte bound is `--max-frame-bytes`): a client sending a
    /// message a byte per fragment costs a frame header and a decode per byte.
    static let maxFragmentsPerMessage = 1024

    init(dependencies: WebSocketServerDependencies, authenticator: Authenticator, group: EventLoopGroup) {
        self.config = dependencies.config
        self.metrics = dependencies.metrics
        self.clock = dependencies.clock
        self.registry = dependencies.registry
        self.sessions = dependencies.sessions
        self.shards = dependencies.shards
        self.connectionDependencies = dependencies.connection
        self.yjsRooms = dependencies.yjsRooms
        self.yjsSettings = dependencies.yjsSettings
        self.logger = dependencies.logger
        let config = dependencies.config
        self.authenticator = authenticator
        // `ServerConfiguration.validate()` refused bad entries before the node started; should one get
        // here anyway, only this machine's pages are allowed rather than every page.
        self.originPolicy = (try? config.originPolicy) ?? .modeDefault(developmentMode: true)
        self.admission = HandshakeAdmission(
            maxPerSecond: config.maxNewConnectionsPerSecond,
            maxAttemptsPerSecond: config.handshakeAttemptsPerSecond, nowMs: dependencies.admissionNowMs)
        self.group = group
        self.pendingHandshakes = NIOLockedValueBox(PendingHandshakeQueue(limit: config.maxPendingHandshakes))
    }

    /// Binds and starts accepting; returns the bound port.
    func start() async throws -> Int {
        let config = self.config
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Self.listenBacklog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: Self.maxMessagesPerRead)
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

    /// Sets up an accepted socket's pipeline for the handshake (internal for HandshakeLayerTests, which
    /// hand it in-memory channels).
    func initializeChild(_ channel: Channel) -> EventLoopFuture<Void> {
        let config = self.config
        let state = HandshakeState.Box(HandshakeState(), eventLoop: channel.eventLoop)
        state.value.pendingID = addPendingHandshake(channel)
        // Until upgraded, the socket is pending: counted, and closed if still pending after the timeout
        // (a client that sends nothing, or its request a byte at a time).
        let metrics = metrics
        state.value.timeout = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(config.handshakeTimeoutMs))) {
            guard state.value.isPending else { return }
            metrics.handshakeTimeouts.increment()
            channel.close(promise: nil)
        }
        channel.closeFuture.whenComplete { [self] _ in self.finishPendingHandshake(state) }
        // Reached from the upgrader's callbacks, which run on this loop: bound to it (a handler is not Sendable).
        let fallback = NIOLoopBound(HandshakeFallbackHandler(state: state), eventLoop: channel.eventLoop)
        // NIO's handshake; the frame decoder is added per endpoint (`upgraded`: `/v1/ws` decodes frames itself).
        let upgrader = WebSocketServerUpgrader(
            shouldUpgrade: { [self] channel, head in
                self.evaluate(channel: channel, head: head, state: state)
            },
            upgradePipelineHandler: { [self] channel, _ in
                self.finishPendingHandshake(state)
                // The fallback sits before the WebSocket codec; once upgraded it must not see frames.
                channel.pipeline.syncOperations.removeHandler(fallback.value, promise: nil)
                return self.upgraded(channel: channel, state: state)
            })
        return channel.pipeline.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            withErrorHandling: true
        ).flatMapThrowing {
            try channel.pipeline.syncOperations.addHandler(fallback.value)
        }
    }

    /// Counts a new socket as pending; at `--max-pending-handshakes` the oldest pending socket is closed to
    /// make room (see `PendingHandshakeQueue` for why the oldest, not the newcomer).
    private func addPendingHandshake(_ channel: Channel) -> UInt64 {
        let (id, displaced) = pendingHandshakes.withLockedValue { $0.add(channel) }
        if let displaced {
            metrics.admissionRejected[.pendingFull]!.increment()
            displaced.close(promise: nil)
        } else {
            metrics.handshakesPending.increment()
        }
        return id
    }

    /// The socket was upgraded or closed: it no longer counts as pending (once, whichever comes first).
    /// Called on the socket's event loop.
    private func finishPendingHandshake(_ state: HandshakeState.Box) {
        guard state.value.isPending else { return }
        state.value.isPending = false
        state.value.timeout?.cancel()
        state.value.timeout = nil
        // A displaced socket left the queue (and the gauge) when it was displaced.
        if pendingHandshakes.withLockedValue({ $0.remove(state.value.pendingID) }) {
            metrics.handshakesPending.decrement()
        }
    }

    /// Decides a handshake: path, drain state, attempt rate, Origin, protocol version, authentication, admission rate, connection
    /// limits, resume. Returning nil hands the request to `HandshakeFallbackHandler`, which answers with
    /// the rejection.
    ///
    /// The admission rate is taken only after the token was accepted, so refused handshakes (junk) do not
    /// use it up, and only refusals of authenticated handshakes renew the storm grace: a flood of bad
    /// tokens neither locks users out nor keeps lost sessions alive.
    private func evaluate(channel: Channel, head: HTTPRequestHead, state: HandshakeState.Box) -> EventLoopFuture<HTTPHeaders?> {
        let loop = channel.eventLoop
        let (path, query) = QueryString.parse(uri: head.uri)
        @Sendable func reject(_ status: HTTPResponseStatus, _ error: String, _ message: String, headers: [(String, String)] = [])
            -> EventLoopFuture<HTTPHeaders?>
        {
            state.value.decision = .rejected(.init(status: status, error: error, message: message, headers: headers))
            return loop.makeSucceededFuture(nil)
        }
        let yjsRoom = YjsPath.room(inPath: path)
        let requestedVersion = ProtocolVersion.requested(inPath: path)
        if requestedVersion == nil, yjsRoom == nil {
            if path.hasPrefix(YjsPath.prefix) {
                return reject(
                    .notFound, "not_found",
                    "/yjs/{room}: the room is a doc id, 1–\(DocID.maxLength) characters of [A-Za-z0-9._:-]")
            }
            return reject(.notFound, "not_found", "the client endpoints are /v1/ws and /yjs/{room}")
        }
        if draining.withLockedValue({ $0 }) {
            metrics.admissionRejected[.draining]!.increment()
            return reject(.serviceUnavailable, "draining", "this node is shutting down", headers: [("Retry-After", "1")])
        }
        if let retryAfter = admission.attempt() {
            metrics.admissionRejected[.attemptRate]!.increment()
            return reject(
                .serviceUnavailable, "overloaded", "too many handshakes; retry after the delay",
                headers: [("Retry-After", "\(retryAfter)")])
        }
        // Before the token is checked: a refused page costs no HMAC (and still counts in the attempt rate).
        if !originPolicy.allows(origin: head.headers.first(name: "Origin"), hostHeader: head.headers.first(name: "Host")) {
            metrics.admissionRejected[.origin]!.increment()
            return reject(
                .forbidden, "origin_not_allowed",
                "web pages from this Origin may not connect; the operator lists allowed ones in --allowed-origins")
        }
        if let requestedVersion, let refusal = ProtocolVersion.negotiate(requestedVersion).refusal {
            // Nothing to authenticate for: the socket is closed right after the upgrade.
            metrics.admissionRejected[.protocolVersion]!.increment()
            state.value.decision = .unsupportedVersion(code: refusal.code, reason: refusal.reason)
            return loop.makeSucceededFuture(HTTPHeaders())
        }
        let authorization = head.headers.first(name: "Authorization")
        let promise = loop.makePromise(of: Result<Identity, AuthenticationError>.self)
        let authenticator = self.authenticator
        promise.completeWithTask { await authenticator.authenticate(query: query, authorization: authorization) }
        return promise.futureResult.flatMap { [self] result in
            switch result {
            case .failure(let error):
                self.metrics.admissionRejected[.unauthorized]!.increment()
                return reject(.unauthorized, "unauthorized", error.message, headers: [("WWW-Authenticate", "Bearer")])
            case .success(let identity):
                if let retryAfter = self.admission.admit() {
                    self.metrics.admissionRejected[.rate]!.increment()
                    // A real client was turned away: keep lost sessions resumable while it waits.
                    self.shards.holdDetachedSessions(nowMs: self.clock.nowMs())
                    return reject(
                        .serviceUnavailable, "overloaded", "too many new connections; retry after the delay",
                        headers: [("Retry-After", "\(retryAfter)")])
                }
                let config = self.config
                var yjsRole: Role?
                if let yjsRoom {
                    // Refused before a slot is taken. The room is a doc id: the same grants apply.
                    guard let role = identity.access.role(for: yjsRoom) else {
                        self.metrics.protocolError(.forbidden)
                        return reject(.forbidden, "forbidden", "your token grants no access to this room")
                    }
                    yjsRole = role
                }
                if let full = self.registry.reserveSlot(
                    user: identity.user, maxTotal: config.maxConnections, maxPerUser: config.maxConnectionsPerUser)
                {
                    self.metrics.admissionRejected[full]!.increment()
                    if full == .userFull {
                        return reject(
                            .tooManyRequests, "too_many_connections",
                            "at most \(config.maxConnectionsPerUser) connections per user", headers: [("Retry-After", "5")])
                    }
                    return reject(
                        .serviceUnavailable, "node_full", "this node is at --max-connections",
                        headers: [("Retry-After", "\(Int.random(in: 1...5))")])
                }
                let registry = self.registry
                channel.closeFuture.whenComplete { _ in registry.releaseSlot(user: identity.user) }
                if let yjsRoom, let yjsRole {
                    state.value.decision = .acceptedYjs(.init(identity: identity, room: yjsRoom, role: yjsRole))
                    return loop.makeSucceededFuture(HTTPHeaders())
                }
                // Only the session's own user may take it over: this node knows the owners of its open and
                // recently ended sessions; Redis knows them cluster-wide.
                let resume = query["resume"].flatMap { SessionID.isValid($0) ? $0 : nil }
                let knownOwner = resume.flatMap { registry.owner(of: $0) }
                guard let resume, knownOwner.map({ $0 == identity.user }) ?? true else {
                    let sessionID = SessionID.make()
                    _ = self.sessions.claim(sessionID, user: identity.user, on: loop)
                    state.value.decision = .accepted(.init(identity: identity, sessionID: sessionID, resumed: false))
                    return loop.makeSucceededFuture(HTTPHeaders())
                }
                return self.sessions.claim(resume, user: identity.user, on: loop).map { claimed in
                    // Ownership unknown (Redis unreachable): refuse, unless this node itself knows the session
                    // is this user's. Granting it let anyone take over any session during an outage.
                    let resumed = claimed ?? (knownOwner == identity.user)
                    let sessionID = resumed ? resume : SessionID.make()
                    if !resumed { _ = self.sessions.claim(sessionID, user: identity.user, on: loop) }
                    state.value.decision = .accepted(.init(identity: identity, sessionID: sessionID, resumed: resumed))
                    return HTTPHeaders()
                }
            }
        }
    }

    private func upgraded(channel: Channel, state: HandshakeState.Box) -> EventLoopFuture<Void> {
        if case .accepted(let accepted)? = state.value.decision { return upgradedClient(channel: channel, accepted: accepted) }
        // Everything else gets NIO's frame decoder, as from NIO's upgrader.
        do {
            try WebSocketServerUpgrader.addNIODecoder(to: channel, maxFrameSize: config.maxFrameBytes)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        if case .unsupportedVersion(let code, let reason)? = state.value.decision {
            var payload = channel.allocator.buffer(capacity: 2 + reason.utf8.count)
            payload.writeInteger(UInt16(code))
            payload.writeString(reason)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)).whenComplete { _ in
                channel.close(promise: nil)
            }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        if case .acceptedYjs(let accepted)? = state.value.decision {
            return upgradedYjs(channel: channel, accepted: accepted)
        }
        return channel.close()
    }

    /// A `/v1/ws` client: the frame encoder (from the upgrader), then its connection's handler, which
    /// decodes frames itself (`InboundFrameDecoder`).
    private func upgradedClient(channel: Channel, accepted: HandshakeState.Accepted) -> EventLoopFuture<Void> {
        let id = nextConnectionID.withLockedValue { id in
            id += 1
            return id
        }
        let preframed = PreframedWriter()
        let connection = ClientConnection(
            id: id, sessionID: accepted.sessionID, identity: accepted.identity, resumed: accepted.resumed,
            channel: channel, dependencies: connectionDependencies, preframed: preframed)
        if let replaced = registry.register(connection), replaced !== connection {
            replaced.eventLoop.execute {
                replaced.close(.resumedElsewhere)
            }
        }
        do {
            // Next to the socket, before the WebSocket encoder: frames written from there skip it.
            try channel.pipeline.syncOperations.addHandler(preframed, position: .first)
            // The connection's handler decodes frames (`InboundFrameDecoder`) and puts fragments together
            // (`FrameAssembler`) itself, with NIO's limits and errors: no decoder, error handler or
            // aggregator in front of it.
            try channel.pipeline.syncOperations.addHandler(
                ConnectionHandler(
                    connection: connection, maxFrameBytes: config.maxFrameBytes, maxFragments: Self.maxFragmentsPerMessage,
                    maxMessageBytes: config.maxFrameBytes))
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// What a `/yjs/{room}` socket gets after NIO's frame decoder: its framing errors recorded as the close
    /// reason before NIO's protocol error handler answers them, fragments aggregated into whole messages
    /// (bounded, by NIO's aggregator), then the endpoint's own handler.
    private func addMessageHandlers(to channel: Channel, recorder: FramingErrorRecorder, handler: any ChannelHandler) throws {
        let codecErrors = try channel.pipeline.syncOperations.handler(type: WebSocketProtocolErrorHandler.self)
        try channel.pipeline.syncOperations.addHandler(recorder, position: .before(codecErrors))
        try channel.pipeline.syncOperations.addHandler(
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: Self.maxFragmentsPerMessage,
                maxAccumulatedFrameSize: config.maxFrameBytes))
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    private func upgradedYjs(channel: Channel, accepted: HandshakeState.AcceptedYjs) -> EventLoopFuture<Void> {
        let id = nextConnectionID.withLockedValue { id in
            id += 1
            return id
        }
        let connection = YjsConnection(
            id: id, identity: accepted.identity, room: accepted.room, role: accepted.role, channel: channel,
            settings: yjsSettings, metrics: metrics, clock: clock, rooms: yjsRooms, logger: logger)
        do {
            try addMessageHandlers(
                to: channel, recorder: FramingErrorRecorder(connection: connection), handler: YjsConnectionHandler(connection: connection))
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// Closes every client with 1001 (going away) and waits until they are gone (at most `timeout`).
    func closeAllClients(timeout: TimeAmount) async {
        let connections = registry.allConnections
        var closed = connections.map { connection in
            connection.eventLoop.execute {
                connection.close(.shutdown)
            }
            return connection.channel.closeFuture
        }
        for connection in yjsRooms.allConnections {
            connection.eventLoop.execute { connection.close(.shutdown) }
            closed.append(connection.channel.closeFuture)
        }
        guard let loop = closed.first?.eventLoop else { return }
        await EventLoopFuture.andAllComplete(closed, on: loop).wait(atMost: timeout)
    }
}
