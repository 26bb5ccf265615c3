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
        // RSV1 set: no extension was negotiated (§5.2).
        ("reserved bit", [0xC1, 0x80, 0, 0, 0, 0], 1002),
        // Opcode 3 is reserved (§5.2).
        ("unknown opcode", [0x83, 0x80, 0, 0, 0, 0], 1002),
        // A client frame without a mask (§5.1).
        ("unmasked frame", [0x81, 0x0C] + Array(#"{"t":"ping"}"#.utf8), 1002),
        // A continuation with no message to continue (§5.4).
        ("continuation without a start", RawSocket.frame(opcode: 0x0, Array("x".utf8)), 1002),
        // A new text message while a fragmented one is unfinished (§5.4).
        ("message inside a fragmented one", [0x01, 0x81, 0, 0, 0, 0, 0x61] + RawSocket.text("b"), 1002),
    ]

    /// The close frame's code and text.
    static func close(_ socket: RawSocket) -> (code: UInt16, text: String)? {
        socket.frames().first { $0.opcode == 0x8 }.map { (UInt16($0.payload[0]) << 8 | UInt16($0.payload[1]), String(decoding: $0.payload.dropFirst(2), as: UTF8.self)) }
    }

    @Test(arguments: 0..<8)
    func aFramingErrorIsClosedWithItsCodeAndCountedAsAProtocolError(_ index: Int) async throws {
        try await expectRefused(index, path: "/v1/ws")
    }

    /// `/yjs` keeps NIO's frame decoder, which passes the three: refused the same way there, before the
    /// fragment aggregator (which would hand on a reassembled message without a mask), after a valid
    /// binary frame (a y-protocols sync step 1 with an empty state vector).
    @Test(arguments: 3..<6)
    func yjsRefusesReservedBitsUnknownOpcodesAndUnmaskedFramesToo(_ index: Int) async throws {
        try await expectRefused(index, path: "/yjs/framing", after: RawSocket.frame(opcode: 0x2, [0, 0, 1, 0]))
    }

    /// Sends case `index`'s bytes (after `after`, frames the endpoint takes) on a new connection to `path`
    /// of a new node: the node closes it with the case's code and a text, counted as `protocol_error`, not
    /// `abrupt`.
    func expectRefused(_ index: Int, path: String, after: [UInt8] = []) async throws {
        let (name, bytes, code) = Self.cases[index]
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "framing-\(index)", stopWhenDone: true)
        let socket = try RawSocket(port: node.port)
        #expect(try await socket.upgrade(path: path, query: "user=framer") == 101, "\(name)")
        try await waitUntil("\(name): connected") { try await node.value("tandem_connections") == 1 }

        try socket.write(after + bytes)
        try await waitUntil("\(name): closed by the node", timeout: .seconds(10)) { socket.closedByPeer }
        let close = Self.close(socket)
        #expect(close?.code == code, "\(name): close frame \(String(describing: close))")
        #expect(close?.text.isEmpty == false, "\(name): the close says why")
        try await waitUntil("\(name): the close is counted") { try await node.value("tandem_connections") == 0 }
        #expect(try await node.value(#"tandem_connections_closed_total{reason="protocol_error"}"#) == 1, "\(name)")
        #expect(try await node.value(#"tandem_connections_closed_total{reason="abrupt"}"#) == 0, "\(name)")
    }

    /// A text message that is not UTF-8 fails the connection with 1007 (RFC 6455 §8.1), counted as
    /// `protocol_error`; the same node takes UTF-8 that is not ASCII, also with a character split across
    /// two fragments (the check is on the whole message).
    @Test func textThatIsNotUTF8IsClosedWith1007() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "utf8", stopWhenDone: true)
        let good = try RawSocket(port: node.port)
        defer { good.close() }
        #expect(try await good.upgrade(query: "user=writer") == 101)
        // "é" is C3 A9: the fragments cut between its two bytes.
        let join = Array(#"{"t":"join","doc":"utf8","state":{"name":"Zoé"}}"#.utf8)
        let cut = join.firstIndex(of: 0xC3)! + 1
        try good.write(
            InboundFrameDecoderTests.frame(firstByte: 0x01, payload: Array(join[..<cut]))
                + InboundFrameDecoderTests.frame(firstByte: 0x80, payload: Array(join[cut...])))
        try good.write(RawSocket.text(#"{"t":"presence","doc":"utf8","state":{"name":"Zoë ✓"}}"#))
        try good.write(RawSocket.text(#"{"t":"ping"}"#))
        try await waitUntil("joined and answered") {
            good.frames().contains { $0.opcode == 0x1 && String(decoding: $0.payload, as: UTF8.self).contains(#""t":"pong""#) }
        }
        #expect(good.frames().contains { $0.opcode == 0x1 && String(decoding: $0.payload, as: UTF8.self).contains(#""t":"joined""#) })
        #expect(!good.frames().contains { $0.opcode == 0x1 && String(decoding: $0.payload, as: UTF8.self).contains(#""t":"error""#) })

        for (index, invalid) in ([[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xFF], [0xE2, 0x82]] as [[UInt8]]).enumerated() {
            let socket = try RawSocket(port: node.port)
            defer { socket.close() }
            #expect(try await socket.upgrade(query: "user=bad\(index)") == 101)
            try socket.write(RawSocket.frame(opcode: 0x1, Array(#"{"t":"ping","x":""#.utf8) + invalid + Array(#""}"#.utf8)))
            try await waitUntil("closed with 1007 (\(invalid))") { Self.close(socket) != nil }
            #expect(Self.close(socket)?.code == 1007)
            #expect(Self.close(socket)?.text == "text message is not valid UTF-8")
            try await waitUntil("counted (\(invalid))") {
                try await node.value(#"tandem_connections_closed_total{reason="protocol_error"}"#) == Double(index + 1)
            }
        }
        #expect(try await node.value(#"tandem_connections_closed_total{reason="abrupt"}"#) == 0)
        #expect(try await node.value("tandem_connections") == 1, "the writer is still connected")
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
