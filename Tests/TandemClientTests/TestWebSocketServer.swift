import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import TandemTestSupport

/// The upgrade request as the test server received it.
struct RecordedRequest: Sendable {
    var uri: String
    var headers: [(String, String)]

    func header(_ name: String) -> String? {
        self.headers.first(where: { $0.0.lowercased() == name.lowercased() })?.1
    }
}

/// A small WebSocket server for the client's tests, bound to 127.0.0.1 on a kernel-chosen port.
///
/// Paths choose its behaviour:
/// - `/reject?status=503&retry-after=7`: answer the upgrade with that status (and `Retry-After`);
/// - `/welcome`: send the text `welcome` right after the upgrade;
/// - `/keep-tcp`: after answering a client's close frame, wait for the client to drop TCP;
/// - anything else: upgrade; text and binary messages are echoed, pings answered.
/// Tests drive each connection through ``Connection`` (ping, close, flood, ...).
final class TestWebSocketServer: Sendable {
    let port: Int
    private let channel: any Channel
    private let registry: Locked<[Connection]>

    private init(channel: any Channel, registry: Locked<[Connection]>) {
        self.channel = channel
        self.registry = registry
        self.port = channel.localAddress!.port!
    }

    static func start(on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> TestWebSocketServer {
        let registry = Locked<[Connection]>([])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: 1 << 24,
                    automaticErrorHandling: true,
                    shouldUpgrade: { channel, head in
                        if head.uri.hasPrefix("/reject") {
                            return channel.eventLoop.makeSucceededFuture(nil)
                        }
                        return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                    },
                    upgradePipelineHandler: { channel, head in
                        channel.eventLoop.makeCompletedFuture {
                            let request = RecordedRequest(
                                uri: head.uri,
                                headers: head.headers.map { ($0.name, $0.value) }
                            )
                            // Raw WebSocket bytes now flow where HTTP parts did: the refusal
                            // handler must go.
                            let rejecting = try channel.pipeline.syncOperations.handler(type: RejectingHTTPHandler.self)
                            channel.pipeline.syncOperations.removeHandler(rejecting, promise: nil)
                            let handler = ServerConnectionHandler(
                                closesAfterCloseEcho: !head.uri.hasPrefix("/keep-tcp")
                            )
                            try channel.pipeline.syncOperations.addHandler(handler)
                            let connection = Connection(
                                channel: channel,
                                request: request,
                                handler: NIOLoopBound(handler, eventLoop: channel.eventLoop),
                                record: handler.record
                            )
                            registry.withLock { $0.append(connection) }
                            if head.uri.hasPrefix("/welcome") {
                                handler.sendText("welcome")
                            }
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                    try channel.pipeline.syncOperations.addHandler(RejectingHTTPHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return TestWebSocketServer(channel: channel, registry: registry)
    }

    var url: String { "ws://127.0.0.1:\(self.port)" }

    /// Upgraded connections, in the order their upgrades completed.
    var connections: [Connection] {
        self.registry.value
    }

    /// Waits for the `index`-th upgraded connection (0-based).
    func connection(_ index: Int = 0) async throws -> Connection {
        try await waitUntil("server connection #\(index), have \(self.connections.count)") {
            self.connections.count > index
        }
        return self.connections[index]
    }

    func stop() async throws {
        for connection in self.connections {
            connection.channel.close(promise: nil)
        }
        try await self.channel.close()
    }
}

/// What the server saw on one connection; written on its event loop, read by the test.
struct ConnectionRecord: Sendable {
    var texts: [String] = []
    var binaries: [[UInt8]] = []
    var pings: [[UInt8]] = []
    var pongs: [[UInt8]] = []
    var closeFrames: [(code: Int?, reason: String)] = []
    var isClosed = false
    var sawUnwritable = false
    var isWritable = true
    var floodSent = 0
    var floodRemaining = 0
}

/// The test's handle on one server-side connection.
final class Connection: Sendable {
    let channel: any Channel
    let request: RecordedRequest
    private let handler: NIOLoopBound<ServerConnectionHandler>
    private let record: Locked<ConnectionRecord>

    init(channel: any Channel, request: RecordedRequest, handler: NIOLoopBound<ServerConnectionHandler>, record: Locked<ConnectionRecord>) {
        self.channel = channel
        self.request = request
        self.handler = handler
        self.record = record
    }

    var seen: ConnectionRecord { self.record.value }

    func sendText(_ text: String) { self.onLoop { $0.sendText(text) } }
    func sendPing(_ payload: [UInt8]) { self.onLoop { $0.send(.ping, ByteBuffer(bytes: payload)) } }
    func sendClose(code: Int, reason: String) { self.onLoop { $0.sendClose(code: code, reason: reason) } }
    /// Sends `parts` as one text message split into a text frame and continuation frames.
    func sendFragmented(_ parts: [String]) { self.onLoop { $0.sendFragmented(parts) } }
    /// Sends a frame with any opcode, including reserved ones a client must refuse.
    func sendFrame(opcode: UInt8, payload: String) {
        self.onLoop { $0.send(WebSocketOpcode(encodedWebSocketOpcode: opcode)!, ByteBuffer(string: payload)) }
    }
    func sendBinary(count: Int) { self.onLoop { $0.send(.binary, ByteBuffer(repeating: 0x61, count: count)) } }
    /// Writes `count` text messages of `size` bytes, as fast as the channel stays writable.
    func flood(count: Int, size: Int) { self.onLoop { $0.flood(count: count, size: size) } }

    private func onLoop(_ body: @escaping @Sendable (ServerConnectionHandler) -> Void) {
        self.channel.eventLoop.execute { body(self.handler.value) }
    }
}

final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let record = Locked(ConnectionRecord())
    /// `false` leaves closing the TCP connection to the client after the close handshake.
    private let closesAfterCloseEcho: Bool
    private var context: ChannelHandlerContext?
    private var closeSent = false
    private var floodPayload = ByteBuffer()
    private var floodRemaining = 0

    init(closesAfterCloseEcho: Bool) {
        self.closesAfterCloseEcho = closesAfterCloseEcho
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        var payload = frame.unmaskedData
        switch frame.opcode {
        case .text:
            let text = String(buffer: payload)
            self.record.withLock { $0.texts.append(text) }
            self.send(.text, payload)
        case .binary:
            self.record.withLock { $0.binaries.append(Array(payload.readableBytesView)) }
            self.send(.binary, payload)
        case .ping:
            self.record.withLock { $0.pings.append(Array(payload.readableBytesView)) }
            self.send(.pong, payload)
        case .pong:
            self.record.withLock { $0.pongs.append(Array(payload.readableBytesView)) }
        case .connectionClose:
            let code = payload.readInteger(as: UInt16.self).map(Int.init)
            let reason = payload.readString(length: payload.readableBytes) ?? ""
            self.record.withLock { $0.closeFrames.append((code, reason)) }
            if self.closeSent {
                context.close(promise: nil)
            } else {
                // Echo the close, then close the TCP connection (the server closes first, RFC 6455 7.1.1).
                self.closeSent = true
                var echo = context.channel.allocator.buffer(capacity: 2)
                if let code { echo.writeInteger(UInt16(code)) }
                let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: echo)
                let closes = self.closesAfterCloseEcho
                context.writeAndFlush(Self.wrapOutboundOut(frame)).assumeIsolated().whenComplete { _ in
                    if closes { context.close(promise: nil) }
                }
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.record.withLock { $0.isClosed = true }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        self.record.withLock {
            $0.isWritable = writable
            if !writable { $0.sawUnwritable = true }
        }
        if writable {
            self.continueFlood()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: Commands (on the event loop)

    func sendText(_ text: String) {
        self.send(.text, ByteBuffer(string: text))
    }

    func send(_ opcode: WebSocketOpcode, _ payload: ByteBuffer, fin: Bool = true) {
        guard let context else { return }
        let frame = WebSocketFrame(fin: fin, opcode: opcode, data: payload)
        context.writeAndFlush(Self.wrapOutboundOut(frame), promise: nil)
    }

    func sendClose(code: Int, reason: String) {
        guard let context, !self.closeSent else { return }
        self.closeSent = true
        var payload = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        payload.writeInteger(UInt16(code))
        payload.writeString(reason)
        self.send(.connectionClose, payload)
    }

    func sendFragmented(_ parts: [String]) {
        for (index, part) in parts.enumerated() {
            self.send(index == 0 ? .text : .continuation, ByteBuffer(string: part), fin: index == parts.count - 1)
        }
    }

    func flood(count: Int, size: Int) {
        self.floodPayload = ByteBuffer(repeating: UInt8(ascii: "x"), count: size)
        self.floodRemaining = count
        self.record.withLock { $0.floodRemaining = count }
        self.continueFlood()
    }

    private func continueFlood() {
        guard let context, self.floodRemaining > 0 else { return }
        var sent = 0
        // One shared payload buffer: the encoder writes the header separately, so no copies.
        while self.floodRemaining > 0 && context.channel.isWritable {
            let frame = WebSocketFrame(fin: true, opcode: .text, data: self.floodPayload)
            context.write(Self.wrapOutboundOut(frame), promise: nil)
            self.floodRemaining -= 1
            sent += 1
        }
        context.flush()
        let remaining = self.floodRemaining
        let writable = context.channel.isWritable
        self.record.withLock {
            $0.floodSent += sent
            $0.floodRemaining = remaining
            $0.isWritable = writable
            if !writable { $0.sawUnwritable = true }
        }
    }
}

/// Answers upgrade requests the server refuses: `/reject?status=401` or
/// `/reject?status=503&retry-after=7`.
final class RejectingHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = Self.unwrapInboundIn(data) else { return }
        var query: [String: String] = [:]
        if let mark = head.uri.firstIndex(of: "?") {
            for pair in head.uri[head.uri.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                query[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
            }
        }
        let status = HTTPResponseStatus(statusCode: Int(query["status"] ?? "") ?? 400)
        let body = ByteBuffer(string: "rejected: \(status.code) \(status.reasonPhrase)")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        if let retryAfter = query["retry-after"] {
            headers.add(name: "Retry-After", value: retryAfter)
        }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// A TCP server that writes `response` (if any) to each connection once it receives something,
/// and otherwise says nothing: for handshake timeouts and malformed handshakes.
final class RawTCPServer: Sendable {
    let port: Int
    private let channel: any Channel

    init(response: String?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        self.channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawResponder(response: response))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        self.port = self.channel.localAddress!.port!
    }

    func stop() async throws {
        try await self.channel.close()
    }

    private final class RawResponder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let response: String?
        var answered = false

        init(response: String?) { self.response = response }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let response, !self.answered else { return }
            self.answered = true
            context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
        }
    }
}
