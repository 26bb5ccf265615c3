import Foundation
import TandemTestSupport
import Testing

/// The data-plane bounds reach `tandem serve` both as flags and as TANDEM_<NAME> environment variables.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2))) struct BoundsFlagsTests {
    @Test func boundsAreSetByFlagsAndByTheEnvironment() async throws {
        let redis = try RedisServerProcess()
        let process = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: [
                "serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0", "--node-id", "flags", "--redis", redis.url,
                "--max-docs-per-connection", "2",
            ],
            environment: ["TANDEM_HANDSHAKE_TIMEOUT_MS": "700", "TANDEM_MAX_PENDING_HANDSHAKES": "3"])
        defer { process.kill() }
        let line = try await process.waitForOutput(matching: #"ops\.port=\d+ .*port=\d+.*listening"#, timeout: .seconds(30))
        func value(_ key: String) -> Int {
            let pattern = try! Regex("(^| )\(key)=(\\d+)")
            return line.firstMatch(of: pattern).flatMap { Int($0.output[2].substring ?? "") } ?? 0
        }
        let port = value("port")
        let opsPort = value("ops\\.port")
        try await waitUntil("node ready") { (try? await HTTP.get(port: opsPort, path: "/readyz").status) == 200 }

        // --max-docs-per-connection 2 (flag).
        let alice = try await TestClient.connect("ws://127.0.0.1:\(port)/v1/ws?user=alice", name: "alice")
        try await alice.join("a")
        try await alice.join("b")
        alice.sendRaw(#"{"t":"join","doc":"c"}"#)
        #expect(JSON.string(try await alice.next("error", doc: "c"), at: "code") == "too_many_docs")
        await alice.close()

        // TANDEM_MAX_PENDING_HANDSHAKES=3 and TANDEM_HANDSHAKE_TIMEOUT_MS=700 (environment).
        let idle = try (0..<3).map { _ in try RawSocket(port: port) }
        try await waitUntil("3 pending") { try await HTTP.metric(port: opsPort, "tandem_handshakes_pending") == 3 }
        let refused = try RawSocket(port: port)
        try await waitUntil("the 4th refused at once") { refused.closedByPeer }
        #expect(refused.receivedText.hasPrefix("HTTP/1.1 503"))
        try await waitUntil("the idle ones closed after the timeout", timeout: .seconds(10)) { idle.allSatisfy { $0.closedByPeer } }
    }
}
