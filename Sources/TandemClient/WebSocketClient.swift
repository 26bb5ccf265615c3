import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if TLS
import NIOSSL
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `ws://` (or, with the package's `TLS` trait, `wss://`) WebSocket client connection on a SwiftNIO event
/// loop.
///
/// Two ways to receive, chosen at ``connect(to:headers:on:configuration:callbacks:)``:
/// - without `callbacks`, messages arrive on ``events`` (an `AsyncStream`), convenient for tests;
/// - with `callbacks`, they are handed to closures on the event loop, with no hop and no copy,
///   for load generation with thousands of connections.
///
/// All methods may be called from any thread. `WebSocketClient` is `Sendable` without
/// `@unchecked`: the channel handler is reached only on its event loop (through `NIOLoopBound`),
/// and the state other threads read is behind a lock (`NIOLockedValueBox`).
///
/// Dropping the last reference to an open client drops its TCP connection, as ``abort()`` does.
///
/// ```swift
/// let client = try await WebSocketClient.connect(
///     to: "ws://127.0.0.1:8080/ws?doc=readme",
///     headers: [("Authorization", "Bearer \(token)")],
///     on: MultiThreadedEventLoopGroup.singleton
/// )
/// client.send(text: #"{"type":"hello"}"#)
/// for await event in client.events {
///     if case .text(let text) = event { print(text); break }
/// }
/// await client.close()
/// ```
public final class WebSocketClient: Sendable {
    /// Received messages and, last, ``WebSocketEvent/closed(code:reason:)``. Unbounded: consume it,
    /// or connect with ``Callbacks`` instead. Finishes at once for a client connected with callbacks.
    public let events: AsyncStream<WebSocketEvent>
    /// The event loop this connection lives on; callbacks run here.
    public let eventLoop: any EventLoop
    /// Headers of the server's `101 Switching Protocols` response.
    public let upgradeResponseHeaders: [(String, String)]

    private let channel: any Channel
    private let handler: NIOLoopBound<WebSocketClientHandler>
    private let shared: NIOLockedValueBox<ConnectionState>

    /// Room left in front of payloads built here, so the frame encoder can write the header
    /// (at most 2 + 8 length + 4 mask bytes) into the same buffer: one buffer, one write per frame.
    private static let frameHeaderRoom = 14

    private init(
        channel: any Channel,
        handler: NIOLoopBound<WebSocketClientHandler>,
        shared: NIOLockedValueBox<ConnectionState>,
        events: AsyncStream<WebSocketEvent>,
        upgradeResponseHeaders: [(String, String)]
    ) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.handler = handler
        self.shared = shared
        self.events = events
        self.upgradeResponseHeaders = upgradeResponseHeaders
    }

    deinit {
        if !self.shared.withLockedValue({ $0.isClosed }) {
            self.channel.close(promise: nil)
        }
    }

    // MARK: Connecting

    /// Opens a TCP connection and performs the WebSocket upgrade handshake.
    ///
    /// - Parameters:
    ///   - url: `ws://host[:port][/path][?query]`; the port defaults to 80. An IP literal host is
    ///     used as is; a name is resolved. `wss://` (port 443 by default) with the `TLS` trait, checked
    ///     as ``Configuration/tls`` says.
    ///   - headers: Extra request headers (`Authorization`, `Origin`, ...), sent in this order.
    ///   - group: The loop group; the connection takes `group.next()`. Pass an `EventLoop` to pin it.
    ///   - configuration: Limits and behaviour; see ``Configuration``.
    ///   - callbacks: Receive on the event loop instead of through ``events``.
    /// - Throws: ``WebSocketClientError``: `.handshakeRejected` when the server answers with a
    ///   status other than 101, `.connectionRefused`, `.connectTimeout`, `.handshakeTimeout`,
    ///   `.handshakeFailed`, `.connectionFailed`, `.tlsFailed` or `.invalidURL`.
    public static func connect(
        to url: String,
        headers: [(String, String)] = [],
        on group: any EventLoopGroup,
        configuration: Configuration = .init(),
        callbacks: Callbacks? = nil
    ) async throws -> WebSocketClient {
        let target = try WebSocketURL(parsing: url)
        let tls = try Self.makeTLS(target: target, url: url, configuration: configuration)
        let deadline = NIODeadline.now() + configuration.connectTimeout
        let shared = NIOLockedValueBox(ConnectionState())
        let (events, continuation) = AsyncStream.makeStream(of: WebSocketEvent.self)
        if callbacks != nil {
            continuation.finish()
        }

        var requestHeaders = HTTPHeaders()
        requestHeaders.add(name: "Host", value: target.hostHeader)
        requestHeaders.add(contentsOf: headers)
        let requestHead = HTTPRequestHead(
            version: .http1_1,
            method: .GET,
            uri: target.requestURI,
            headers: requestHeaders
        )

        let channelInitializer: @Sendable (any Channel) -> EventLoopFuture<PendingHandshake> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try tls?.install(on: channel)
                return try Self.configurePipeline(
                    channel: channel,
                    requestHead: requestHead,
                    configuration: configuration,
                    callbacks: callbacks,
                    continuation: callbacks == nil ? continuation : nil,
                    shared: shared
                )
            }
        }

        // TCP connect.
        var bootstrap = ClientBootstrap(group: group.next()).connectTimeout(configuration.connectTimeout)
        if let bytes = configuration.receiveBufferBytes {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(bytes))
        }
        let pending: PendingHandshake
        do {
            if let address = try? SocketAddress(ipAddress: target.host, port: target.port) {
                // Skips the resolver, which matters when a benchmark opens thousands of connections.
                pending = try await bootstrap.connect(to: address, channelInitializer: channelInitializer)
            } else {
                pending = try await bootstrap.connect(
                    host: target.host,
                    port: target.port,
                    channelInitializer: channelInitializer
                )
            }
        } catch {
            continuation.finish()
            throw Self.connectError(error, target: target, timeout: configuration.connectTimeout)
        }

        // Upgrade handshake, bounded by what is left of the connect timeout.
        let channel = pending.channel
        let result = channel.eventLoop.makePromise(of: HandshakeResult.self)
        pending.outcome.flatMap { outcome -> EventLoopFuture<HandshakeResult> in
            switch outcome {
            case .upgraded(let handler, let headers):
                return channel.eventLoop.makeSucceededFuture(.upgraded(handler, headers))
            case .rejected(let response):
                return response.map { .rejected($0) }
            }
        }.cascade(to: result)
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) {
            result.fail(HandshakeTimedOut())
        }

        let handshake: HandshakeResult
        do {
            handshake = try await result.futureResult.get()
            timer.cancel()
        } catch {
            timer.cancel()
            channel.close(promise: nil)
            continuation.finish()
            throw Self.handshakeError(error, target: target, timeout: configuration.connectTimeout)
        }

        switch handshake {
        case .rejected(let response):
            channel.close(promise: nil)
            continuation.finish()
            throw WebSocketClientError.handshakeRejected(
                status: response.status,
                headers: response.headers,
                body: response.body
            )
        case .upgraded(let handler, let headers):
            return WebSocketClient(
                channel: channel,
                handler: handler,
                shared: shared,
                events: events,
                upgradeResponseHeaders: headers
            )
        }
    }

    // MARK: Sending

    /// Sends a text message. Without a promise this is fire-and-forget; the promise, if given,
    /// completes when the frame is written to the socket, or fails with
    /// ``WebSocketClientError/notOpen`` once the close handshake has started.
    public func send(text: String, promise: EventLoopPromise<Void>? = nil) {
        self.send(opcode: .text, payload: self.makePayload(text: text), promise: promise)
    }

    /// Sends a text message whose UTF-8 bytes are the readable bytes of `text`.
    /// (A buffer with 14 free bytes in front of its reader index is framed without a copy.)
    public func send(text: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        self.send(opcode: .text, payload: text, promise: promise)
    }

    /// Sends a text message and returns once it is written to the socket.
    public func sendAndWait(text: String) async throws {
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.send(text: text, promise: promise)
        try await promise.futureResult.get()
    }

    /// Sends a binary message.
    public func sendBinary(_ bytes: [UInt8], promise: EventLoopPromise<Void>? = nil) {
        var payload = self.makePayloadBuffer(capacity: bytes.count)
        payload.writeBytes(bytes)
        self.send(opcode: .binary, payload: payload, promise: promise)
    }

    /// Sends a binary message whose bytes are the readable bytes of `buffer`.
    public func sendBinary(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        self.send(opcode: .binary, payload: buffer, promise: promise)
    }

    /// Sends a ping; the server's pong shows up in ``statistics`` as `pongsReceived`.
    /// - Parameter payload: At most 125 bytes (RFC 6455 section 5.5).
    public func sendPing(_ payload: [UInt8] = [], promise: EventLoopPromise<Void>? = nil) {
        precondition(payload.count <= 125, "control frame payloads are at most 125 bytes")
        var buffer = self.makePayloadBuffer(capacity: payload.count)
        buffer.writeBytes(payload)
        self.send(opcode: .ping, payload: buffer, promise: promise)
    }

    // MARK: Closing

    /// Runs the close handshake and returns once the connection is closed.
    ///
    /// Sends a close frame with `code` and `reason` (cut to the 123 bytes a frame allows), waits
    /// for the server's close frame, then drops the TCP connection; if the server does not answer
    /// within ``Configuration/closeTimeout`` the connection is dropped anyway. Reading is resumed
    /// if it was paused, since the answer has to be read. The code is not checked, so a test can
    /// send one the server must refuse. Returns at once if the connection is already closed.
    public func close(code: Int = 1000, reason: String = "") async {
        self.startClose(code: code, reason: reason)
        await self.waitUntilClosed()
    }

    /// Starts the close handshake like ``close(code:reason:)`` without waiting for it.
    public func startClose(code: Int = 1000, reason: String = "") {
        let code = UInt16(clamping: code)
        self.onEventLoop { handler in
            handler.startClose(code: code, reason: reason)
        }
    }

    /// Drops the TCP connection without a close frame, as a crashed client or a lost network
    /// would (the kernel still sends FIN). The server sees the connection end with no close frame.
    public func abort() {
        self.channel.close(promise: nil)
    }

    /// Returns once the TCP connection is closed, for whatever reason.
    public func waitUntilClosed() async {
        try? await self.channel.closeFuture.get()
    }

    /// Completes when the TCP connection is closed.
    public var closeFuture: EventLoopFuture<Void> {
        self.channel.closeFuture
    }

    // MARK: Flow control

    /// Stops (`true`) or resumes (`false`) reading from the socket (the channel's `autoRead`).
    ///
    /// While paused, the kernel's receive buffer fills and TCP flow control pushes back on the
    /// server, as with a slow consumer. Returns once the option is applied.
    public func setReading(paused: Bool) async throws {
        try await self.channel.setOption(ChannelOptions.autoRead, value: !paused).get()
    }

    // MARK: State

    /// Receive counters; see ``Statistics`` for how fresh they are.
    public var statistics: Statistics {
        self.shared.withLockedValue { $0.statistics }
    }

    /// Text and binary messages received so far.
    public var messagesReceived: Int {
        self.statistics.messagesReceived
    }

    /// Payload bytes of the messages received so far.
    public var bytesReceived: Int {
        self.statistics.bytesReceived
    }

    /// Status code of the close frame received from the server (its own, or its answer to ours);
    /// `nil` while none has arrived or when it carried no code.
    public var closeCode: Int? {
        self.shared.withLockedValue { $0.closeCode }
    }

    /// Reason text of the close frame received from the server.
    public var closeReason: String {
        self.shared.withLockedValue { $0.closeReason }
    }

    /// `true` once the TCP connection is closed.
    public var isClosed: Bool {
        self.shared.withLockedValue { $0.isClosed }
    }

    /// The first error seen on the connection after the upgrade (a protocol violation by the
    /// server, a message over ``Configuration/maxFrameSize``, ECONNRESET, ...), if any.
    public var error: (any Error)? {
        self.shared.withLockedValue { $0.firstError }
    }

    /// This end's address.
    public var localAddress: SocketAddress? {
        self.channel.localAddress
    }

    // MARK: Internals

    private func send(opcode: WebSocketOpcode, payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        self.onEventLoop { handler in
            handler.send(opcode: opcode, payload: payload, promise: promise)
        }
    }

    /// Runs `body` with the handler: directly when already on the loop (a callback answering a
    /// message), else after one hop.
    private func onEventLoop(_ body: @escaping @Sendable (WebSocketClientHandler) -> Void) {
        if self.eventLoop.inEventLoop {
            body(self.handler.value)
        } else {
            self.eventLoop.execute {
                body(self.handler.value)
            }
        }
    }

    private func makePayloadBuffer(capacity: Int) -> ByteBuffer {
        var buffer = self.channel.allocator.buffer(capacity: Self.frameHeaderRoom + capacity)
        buffer.moveWriterIndex(forwardBy: Self.frameHeaderRoom)
        buffer.moveReaderIndex(forwardBy: Self.frameHeaderRoom)
        return buffer
    }

    private func makePayload(text: String) -> ByteBuffer {
        var buffer = self.makePayloadBuffer(capacity: text.utf8.count)
        buffer.writeString(text)
        return buffer
    }
}

