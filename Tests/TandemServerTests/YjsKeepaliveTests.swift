import Foundation
import NIOCore
import TandemCore
import TandemTestSupport
import Testing

@testable import TandemServer

/// `PongResponder` alone: one pong in flight, the latest waiting ping answered next, nothing after close.
@Suite struct PongResponderTests {
    @Test func onePongInFlightAndOnlyTheLatestWaitingPingIsAnswered() {
        var pongs = PongResponder()
        let (first, firstCoalesced) = pongs.ping(ByteBuffer(string: "1"))
        #expect(first == ByteBuffer(string: "1") && !firstCoalesced)
        #expect(pongs.ping(ByteBuffer(string: "2")) == (nil, false))
        #expect(pongs.ping(ByteBuffer(string: "3")) == (nil, true), "2 is replaced by 3")
        #expect(pongs.written(closing: false) == ByteBuffer(string: "3"))
        #expect(pongs.written(closing: false) == nil)
        #expect(pongs.ping(ByteBuffer(string: "4")).write == ByteBuffer(string: "4"), "nothing in flight: answered at once")
        _ = pongs.ping(ByteBuffer(string: "5"))
        #expect(pongs.written(closing: true) == nil, "closing: the waiting ping is dropped")
        #expect(pongs.ping(ByteBuffer(string: "6")).write != nil)
    }
}

/// `/yjs/{room}` answers pings as `/v1/ws` does (`PongResponder`): at most one pong in flight for a client
/// that does not read, the latest ping answered once it reads again.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct YjsKeepaliveTests {
    @Test func aPingFloodOnAYjsRoomKeepsOnePongInFlightAndTheLastPingIsAnswered() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "yjs-pong-flood", stopWhenDone: true)
        let socket = try RawSocket(port: node.port, receiveBuffer: 4096)
        #expect(try await socket.upgrade(path: "/yjs/pong-room", query: "user=pinger") == 101)
        let pings = 20_000
        var flood: [UInt8] = []
        flood.reserveCapacity(pings * 131)
        for i in 1...pings {
            var payload = Array(String(format: "%08d", i).utf8)
            payload += [UInt8](repeating: 0x2e, count: 125 - payload.count)
            flood += RawSocket.frame(opcode: 0x9, payload)
        }
        try socket.write(flood)
        // Without coalescing, every ping gets its own pong queued (2.6 MB for a client that reads nothing).
        try await waitUntil("most pings were answered by a later pong", timeout: .seconds(30)) {
            try await node.value("tandem_pongs_coalesced_total") >= Double(pings / 2)
        }
        #expect(!socket.closedByPeer, "a ping flood is not a reason to close")
        socket.setReceiveBuffer(1 << 20)

        // Reading again, the client gets its pongs; the last one answers the last ping.
        try await waitUntil("the pong for the last ping", timeout: .seconds(20)) {
            let pongs = socket.frames().filter { $0.opcode == 0xA }
            return pongs.last.map { String(decoding: $0.payload.prefix(8), as: UTF8.self) } == String(format: "%08d", pings)
        }
        let pongs = socket.frames().filter { $0.opcode == 0xA }.count
        #expect(pongs < pings / 2, "\(pongs) pongs for \(pings) pings")
        socket.close()
    }
}
