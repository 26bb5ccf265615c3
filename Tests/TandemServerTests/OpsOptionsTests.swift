import Foundation
import TandemTestSupport
import Testing

/// The ops-plane options as an operator gives them to `tandem serve`: flags, TANDEM_* environment
/// variables and the token file (issue 7: the token must not have to be on the command line).
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct OpsOptionsTests {
    static let token = "file-or-env-ops-token-0123456789"

    /// `tandem serve` with `arguments` and `environment`; its ops port once it is listening.
    private func serve(
        _ redis: RedisServerProcess, _ arguments: [String], environment: [String: String] = [:]
    ) async throws -> (ChildProcess, Int) {
        let process = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0", "--redis", redis.url] + arguments,
            environment: environment)
        Cleanup.current.add {
            process.signal(SIGTERM)
            _ = try? await process.waitForExit()
        }
        let line = try await process.waitForOutput(matching: #"ops\.port=\d+ .*listening"#, timeout: .seconds(30))
        let port = line.firstMatch(of: /ops\.port=(\d+)/).flatMap { Int($0.output.1) } ?? 0
        return (process, port)
    }

    private func get(_ port: Int, _ path: String, _ headers: [(String, String)] = []) async throws -> Int {
        let raw = "GET \(path) HTTP/1.0\r\n" + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        return try await Task.detached { try HTTP.request(port: port, raw: raw).status }.value
    }

    @Test func theTokenComesFromTheEnvironmentOrAFile() async throws {
        let redis = try RedisServerProcess()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ops-token-\(UUID().uuidString)")
        try (Self.token + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }

        let (fromEnv, envPort) = try await serve(redis, [], environment: ["TANDEM_OPS_TOKEN": Self.token])
        let (fromFile, filePort) = try await serve(redis, ["--ops-token-file", file.path])
        for port in [envPort, filePort] {
            #expect(try await get(port, "/api/docs/d") == 401)
            #expect(try await get(port, "/api/docs/d", [("Authorization", "Bearer \(Self.token)")]) == 200)
            #expect(try await get(port, "/api/status") == 200)
        }
        #expect(!fromEnv.arguments.joined(separator: " ").contains(Self.token), "not on the command line")
        #expect(!fromFile.arguments.joined(separator: " ").contains(Self.token))
    }

    @Test func allowedHostsComeFromTheEnvironment() async throws {
        let redis = try RedisServerProcess()
        let (_, port) = try await serve(redis, [], environment: ["TANDEM_OPS_ALLOWED_HOSTS": "ops.example, Tandem-1.internal"])
        #expect(try await get(port, "/healthz", [("Host", "tandem-1.internal:\(port)")]) == 200)
        #expect(try await get(port, "/healthz", [("Host", "ops.example")]) == 200)
        #expect(try await get(port, "/healthz", [("Host", "evil.example")]) == 421)
    }

    @Test func badOpsOptionsStopTheStartWithAReason() async throws {
        let redis = try RedisServerProcess()
        let cases: [([String], String)] = [
            (["--ops-token", Self.token, "--ops-token-file", "/nonexistent"], "give the ops token once"),
            (["--ops-token", "short"], "--ops-token must be 16–1024"),
            (["--ops-token-file", "/nonexistent/token"], "cannot read --ops-token-file"),
            (["--ops-allowed-hosts", "not a host"], "not a host name"),
            (["--ops-max-connections", "0"], "--ops-max-connections must be"),
            (["--ops-idle-timeout-ms", "10"], "--ops-idle-timeout-ms must be"),
        ]
        for (arguments, reason) in cases {
            let process = try ChildProcess(
                executable: try BuiltProducts.executable(named: "tandem"),
                arguments: ["serve", "--port", "0", "--ops-port", "0", "--redis", redis.url] + arguments)
            let status = try await process.waitForExit(timeout: .seconds(30))
            #expect(status != 0, "\(arguments)")
            #expect(process.logText.contains(reason), "\(arguments): \(process.logText.suffix(300))")
        }
    }
}
