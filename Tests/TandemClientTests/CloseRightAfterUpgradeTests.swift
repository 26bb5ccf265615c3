import Crypto
import NIOCore
import NIOPosix
import TandemClient
import TandemTestSupport
import Testing

/// A server that closes right after the upgrade (Tandem does so with 4400/4401 when it does not speak the
/// client's protocol version) must still end the client's events with `.closed(code:)`.
///
/// The server here answers the upgrade, sends the close frame and drops the TCP connection in one write, so
/// the client reads the 101, the close frame and the EOF in one go. NIO removes the HTTP decoder on the next
/// loop tick, after the channel already went inactive: the WebSocket handler is installed into a closed
/// channel and never sees `channelInactive`. Without `WebSocketClientHandler` noticing that in
/// `handlerAdded`, no `.closed` event ever came (TandemKit used to work around it with a timer).
@Suite("WebSocketClient: a server that closes right after the upgrade")
struct CloseRightAfterUpgradeTests {
    @Test func theCloseCodeIsDeliveredEveryTime() async throws {
        try await UpgradeThenCloseServer.with(code: 4401, reason: "protocol version 2 is not supported yet") { server in
            for round in 0..<100 {
                let client = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(server.port)/v1/ws", on: group)
                let recorder = EventRecorder(client)
                let closed = try await recorder.waitForClosed()
                #expect(closed.code == 4401, "round \(round)")
                #expect(closed.reason == "protocol version 2 is not supported yet", "round \(round)")
                #expect(recorder.events.count == 1, "round \(round): only .closed, got \(recorder.events)")
                #expect(client.isClosed, "round \(round)")
                #expect(client.closeCode == 4401, "round \(round)")
            }
        }
    }

    /// The same with callbacks: `onClose` runs once with the code.
    @Test func onCloseRunsOnceWithTheCode() async throws {
        try await UpgradeThenCloseServer.with(code: 4400, reason: "too old") { server in
            for round in 0..<20 {
                let closes = Locked<[Int?]>([])
                let client = try await WebSocketClient.connect(
                    to: "ws://127.0.0.1:\(server.port)/v1/ws", on: group,
                    callbacks: .init(onClose: { code, _ in closes.withLock { $0.append(code) } }))
                try await waitUntil("round \(round): onClose ran, saw \(closes.value)") { closes.value == [4400] }
                await client.waitUntilClosed()
                #expect(closes.value == [4400], "round \(round): onClose ran once")
            }
        }
    }
}

/// Answers each WebSocket upgrade request with `101`, a close frame with `code` and `reason`, and the end of
/// the TCP connection, all in one write.
final class UpgradeThenCloseServer: Sendable {
    let port: Int
    private let channel: any Channel

    init(code: UInt16, reason: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Responder(code: code, reason: reason))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        self.port = self.channel.localAddress!.port!
    }

    /// Runs `body` with a fresh server and stops it afterwards, also on failure.
    static func with(code: UInt16, reason: String, _ body: (UpgradeThenCloseServer) async throws -> Void) async throws {
        let server = try await UpgradeThenCloseServer(code: code, reason: reason)
        do {
            try await body(server)
        } catch {
            try? await server.channel.close()
            throw error
        }
        try await server.channel.close()
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let code: UInt16
        let reason: String
        var request = ByteBuffer()

        init(code: UInt16, reason: String) {
            self.code = code
            self.reason = reason
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = Self.unwrapInboundIn(data)
            self.request.writeBuffer(&bytes)
            let text = String(buffer: self.request)
            guard text.contains("\r\n\r\n") else { return }
            let key = text.split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("sec-websocket-key:") }
                .map { $0.dropFirst("sec-websocket-key:".count).trimmingPrefix(" ") }
            guard let key else {
                context.close(promise: nil)
                return
            }
            // RFC 6455 section 4.2.2: base64(SHA-1(key + GUID)).
            let digest = Insecure.SHA1.hash(data: Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
            var out = ByteBuffer()
            out.writeString(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Accept: \(base64(Array(digest)))\r\n\r\n")
            // An unmasked close frame: FIN + opcode 8, payload length, code, reason.
            let reasonBytes = Array(self.reason.utf8)
            out.writeInteger(UInt8(0x88))
            out.writeInteger(UInt8(2 + reasonBytes.count))
            out.writeInteger(self.code)
            out.writeBytes(reasonBytes)
            context.writeAndFlush(Self.wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

private func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    var result = ""
    var index = 0
    while index < bytes.count {
        let chunk = bytes[index..<min(index + 3, bytes.count)]
        var value = 0
        for (offset, byte) in chunk.enumerated() { value |= Int(byte) << (16 - 8 * offset) }
        for position in 0..<4 {
            result.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 63] : "=")
        }
        index += 3
    }
    return result
}
