import Foundation
import TandemTestSupport
import Testing

/// The data-plane bounds reach `tandem serve` both as flags and as TANDEM_<NAME> environment variables.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct BoundsFlagsTests {
    @Test func boundsAreSetByFlagsAndByTheEnvironment() async throws {
        let redis = try RedisServerProcess()
        let process = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: [
                "serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0", "--node-id", "flags", "--redis", redis.url,
                "--max-docs-per-connection", "2",
            ],
            environment: ["TANDEM_HANDSHAKE_TIMEOUT_MS": "4000", "TANDEM_MAX_PENDING_HANDSHAKES": "3"])
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

        // TANDEM_MAX_PENDING_HANDSHAKES=3 and TANDEM_HANDSHAKE_TIMEOUT_MS=4000 (the default is 10 s) (environment).
        // The waits before the timeout are bounded by 3.5 s, not 2: on a busy machine the node may take
        // seconds to handle an accept, and only the 4 s timeout (not 3) leaves room for that.
        let opened = ContinuousClock.now
        let idle = try (0..<3).map { _ in try RawSocket(port: port) }
        try await waitUntil("3 pending") { try await HTTP.metric(port: opsPort, "tandem_handshakes_pending") == 3 }
        // At the bound a newcomer displaces the oldest pending socket (a flood cannot lock real clients out).
        // "Oldest" is in the server's accept order, which two event loops may swap for sockets opened
        // within a millisecond, so any one of the three may be the one.
        let newcomer = try RawSocket(port: port)
        try await waitUntil("one idle socket displaced at once", timeout: .milliseconds(3500)) { idle.contains { $0.closedByPeer } }
        #expect(idle.filter { $0.closedByPeer }.count == 1)
        #expect(!newcomer.closedByPeer)
        try await waitUntil("still 3 pending", timeout: .milliseconds(3500)) {
            try await HTTP.metric(port: opsPort, "tandem_handshakes_pending") == 3
        }
        try await waitUntil("the rest closed after the timeout", timeout: .seconds(10)) {
            idle.allSatisfy { $0.closedByPeer } && newcomer.closedByPeer
        }
        // The 10 s default cannot close the newcomer (opened after `opened`) sooner than 10 s: anything less
        // is the 4 s timeout, however slow the machine.
        #expect(ContinuousClock.now - opened < .seconds(10), "closed by the 4 s timeout, not the 10 s default")
    }
}