// MARK: - TLS

#if TLS
/// What a `wss://` connection puts first in its pipeline (nil for `ws://`).
private struct TLSSetup: Sendable {
    var context: NIOSSLContext
    /// nil for an IP literal: no SNI, and NIOSSL checks the certificate's IP addresses against the peer's.
    var serverHostname: String?

    func install(on channel: any Channel) throws {
        let handler = try NIOSSLClientHandler(context: self.context, serverHostname: self.serverHostname)
        try channel.pipeline.syncOperations.addHandler(handler)
    }
}
#else
/// Without the `TLS` trait there is nothing to set up: `wss://` is refused before connecting.
private enum TLSSetup: Sendable {
    func install(on channel: any Channel) throws {}
}
#endif

extension WebSocketClient {
    private static func makeTLS(target: WebSocketURL, url: String, configuration: Configuration) throws -> TLSSetup? {
        guard target.secure else { return nil }
        #if TLS
        do {
            return TLSSetup(
                context: try NIOSSLContext(configuration: configuration.tls),
                serverHostname: target.hostIsIPLiteral ? nil : target.host)
        } catch {
            throw WebSocketClientError.tlsFailed(host: target.host, port: target.port, reason: "unusable TLS settings: \(error)")
        }
        #else
        throw WebSocketClientError.invalidURL(
            url, reason: "wss:// needs TandemClient built with the package's TLS trait (.package(url: …, traits: [\"TLS\"]))")
        #endif
    }
}

