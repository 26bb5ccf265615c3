import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOWebSocket
import TandemCore
import TandemRedis
@testable import TandemServer
import Testing

/// The WebSocket handshake without sockets or Redis: the real `WebSocketServer` pipeline
/// (`initializeChild`: NIO's HTTP codec and upgrader, Tandem's `evaluate`, the fallback handler) on a
/// `NIOAsyncTestingChannel`, whose loop's virtual time drives the handshake timeout, and a clock of the
/// test's own for the admission rates. Redis clients are never started (unreachable). What a client reads
/// is the HTTP response parsed from the channel's outbound bytes.
@Suite struct HandshakeLayerTests {
    static let secret = "handshake-layer-secret-0123456789abcdef-01"

    /// Monotonic milliseconds that move only when a test says so.
    final class ManualClock: Sendable {
        private let ms = NIOLockedValueBox<UInt64>(1_000_000)
        func now() -> UInt64 { ms.withLockedValue { $0 } }
        func advance(ms step: UInt64) { ms.withLockedValue { $0 += step } }
    }

    /// What the client read: the status line's code, the headers, the body, and the bytes after the head
    /// (WebSocket frames once upgraded).
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: String
        var rest: [UInt8]
    }

    final class Fixture {
        let loop = NIOAsyncTestingEventLoop()
        let clock = ManualClock()
        let server: WebSocketServer
        let metrics: TandemMetrics
        let config: ServerConfiguration
        private var channels: [NIOAsyncTestingChannel] = []

        init(secret: String? = nil, configure: (inout ServerConfiguration) -> Void = { _ in }) async throws {
            var config = ServerConfiguration(nodeID: "test-node", redisURL: "redis://127.0.0.1:1")
            config.jwtSecret = secret
            configure(&config)
            self.config = config
            let metrics = TandemMetrics(nodeID: config.nodeID)
            self.metrics = metrics
            let logger = Logger(label: "test")
            let nodeClock = NodeClock()
            let registry = SessionRegistry()
            let offline = try OfflineShards(config: config, metrics: metrics, clock: nodeClock, logger: logger, loop: loop)
            let (redis, subscriber, shards) = (offline.redis, offline.subscriber, offline.shards)
            let yjsRooms = YjsRooms(
                loops: [loop],
                dependencies: .init(
                    store: YjsStore(redis: redis, maxRoomBytes: config.yjsMaxRoomBytes, ttlMs: config.docTTLMs),
                    awarenessStore: YjsAwarenessStore(redis: redis, nodeID: config.nodeID, ttlMs: config.presenceTTLMs),
                    nodeID: config.nodeID, presence: config.presenceSettings, tickMs: config.tickMs, sweepMs: config.sweepMs, relayMs: config.yjsRelayMs,
                    subscriber: subscriber, metrics: metrics, clock: nodeClock, logger: logger))
            let clock = self.clock
            server = WebSocketServer(
                dependencies: WebSocketServerDependencies(
                    config: config, metrics: metrics, clock: nodeClock, registry: registry,
                    sessions: SessionOwnership(redis: redis), shards: shards,
                    connection: ConnectionDependencies(
                        settings: .init(config), metrics: metrics, clock: nodeClock, logger: logger, registry: registry,
                        shard: { shards.shard(for: $0) }, schemaVersion: { _ in nil }, reconnectObserved: {}),
                    yjsRooms: yjsRooms, yjsSettings: .init(config), logger: logger,
                    admissionNowMs: { clock.now() }),
                authenticator: await Authenticator(secret: secret), group: loop)
        }

        /// Closes every channel (their scheduled pings and timeouts hold the loop) and the loop.
        func finish() async throws {
            for channel in channels { _ = try? await channel.finish(acceptAlreadyClosed: true) }
            await loop.shutdownGracefully()
        }

        /// A socket accepted by the server: connected, with the server's handshake pipeline.
        func accept() async throws -> NIOAsyncTestingChannel {
            let channel = NIOAsyncTestingChannel(loop: loop)
            channels.append(channel)
            try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9))
            let server = self.server
            try await loop.flatSubmit { server.initializeChild(channel) }.get()
            return channel
        }

        /// Sends a handshake on a new socket and reads the response head (and what follows it).
        func handshake(
            _ target: String, headers: [(String, String)] = [], upgrade: Bool = true
        ) async throws -> (NIOAsyncTestingChannel, Response) {
            let channel = try await accept()
            var request = "GET \(target) HTTP/1.1\r\nHost: localhost\r\n"
            if upgrade {
                request += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            }
            for (name, value) in headers { request += "\(name): \(value)\r\n" }
            request += "\r\n"
            do {
                try await channel.writeInbound(ByteBuffer(string: request))
            } catch is NIOWebSocketUpgradeError {
                // A refusal decided at once: NIO's upgrader also fires its error down the pipeline, which a
                // socket's pipeline drops at its end and the testing channel rethrows. The fallback handler
                // has answered all the same (read below).
            }
            return (channel, try await Self.response(from: channel))
        }

        /// Reads the channel's outbound bytes until a whole response head (and, for a refusal, its body)
        /// has arrived. The authenticator answers from a task, so the bytes may come a little later.
        static func response(from channel: NIOAsyncTestingChannel) async throws -> Response {
            var bytes: [UInt8] = []
            while true {
                let buffer = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
                bytes += buffer.readableBytesView
                if let parsed = parse(bytes) { return parsed }
            }
        }

        static func parse(_ bytes: [UInt8]) -> Response? {
            let text = String(decoding: bytes, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { return nil }
            let lines = text[..<end.lowerBound].split(separator: "\r\n").map(String.init)
            guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ")[1]) else { return nil }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let headBytes = text[..<end.upperBound].utf8.count
            let rest = Array(bytes[headBytes...])
            if let length = headers["content-length"].flatMap(Int.init) {
                guard rest.count >= length else { return nil }
                return Response(status: status, headers: headers, body: String(decoding: rest.prefix(length), as: UTF8.self), rest: [])
            }
            return Response(status: status, headers: headers, body: "", rest: rest)
        }

        /// The value of one metric line of the exposition (`name{labels}`), 0 if absent.
        func metric(_ series: String) -> Double { metrics.value(of: series) }

        func rejected(_ reason: String) -> Double {
            metric(#"tandem_admission_rejected_total{reason="\#(reason)"}"#)
        }
    }

    @Test func aDevelopmentModeHandshakeIsUpgradedAndWelcomed() async throws {
        let fixture = try await Fixture()
        let (channel, response) = try await fixture.handshake("/v1/ws?user=ann&name=Ann")
        #expect(response.status == 101)
        #expect(response.headers["upgrade"]?.lowercased() == "websocket")
        // The first frame after the head: a text frame carrying `welcome`.
        var frame = response.rest
        while frame.count < 2 { frame += try await channel.waitForOutboundWrite(as: ByteBuffer.self).readableBytesView }
        #expect(frame[0] == 0x81)
        try await fixture.finish()
    }

    @Test func aMissingTokenIsRefused401WithBearerAndCounted() async throws {
        let fixture = try await Fixture(secret: Self.secret)
        let (_, response) = try await fixture.handshake("/v1/ws")
        #expect(response.status == 401)
        #expect(response.headers["www-authenticate"] == "Bearer")
        #expect(response.body.contains(#""error":"unauthorized""#))
        #expect(fixture.rejected("unauthorized") == 1)
        try await fixture.finish()
    }

    @Test func aBadTokenIsRefused401() async throws {
        let fixture = try await Fixture(secret: Self.secret)
        let (_, response) = try await fixture.handshake("/v1/ws?token=not.a.jwt")
        #expect(response.status == 401)
        #expect(fixture.rejected("unauthorized") == 1)
        try await fixture.finish()
    }

    @Test func aForeignOriginIsRefused403BeforeTheToken() async throws {
        let fixture = try await Fixture()
        let (_, response) = try await fixture.handshake("/v1/ws?user=ann", headers: [("Origin", "https://evil.example")])
        #expect(response.status == 403)
        #expect(response.body.contains(#""error":"origin_not_allowed""#))
        #expect(fixture.rejected("origin") == 1)
        // The machine's own page is let through.
        let (_, own) = try await fixture.handshake("/v1/ws?user=ann", headers: [("Origin", "http://localhost")])
        #expect(own.status == 101)
        try await fixture.finish()
    }

    @Test func unknownPathsAre404AndAPlainRequestIs426() async throws {
        let fixture = try await Fixture()
        let (_, unknown) = try await fixture.handshake("/v9/other")
        #expect(unknown.status == 404)
        let (_, badRoom) = try await fixture.handshake("/yjs/")
        #expect(badRoom.status == 404)
        let (_, plain) = try await fixture.handshake("/v1/ws?user=ann", upgrade: false)
        #expect(plain.status == 426)
        #expect(plain.headers["upgrade"] == "websocket")
        try await fixture.finish()
    }

    /// The admission rate reads the injected clock: at 1 per second the second handshake of a second is
    /// refused 503 with a Retry-After, and one second later a handshake is admitted again.
    @Test func admissionRefusesBeyondTheRateUntilTheClockMoves() async throws {
        let fixture = try await Fixture { $0.maxNewConnectionsPerSecond = 1 }
        let (_, first) = try await fixture.handshake("/v1/ws?user=ann")
        #expect(first.status == 101)
        let (_, second) = try await fixture.handshake("/v1/ws?user=bob")
        #expect(second.status == 503)
        #expect(second.body.contains(#""error":"overloaded""#))
        let retryAfter = second.headers["retry-after"].flatMap(Int.init)
        #expect(retryAfter.map { (1...30).contains($0) } == true)
        #expect(fixture.rejected("rate") == 1)
        fixture.clock.advance(ms: 1_000)
        let (_, third) = try await fixture.handshake("/v1/ws?user=bob")
        #expect(third.status == 101)
        try await fixture.finish()
    }

    /// The attempt rate is taken before the token is checked, so junk handshakes are bounded too (and do
    /// not use up the admission rate).
    @Test func theAttemptRateBoundsHandshakesBeforeTheTokenIsChecked() async throws {
        let fixture = try await Fixture(secret: Self.secret) {
            $0.maxHandshakeAttemptsPerSecond = 2
            $0.maxNewConnectionsPerSecond = 1
        }
        for _ in 0..<2 {
            let (_, junk) = try await fixture.handshake("/v1/ws?token=junk")
            #expect(junk.status == 401)
        }
        let (_, third) = try await fixture.handshake("/v1/ws?token=junk")
        #expect(third.status == 503)
        #expect(third.headers["retry-after"] != nil)
        #expect(fixture.rejected("attempt_rate") == 1)
        #expect(fixture.rejected("rate") == 0)
        fixture.clock.advance(ms: 1_000)
        let (_, later) = try await fixture.handshake("/v1/ws?token=junk")
        #expect(later.status == 401)
        try await fixture.finish()
    }

    @Test func aUserAtItsConnectionLimitIsRefused429() async throws {
        let fixture = try await Fixture { $0.maxConnectionsPerUser = 1 }
        let (_, first) = try await fixture.handshake("/v1/ws?user=ann")
        #expect(first.status == 101)
        let (_, second) = try await fixture.handshake("/v1/ws?user=ann")
        #expect(second.status == 429)
        #expect(second.body.contains(#""error":"too_many_connections""#))
        #expect(second.headers["retry-after"] == "5")
        // Another user still gets in.
        let (_, other) = try await fixture.handshake("/v1/ws?user=bob")
        #expect(other.status == 101)
        try await fixture.finish()
    }

    @Test func aDrainingNodeRefuses503() async throws {
        let fixture = try await Fixture()
        await fixture.server.stopAccepting()
        let (_, response) = try await fixture.handshake("/v1/ws?user=ann")
        #expect(response.status == 503)
        #expect(response.body.contains(#""error":"draining""#))
        #expect(response.headers["retry-after"] == "1")
        #expect(fixture.rejected("draining") == 1)
        try await fixture.finish()
    }

    /// A protocol version the server does not speak is upgraded and then closed with a code a browser can
    /// read (4400 too old, 4401 too new).
    @Test func anUnsupportedProtocolVersionIsClosedWithItsCode() async throws {
        let fixture = try await Fixture()
        let (channel, response) = try await fixture.handshake("/v2/ws?user=ann")
        #expect(response.status == 101)
        var bytes = response.rest
        while bytes.count < 4 { bytes += try await channel.waitForOutboundWrite(as: ByteBuffer.self).readableBytesView }
        #expect(bytes[0] == 0x88)  // FIN + close
        let code = Int(bytes[2]) << 8 | Int(bytes[3])
        #expect(code == ProtocolVersion.negotiate(2).refusal?.code)
        #expect(fixture.rejected("protocol_version") == 1)
        try await fixture.finish()
    }

    /// A socket that never sends its request is closed once `--handshake-timeout-ms` passes on the loop's
    /// clock, and counted.
    @Test func aSilentSocketIsClosedAtTheHandshakeTimeout() async throws {
        let fixture = try await Fixture { $0.handshakeTimeoutMs = 5_000 }
        let channel = try await fixture.accept()
        #expect(fixture.metric("tandem_handshakes_pending") == 1)
        await fixture.loop.advanceTime(by: .milliseconds(4_999))
        #expect(channel.isActive)
        await fixture.loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(fixture.metric("tandem_handshake_timeouts_total") == 1)
        #expect(fixture.metric("tandem_handshakes_pending") == 0)
        try await fixture.finish()
    }
}
