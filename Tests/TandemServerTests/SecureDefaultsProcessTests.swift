import Foundation
import Testing
import TandemServer
import TandemTestSupport

/// Issue 7, secure defaults, through the real `tandem` binary: where development mode listens, what the
/// operator is told, where the secret may come from, and `tandem token`'s rules.
@Suite(.serialized, .cleanup) struct SecureDefaultsProcessTests {
    static let secret = "process-test-secret-0123456789abcdef-xyz"

    /// Starts `tandem serve` on `redis` with free ports (and no --host unless `extra` has one).
    func serve(_ redis: RedisServerProcess, _ extra: [String] = [], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: ["serve", "--port", "0", "--ops-port", "0", "--redis", redis.url] + extra,
            environment: environment)
    }

    /// The `listening` line and the client port it names.
    func listening(_ process: ChildProcess) async throws -> (line: String, port: Int) {
        let line = try await process.waitForOutput(matching: #"ops\.port=\d+ .*listening"#, timeout: .seconds(30))
        let port = line.firstMatch(of: #/(^| )port=(\d+)/#).flatMap { Int($0.output.2) } ?? 0
        return (line, port)
    }

    @Test func withoutASecretTheClientPortListensOnLoopbackOnly() async throws {
        let redis = try RedisServerProcess()
        let node = try serve(redis)
        let (line, port) = try await listening(node)
        #expect(line.contains("ws://127.0.0.1:\(port)/v1/ws"), "\(line)")
        #expect(line.contains("auth=development(loopback-only)"), "\(line)")
        #expect(listeningAddresses(port: port) == ["127.0.0.1"], "bound to loopback only")
        #expect(node.logText.contains("development mode on 127.0.0.1 only"))
        // Still the one-command demo: a client on this machine connects as anyone.
        let client = try await TestClient.connect("ws://127.0.0.1:\(port)/v1/ws?user=demo", name: "demo")
        #expect(JSON.string(client.welcome, at: "user") == "demo")
        await client.close()
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test func anExplicitReachableHostWithoutASecretIsRefusedWithWhatToDo() async throws {
        let redis = try RedisServerProcess()
        for host in ["0.0.0.0", "::"] {
            let node = try serve(redis, ["--host", host])
            #expect(try await node.waitForExit(timeout: .seconds(15)) != 0)
            let log = node.logText
            #expect(log.contains("refusing development mode on --host \(host)"), "\(log)")
            #expect(log.contains("--jwt-secret-file") && log.contains("--insecure-dev-mode") && log.contains("--host 127.0.0.1"))
            #expect(!log.contains("listening"))
        }
    }

    @Test(arguments: [false, true])
    func insecureDevModeListensEverywhereAndSaysSoLoudly(fromEnvironment: Bool) async throws {
        let redis = try RedisServerProcess()
        let node = try serve(
            redis, fromEnvironment ? [] : ["--insecure-dev-mode"],
            environment: fromEnvironment ? ["TANDEM_INSECURE_DEV_MODE": "true"] : [:])
        let (line, port) = try await listening(node)
        #expect(listeningAddresses(port: port).isSubset(of: ["0.0.0.0", "::"]), "every interface")
        #expect(!listeningAddresses(port: port).isEmpty)
        #expect(line.contains("auth=INSECURE-development-mode"), "\(line)")
        let warnings = node.logText.split(separator: "\n").filter { $0.contains("INSECURE DEVELOPMENT MODE") }
        #expect(warnings.count == 1, "once at start (and in the listening line)")
        #expect(warnings.first?.contains("critical") == true, "shown at every log level")
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test func aBadBooleanInTheEnvironmentIsRefused() async throws {
        let redis = try RedisServerProcess()
        let node = try serve(redis, environment: ["TANDEM_INSECURE_DEV_MODE": "maybe"])
        #expect(try await node.waitForExit(timeout: .seconds(15)) != 0)
        #expect(node.logText.contains("TANDEM_INSECURE_DEV_MODE must be 1, true or yes"))
    }

    /// The secret from a file (with a trailing newline, as `openssl rand -hex 32 > f` leaves it) or from
    /// the environment: JWT mode, listening on every interface, the secret nowhere on the command line.
    @Test(arguments: ["file", "file-env", "env"])
    func theSecretComesFromAFileOrTheEnvironment(source: String) async throws {
        let redis = try RedisServerProcess()
        let directory = try makeTemporaryDirectory(prefix: "tandem-secret")
        let file = directory.appendingPathComponent("jwt").path
        try Data((Self.secret + "\n").utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        let (arguments, environment): ([String], [String: String]) =
            switch source {
            case "file": (["--jwt-secret-file", file], [:])
            case "file-env": ([], ["TANDEM_JWT_SECRET_FILE": file])
            default: ([], ["TANDEM_JWT_SECRET": Self.secret])
            }
        let node = try serve(redis, arguments, environment: environment)
        let (line, port) = try await listening(node)
        #expect(line.contains("auth=jwt"), "\(line)")
        #expect(listeningAddresses(port: port).isSubset(of: ["0.0.0.0", "::"]), "a secret means every interface by default")
        #expect(!node.arguments.joined(separator: " ").contains(Self.secret))
        #expect(!node.logText.contains("visible to every local user"), "no command-line warning")
        let url = "ws://127.0.0.1:\(port)/v1/ws"
        let token = try await makeToken(secret: Self.secret, user: "filed", docs: ["*": "editor"])
        let client = try await TestClient.connect("\(url)?token=\(token)", name: "filed")
        #expect(JSON.string(client.welcome, at: "user") == "filed")
        await client.close()
        #expect(try await handshakeRejection("\(url)?user=anyone").status == 401, "development mode is off")
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test func theCommandLineSecretStillWorksButIsFlagged() async throws {
        let redis = try RedisServerProcess()
        let node = try serve(redis, ["--host", "127.0.0.1", "--jwt-secret", Self.secret], environment: ["TANDEM_JWT_SECRET_FILE": "/nonexistent"])
        let (line, _) = try await listening(node)
        #expect(line.contains("auth=jwt"))
        #expect(node.logText.contains("--jwt-secret on the command line is visible to every local user"))
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test func badSecretsStopTheStartWithAClearMessage() async throws {
        let redis = try RedisServerProcess()
        let directory = try makeTemporaryDirectory(prefix: "tandem-secret")
        let short = directory.appendingPathComponent("short").path
        try Data("short-secret\n".utf8).write(to: URL(fileURLWithPath: short))
        let cases: [([String], [String: String], String)] = [
            (["--jwt-secret-file", short], [:], "at least 32"),
            (["--jwt-secret-file", directory.appendingPathComponent("missing").path], [:], "No such file"),
            (["--jwt-secret", "short-secret"], [:], "at least 32"),
            ([], ["TANDEM_JWT_SECRET": "short-secret"], "at least 32"),
            ([], ["TANDEM_JWT_SECRET": Self.secret, "TANDEM_JWT_SECRET_FILE": short], "not both"),
            (["--jwt-secret", Self.secret, "--jwt-secret-file", short], [:], "not both"),
        ]
        for (arguments, environment, reason) in cases {
            let node = try serve(redis, arguments, environment: environment)
            #expect(try await node.waitForExit(timeout: .seconds(15)) != 0, "\(arguments) \(environment)")
            #expect(node.logText.contains(reason), "\(arguments) \(environment): \(node.logText)")
            #expect(!node.logText.contains("listening"))
        }
    }

    /// `tandem token` reads the secret from the same places, with the same minimum.
    @Test func tokenTakesTheSameSecretSourcesAndMinimum() async throws {
        let directory = try makeTemporaryDirectory(prefix: "tandem-token")
        let file = directory.appendingPathComponent("jwt").path
        try Data((Self.secret + "\n").utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        func token(_ arguments: [String], _ environment: [String: String] = [:]) async throws -> (code: Int32, output: String) {
            var inherited = ProcessInfo.processInfo.environment
            inherited["TANDEM_JWT_SECRET"] = nil
            inherited["TANDEM_JWT_SECRET_FILE"] = nil
            let process = try ChildProcess(
                executable: try BuiltProducts.executable(named: "tandem"),
                arguments: ["token", "--user", "tok", "--doc", "d-*=viewer"] + arguments,
                environment: inherited.merging(environment) { _, new in new },
                inheritEnvironment: false)
            let code = try await process.waitForExit(timeout: .seconds(15))
            return (code, process.logText.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let signed = [
            try await token(["--secret-file", file]),
            try await token([], ["TANDEM_JWT_SECRET_FILE": file]),
            try await token([], ["TANDEM_JWT_SECRET": Self.secret]),
            try await token(["--secret", Self.secret]),
        ]
        let authenticator = await Authenticator(secret: Self.secret)
        for (code, output) in signed {
            #expect(code == 0, "\(output)")
            let identity = try await authenticator.authenticate(query: ["token": output], authorization: nil).get()
            #expect(identity.user == "tok")
        }
        for (arguments, environment, reason) in [
            (["--secret", "short-secret"], [:], "at least 32"),
            ([], ["TANDEM_JWT_SECRET": "short-secret"], "at least 32"),
            ([], [:], "no secret"),
            (["--secret", Self.secret, "--secret-file", file], [:], "not both"),
            ([], ["TANDEM_JWT_SECRET": Self.secret, "TANDEM_JWT_SECRET_FILE": file], "keep one"),
        ] as [([String], [String: String], String)] {
            let (code, output) = try await token(arguments, environment)
            #expect(code != 0, "\(arguments) \(environment): \(output)")
            #expect(output.contains(reason), "\(arguments) \(environment): \(output)")
        }
    }
}

/// The local addresses a TCP socket listens on for `port` (from /proc/net/tcp and tcp6): "127.0.0.1",
/// "0.0.0.0", "::", "::1", … The kernel prints those files a page per
/// read, and sockets that close between two reads shift the rest, so a line can be skipped when the machine
/// has thousands of sockets coming and going (seen: an empty set for a node that had logged `listening`).
/// A listener's line can go missing but is never invented, so the union of a few reads is what listens.
func listeningAddresses(port: Int) -> Set<String> {
    (0..<5).reduce(into: Set<String>()) { all, _ in all.formUnion(listeningAddressesInOneRead(port: port)) }
}

private func listeningAddressesInOneRead(port: Int) -> Set<String> {
    var addresses: Set<String> = []
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // sl local_address rem_address st …; st 0A is LISTEN.
            guard fields.count > 3, fields[3] == "0A" else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, Int(local[1], radix: 16) == port else { continue }
            addresses.insert(v6 ? ipv6(String(local[0])) : ipv4(String(local[0])))
        }
    }
    return addresses
}

/// /proc/net/tcp prints addresses as host-order 32-bit words in hex.
private func ipv4(_ hex: String) -> String {
    let word = UInt32(hex, radix: 16) ?? 0
    return (0..<4).map { String((word >> (8 * $0)) & 0xff) }.joined(separator: ".")
}

private func ipv6(_ hex: String) -> String {
    var bytes: [UInt8] = []
    for i in stride(from: 0, to: 32, by: 8) {
        let start = hex.index(hex.startIndex, offsetBy: i)
        let word = UInt32(hex[start..<hex.index(start, offsetBy: 8)], radix: 16) ?? 0
        bytes += (0..<4).map { UInt8((word >> (8 * $0)) & 0xff) }
    }
    if bytes.allSatisfy({ $0 == 0 }) { return "::" }
    if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return "::1" }
    return bytes.map { String($0, radix: 16) }.joined(separator: ":")
}
