import Foundation
import TandemTestSupport
import Testing

/// `--event-loops` (and TANDEM_EVENT_LOOPS) sets how many NIO event-loop threads the node runs, counted in
/// /proc by their names (NIO names them `NIO-ELT-<group>-#<n>`); the node serves with one as with several.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct EventLoopsFlagTests {
    private static func eventLoopThreads(of pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.filter { task in
            let name = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)) ?? ""
            return name.hasPrefix("NIO-ELT-")
        }.count
    }

    @Test(arguments: [(["--event-loops", "1"], [:]), ([], ["TANDEM_EVENT_LOOPS": "3"])] as [([String], [String: String])])
    func theNodeRunsTheEventLoopsItIsTold(flags: [String], environment: [String: String]) async throws {
        let redis = try RedisServerProcess()
        let process = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0", "--node-id", "loops", "--redis", redis.url]
                + flags,
            environment: environment)
        defer { process.kill() }
        let line = try await process.waitForOutput(matching: #"ops\.port=\d+ .*port=\d+.*listening"#, timeout: .seconds(30))
        let port = Int(try #require(line.firstMatch(of: #/(^| )port=(\d+)/#)?.output.2)) ?? 0
        let expected = flags.isEmpty ? 3 : 1
        // The ops plane and the Redis threads are not NIO event loops; the count is the client loops' alone.
        #expect(Self.eventLoopThreads(of: process.pid) == expected)

        // Two clients on two docs (both docs on the one loop when there is one): presence still flows.
        let alice = try await TestClient.connect("ws://127.0.0.1:\(port)/v1/ws?user=alice", name: "alice")
        let bob = try await TestClient.connect("ws://127.0.0.1:\(port)/v1/ws?user=bob", name: "bob")
        for doc in ["d1", "d2"] {
            try await alice.join(doc)
            try await bob.join(doc)
            alice.sendRaw(#"{"t":"presence","doc":"\#(doc)","state":{"x":1}}"#)
            _ = try await bob.next("presence", doc: doc)
        }
        await alice.close()
        await bob.close()
    }
}