// MARK: - Handshake plumbing

/// What the upgrade produced, as seen on the event loop.
private enum UpgradeOutcome: Sendable {
    case upgraded(NIOLoopBound<WebSocketClientHandler>, [(String, String)])
    /// Not 101: the response is still being read by a `RejectedResponseCollector`.
    case rejected(EventLoopFuture<RejectedResponse>)
}

private enum HandshakeResult: Sendable {
    case upgraded(NIOLoopBound<WebSocketClientHandler>, [(String, String)])
    case rejected(RejectedResponse)
}

private struct PendingHandshake: Sendable {
    var channel: any Channel
    var outcome: EventLoopFuture<UpgradeOutcome>
}

private struct HandshakeTimedOut: Error {}

extension WebSocketClient {
    /// Sets up `HTTP client → typed upgrade handler`; on 101 the upgrader swaps in the WebSocket
    /// handlers, otherwise a collector reads the refusal.
    private static func configurePipeline(
        channel: any Channel,
        requestHead: HTTPRequestHead,
        configuration: Configuration,
        callbacks: Callbacks?,
        continuation: AsyncStream<WebSocketEvent>.Continuation?,
        shared: NIOLockedValueBox<ConnectionState>
    ) throws -> PendingHandshake {
        let upgrader = NIOTypedWebSocketClientUpgrader<UpgradeOutcome>(
            maxFrameSize: configuration.maxFrameSize,
            enableAutomaticErrorHandling: true,
            upgradePipelineHandler: { channel, response in
                channel.eventLoop.makeCompletedFuture {
                    let handler = WebSocketClientHandler(
                        configuration: configuration,
                        callbacks: callbacks,
                        continuation: continuation,
                        shared: shared
                    )
                    try channel.pipeline.syncOperations.addHandlers(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0,
                            // A fragment is at least one byte, so this never binds before the size limit.
                            maxAccumulatedFrameCount: configuration.maxFrameSize,
                            maxAccumulatedFrameSize: configuration.maxFrameSize
                        ),
                        handler
                    )
                    // In front of the frame decoder the upgrader added: plain text frames skip the chain.
                    let decoder = try channel.pipeline.syncOperations.context(
                        handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self)
                    try channel.pipeline.syncOperations.addHandler(
                        ServerTextFrameReader(maxFrameSize: configuration.maxFrameSize, handler: handler),
                        position: .before(decoder.handler))
                    let headers = response.headers.map { ($0.name, $0.value) }
                    return .upgraded(NIOLoopBound(handler, eventLoop: channel.eventLoop), headers)
                }
            }
        )

