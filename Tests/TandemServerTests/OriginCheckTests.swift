import Foundation
import TandemServer
import TandemTestSupport
import Testing

/// Cross-site WebSocket hijacking: a page the user happens to open must not drive their browser into a
/// development-mode node on their machine (anyone may claim any user there), and operators can list the
/// pages allowed to connect in token mode.
@Suite(.serialized, .cleanup) struct OriginCheckTests {
    static let secret = "origin-test-secret-0123456789abcdef-0123456789"

    /// Status code of a handshake to `node` with these extra headers (and the body of a refusal).
    func handshake(_ node: InProcessNode, query: String = "user=alice", origin: String?) async throws -> (Int, String) {
        let socket = try RawSocket(port: node.port)
        defer { socket.close() }
        let status = try await socket.upgrade(query: query, headers: origin.map { "Origin: \($0)\r\n" } ?? "")
        if status != 101 { try await waitUntil("refusal body") { socket.closedByPeer || socket.receivedText.contains("}") } }
        return (status, socket.receivedText)
    }

    @Test func developmentModeRefusesForeignPagesBeforeAuthentication() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "origin-dev", stopWhenDone: true)
        let (status, body) = try await handshake(node, origin: "https://evil.example")
        #expect(status == 403)
        #expect(body.contains(#""error":"origin_not_allowed""#), "\(body)")
        #expect(body.contains("--allowed-origins"))
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="origin"}"#) == 1)
        #expect(try await handshake(node, origin: "null").0 == 403, "sandboxed iframes and file: pages")
        #expect(try await handshake(node, origin: "http://localhost:5173").0 == 101, "a dev server on this machine")
        #expect(try await handshake(node, origin: "http://127.0.0.1:\(node.port)").0 == 101, "the node's own demo page")
        #expect(try await handshake(node, origin: nil).0 == 101, "a native client sends no Origin")
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="origin"}"#) == 2)
    }

    @Test func tokenModeAllowsEveryPageUnlessOriginsAreListed() async throws {
        let redis = try RedisServerProcess()
        let token = try await makeToken(secret: Self.secret, user: "ada", docs: ["*": "editor"])
        let open = try await InProcessNode.start(redis: redis.url, nodeID: "origin-open", stopWhenDone: true) {
            $0.jwtSecret = Self.secret
        }
        #expect(try await handshake(open, query: "token=\(token)", origin: "https://any.example").0 == 101)

        let listed = try await InProcessNode.start(redis: redis.url, nodeID: "origin-listed", stopWhenDone: true) {
            $0.jwtSecret = Self.secret
            $0.allowedOrigins = ["https://app.example.com", "https://*.preview.example.com"]
        }
        #expect(try await handshake(listed, query: "token=\(token)", origin: "https://app.example.com").0 == 101)
        #expect(try await handshake(listed, query: "token=\(token)", origin: "https://pr-7.preview.example.com").0 == 101)
        #expect(try await handshake(listed, query: "token=\(token)", origin: "https://evil.example").0 == 403)
        #expect(try await handshake(listed, query: "token=\(token)", origin: "http://localhost:3000").0 == 403)
        #expect(try await handshake(listed, query: "token=\(token)", origin: nil).0 == 101)
    }

    @Test func entriesThatAreNotOriginsStopTheNodeFromStarting() {
        var config = ServerConfiguration(nodeID: "origin-config", redisURL: "redis://127.0.0.1:6379")
        config.allowedOrigins = ["app.example.com"]
        #expect(throws: ConfigurationError.self) { try config.validate() }
        config.allowedOrigins = ["https://app.example.com", "*"]
        #expect(throws: Never.self) { try config.validate() }
    }
}
