import Foundation
import TandemTestSupport
import Testing

/// `/v1/ws` decodes frames in its connection's handler (`InboundFrameDecoder`, issue 14) from whatever
/// the socket reads give it: frames that arrive with the upgrade request itself (handed on by NIO's
/// upgrade handler as raw bytes), frames cut into pieces across reads, several frames in one read, and a
/// ping between the fragments of a message. Over a real socket to a real node, with non-zero masking keys.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2))) struct FrameDecodingSocketTests {
    static func masked(_ text: String, firstByte: UInt8 = 0x81, key: [UInt8] = [0x9C, 0x01, 0x5A, 0xE7]) -> [UInt8] {
        InboundFrameDecoderTests.frame(firstByte: firstByte, payload: Array(text.utf8), key: key)
    }

    /// The server's text frames so far.
    func texts(_ socket: RawSocket) -> [String] {
        socket.frames().filter { $0.opcode == 0x1 }.map { String(decoding: $0.payload, as: UTF8.self) }
    }

    @Test func framesArriveWholeHoweverTheReadsCutThem() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "frames", stopWhenDone: true)
        let socket = try RawSocket(port: node.port)
        defer { socket.close() }
        // A join in the same write as the upgrade request: NIO's upgrade handler keeps those bytes and
        // hands them on after the upgrade, straight to the connection's handler.
        #expect(try await socket.upgrade(query: "user=cutter", trailing: Self.masked(#"{"t":"join","doc":"first"}"#)) == 101)
        try await waitUntil("joined with the upgrade's bytes") { texts(socket).contains { $0.contains(#""t":"joined""#) && $0.contains("first") } }

        // A join a byte at a time (each its own send; the node may read them in any pieces).
        for byte in Self.masked(#"{"t":"join","doc":"second"}"#, key: [1, 2, 3, 4]) { try socket.write([byte]) }
        try await waitUntil("joined a byte at a time") { texts(socket).contains { $0.contains(#""t":"joined""#) && $0.contains("second") } }

        // Two joins and a ping in one write, the second join in two fragments with the ping between them
        // (and the 16-bit length form for a long doc id).
        let long = String(repeating: "x", count: 120)
        let fragmented = Array(#"{"t":"join","doc":"\#(long)"}"#.utf8)
        let key: [UInt8] = [0xFF, 0x10, 0x00, 0x80]
        let burst =
            Self.masked(#"{"t":"join","doc":"third"}"#)
            + InboundFrameDecoderTests.frame(firstByte: 0x01, payload: Array(fragmented[..<50]), key: key)
            + InboundFrameDecoderTests.frame(firstByte: 0x89, payload: Array("p".utf8), key: key)
            + InboundFrameDecoderTests.frame(firstByte: 0x80, payload: Array(fragmented[50...]), key: key, lengthForm: 16)
        // Cut inside the second fragment's header.
        let cut = burst.count - fragmented.count + 50 + 2
        try socket.write(Array(burst[..<cut]))
        try socket.write(Array(burst[cut...]))
        try await waitUntil("joined the burst's two docs and answered its ping") {
            let texts = texts(socket)
            return texts.contains { $0.contains(#""t":"joined""#) && $0.contains("third") }
                && texts.contains { $0.contains(#""t":"joined""#) && $0.contains(long) }
                && socket.frames().contains { $0.opcode == 0xA && $0.payload == Array("p".utf8) }
        }
        #expect(try await node.value(#"tandem_connections_closed_total{reason="protocol_error"}"#) == 0)
        #expect(try await node.value("tandem_connections") == 1)
    }
}
