import Foundation
import TandemTestSupport
import Testing

/// A frame the WebSocket decoder rejects closes the connection with the RFC 6455 code, and the close is
/// counted as `protocol_error` — not `abrupt`, which is what operators read as network loss (the
/// "Connections closed /s: misbehaving clients" panel and its runbook tell the two apart).
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2))) struct FramingErrorCloseTests {
    static let cases: [(name: String, bytes: [UInt8], code: UInt16)] = [
        // FIN clear on a ping: control frames must not be fragmented (§5.5).
        ("fragmented ping", [0x09, 0x80, 0, 0, 0, 0], 1002),
        // A ping with 126 bytes: control frames carry at most 125 (§5.5).
        ("oversized control frame", RawSocket.frame(opcode: 0x9, [UInt8](repeating: 0x2e, count: 126)), 1002),
        // A header announcing 2^40 bytes: over the frame size limit, refused before any payload arrives.
        ("frame over the size limit", [0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1009),
    ]

    @Test(arguments: 0..<3)
    func aFramingErrorIsClosedWithItsCodeAndCountedAsAProtocolError(_ index: Int) async throws {
        let (name, bytes, code) = Self.cases[index]
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "framing-\(index)", stopWhenDone: true)
        let socket = try RawSocket(port: node.port)
        #expect(try await socket.upgrade(query: "user=framer") == 101, "\(name)")
        try await waitUntil("\(name): connected") { try await node.value("tandem_connections") == 1 }

        try socket.write(bytes)
        try await waitUntil("\(name): closed by the node", timeout: .seconds(10)) { socket.closedByPeer }
        let close = socket.frames().first { $0.opcode == 0x8 }
        #expect(close.map { UInt16($0.payload[0]) << 8 | UInt16($0.payload[1]) } == code, "\(name): close frame \(String(describing: close))")
        try await waitUntil("\(name): the close is counted") { try await node.value("tandem_connections") == 0 }
        #expect(try await node.value(#"tandem_connections_closed_total{reason="protocol_error"}"#) == 1, "\(name)")
        #expect(try await node.value(#"tandem_connections_closed_total{reason="abrupt"}"#) == 0, "\(name)")
    }

    /// The other way round: a socket reset by the client (what a crashed client or a dropped network path
    /// looks like) reaches the node as an I/O error, and is `abrupt`, not a protocol error.
    @Test func aResetSocketIsAbruptNotAProtocolError() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "reset", stopWhenDone: true)
        let socket = try RawSocket(port: node.port)
        #expect(try await socket.upgrade(query: "user=resetter") == 101)
        try await waitUntil("connected") { try await node.value("tandem_connections") == 1 }
        // SO_LINGER 0: close() sends RST instead of FIN.
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(socket.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        socket.close()
        try await waitUntil("the close is counted") { try await node.value("tandem_connections") == 0 }
        #expect(try await node.value(#"tandem_connections_closed_total{reason="abrupt"}"#) == 1)
        #expect(try await node.value(#"tandem_connections_closed_total{reason="protocol_error"}"#) == 0)
    }
}
