import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// A client built for another protocol version gets a close code it can read (a browser cannot read an
/// HTTP 404), and the welcome states the versions the server speaks.
@Suite(.serialized, .cleanup) struct ProtocolVersionTests {
    /// Upgrades `path` and returns the close frame's code and reason the server sends at once.
    func closeFrame(_ node: InProcessNode, path: String) async throws -> (status: Int, code: Int?, reason: String) {
        let socket = try RawSocket(port: node.port)
        defer { socket.close() }
        let status = try await socket.upgrade(path: path, query: "user=future")
        guard status == 101 else { return (status, nil, "") }
        try await waitUntil("the close frame") { socket.closedByPeer || socket.received.count >= 4 }
        try await waitUntil("the whole close frame") { socket.closedByPeer }
        let frame = socket.received
        guard frame.count >= 4, frame[0] == 0x88 else { return (status, nil, "") }
        let length = Int(frame[1] & 0x7F)
        let code = Int(frame[2]) << 8 | Int(frame[3])
        let reason = String(decoding: frame[4..<min(frame.count, 2 + length)], as: UTF8.self)
        return (status, code, reason)
    }

    @Test func aNewerOrOlderClientIsUpgradedAndClosedWithACodeItCanRead() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "versions", stopWhenDone: true)
        let newer = try await closeFrame(node, path: "/v2/ws")
        #expect(newer.status == 101)
        #expect(newer.code == 4401)
        #expect(newer.reason.hasPrefix("server_too_old"), "\(newer.reason)")
        #expect(newer.reason.contains("1–1"))
        let future = try await closeFrame(node, path: "/v9999/ws")
        #expect(future.code == 4401)
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="protocol_version"}"#) == 2)
        #expect(try await node.value("tandem_connections") == 0, "never a connection")
        // Not versions: 404 as before.
        for path in ["/v0/ws", "/v01/ws", "/v/ws", "/v10000/ws", "/v1/ws/", "/v2/wss"] {
            #expect(try await closeFrame(node, path: path).status == 404, "\(path)")
        }
    }

    @Test func theWelcomeStatesTheVersionsTheServerSpeaks() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "versions-welcome", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        #expect(JSON.int(alice.welcome, at: "protocol") == 1)
        #expect(JSON.int(alice.welcome, at: "protocols.min") == 1)
        #expect(JSON.int(alice.welcome, at: "protocols.max") == 1)
        await alice.close()
    }
}
