import NIOCore
import NIOEmbedded
import NIOWebSocket
@testable import TandemServer
import Testing

/// `KeepAlive`, the one keep-alive of `/v1/ws` and `/yjs/{room}` connections, on an `EmbeddedChannel`
/// whose loop's virtual time drives the pings. (ConnectionLayerTests checks it through a `ClientConnection`:
/// the 1001 close, pong coalescing.)
@Suite struct KeepAliveTests {
    final class Fixture {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        let metrics = TandemMetrics(nodeID: "test-node")
        var keepAlive: KeepAlive?
        var timeouts = 0
        var pongsWritten = 0

        init() throws {
            channel = EmbeddedChannel(handler: WebSocketFrameEncoder(), loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
            let keepAlive = KeepAlive(channel: channel, metrics: metrics)
            keepAlive.start(
                interval: .seconds(1), timedOut: { [unowned self] in self.timeouts += 1 },
                wrotePong: { [unowned self] in self.pongsWritten += 1 })
            self.keepAlive = keepAlive
        }

        deinit {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            try? loop.syncShutdownGracefully()
        }

        /// Opcodes of the frames written since the last call.
        func opcodes() throws -> [UInt8] {
            channel.flush()
            var bytes: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
            var opcodes: [UInt8] = []
            var index = 0
            while index + 2 <= bytes.count {
                opcodes.append(bytes[index] & 0x0F)
                index += 2 + Int(bytes[index + 1] & 0x7F)  // the test's frames are short
            }
            return opcodes
        }

        func ping(_ text: String) {
            keepAlive?.receivedPing(ByteBuffer(string: text))
        }
    }

    @Test func twoUnansweredPingsThenTheTimeout() throws {
        let fixture = try Fixture()
        fixture.loop.advanceTime(by: .seconds(2))
        #expect(try fixture.opcodes() == [0x9, 0x9])
        #expect(fixture.timeouts == 0)
        fixture.loop.advanceTime(by: .seconds(1))
        #expect(fixture.timeouts == 1)
        #expect(try fixture.opcodes().isEmpty)
    }

    @Test func anyFrameHeardStartsTheCountAgain() throws {
        let fixture = try Fixture()
        for _ in 0..<5 {
            fixture.loop.advanceTime(by: .seconds(2))
            fixture.keepAlive?.heard()
        }
        #expect(fixture.timeouts == 0)
    }

    @Test func pingsAreAnsweredWithOnePongInFlight() throws {
        let fixture = try Fixture()
        fixture.ping("a")
        fixture.ping("b")
        fixture.ping("c")
        #expect(fixture.pongsWritten == 1)
        // The first pong's write completes at the flush; then the latest waiting ping is answered.
        #expect(try fixture.opcodes() == [0xA])
        #expect(fixture.pongsWritten == 2)
        #expect(try fixture.opcodes() == [0xA])
    }

    @Test func afterStopNeitherPingsNorPongs() throws {
        let fixture = try Fixture()
        fixture.keepAlive?.stop()
        fixture.loop.advanceTime(by: .seconds(5))
        fixture.ping("a")
        #expect(try fixture.opcodes().isEmpty)
        #expect(fixture.timeouts == 0)
    }

    /// The repeated ping task does not keep its keep-alive alive: once the connection lets it go, pings stop.
    @Test func aReleasedKeepAliveStopsPinging() throws {
        let fixture = try Fixture()
        weak let released = fixture.keepAlive
        fixture.keepAlive = nil
        #expect(released == nil)
        fixture.loop.advanceTime(by: .seconds(5))
        #expect(try fixture.opcodes().isEmpty)
    }
}