        let upgradeConfiguration = NIOTypedHTTPClientUpgradeConfiguration<UpgradeOutcome>(
            upgradeRequestHead: requestHead,
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    let response = channel.eventLoop.makePromise(of: RejectedResponse.self)
                    do {
                        try channel.pipeline.syncOperations.addHandler(RejectedResponseCollector(promise: response))
                    } catch {
                        response.fail(error)
                        throw error
                    }
                    return .rejected(response.futureResult)
                }
            }
        )

        var pipelineConfiguration = NIOUpgradableHTTPClientPipelineConfiguration(
            upgradeConfiguration: upgradeConfiguration
        )
        // A server may send its first frame in the same segment as the 101 response; hand those
        // bytes to the WebSocket decoder instead of dropping them.
        pipelineConfiguration.leftOverBytesStrategy = .forwardBytes
        try channel.pipeline.syncOperations.addHandler(DeferredInactiveHandler())
        let outcome = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
            configuration: pipelineConfiguration
        )
        return PendingHandshake(channel: channel, outcome: outcome)
    }

    private static func connectError(
        _ error: any Error,
        target: WebSocketURL,
        timeout: TimeAmount
    ) -> WebSocketClientError {
        func isRefused(_ error: any Error) -> Bool {
            (error as? IOError)?.errnoCode == ECONNREFUSED
        }
        func isTimeout(_ error: any Error) -> Bool {
            if case .connectTimeout = error as? ChannelError { return true }
            return false
        }

        if let error = error as? WebSocketClientError {
            return error
        }
        var causes = [error]
        if let multiple = error as? NIOConnectionError {
            causes = multiple.connectionErrors.map(\.error)
        }
        if isTimeout(error) || (!causes.isEmpty && causes.allSatisfy(isTimeout)) {
            return .connectTimeout(host: target.host, port: target.port, timeout: timeout)
        }
        if !causes.isEmpty && causes.allSatisfy(isRefused) {
            return .connectionRefused(host: target.host, port: target.port)
        }
        return .connectionFailed(host: target.host, port: target.port, underlying: error)
    }

    private static func handshakeError(
        _ error: any Error,
        target: WebSocketURL,
        timeout: TimeAmount
    ) -> WebSocketClientError {
        if let error = error as? WebSocketClientError {
            return error
        }
        #if TLS
        if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
            return .tlsFailed(host: target.host, port: target.port, reason: "\(error)")
        }
        #endif
        if error is HandshakeTimedOut {
            return .handshakeTimeout(host: target.host, port: target.port, timeout: timeout)
        }
        switch error as? NIOHTTPClientUpgradeError {
        case .upgraderDeniedUpgrade?:
            return .handshakeFailed(reason: "Sec-WebSocket-Accept in the 101 response does not match the request key")
        case .responseProtocolNotFound?:
            return .handshakeFailed(reason: "101 response does not upgrade to websocket")
        default:
            break
        }
        switch error as? ChannelError {
        case .inappropriateOperationForState?, .ioOnClosedChannel?, .eof?:
            return .handshakeFailed(reason: "connection closed before a complete upgrade response")
        default:
            return .handshakeFailed(reason: "\(error)")
        }
    }
}
