import Foundation
import Logging
import NIOPosix
@testable import TandemServer
import TandemTestSupport

/// A Tandem node running inside the test process (fast to start, easy to stop).
final class InProcessNode: @unchecked Sendable {
    let node: TandemNode
    let nodeID: String
    var port: Int { node.port }
    var opsPort: Int { node.opsPort }

    private init(node: TandemNode, nodeID: String) {
        self.node = node
        self.nodeID = nodeID
    }

    static func start(
        redis: String, nodeID: String = "n-\(UUID().uuidString.prefix(6))",
        configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws -> InProcessNode {
        var config = ServerConfiguration(nodeID: nodeID, redisURL: redis)
        config.host = "127.0.0.1"
        config.port = 0
        config.opsPort = 0
        // A debug build on a shared machine runs its loops late whenever a test sends a burst (thousands of
        // pushes to check catch-up chunking): loop-lag admission would refuse some, which is right for a
        // server and wrong for those tests. SyncOverloadTests sets it low to test exactly that.
        config.maxLoopLagMs = 60_000
        // The same for push admission by waiting time (--max-push-wait-ms, 250 ms by default): a burst of
        // pushes on a slow (sanitized, loaded) build can be estimated to wait longer and be refused. The
        // overload and group-commit suites set it low to test exactly that.
        config.maxPushWaitMs = 60_000
        // Yjs tests check relayed updates one message each, in order; a batch merged by the coalescing window
        // would be one message for several. YjsCoalescingTests turns it on (the default) to test exactly that.
        config.yjsRelayMs = 0
        configure(&config)
        var logger = Logger(label: "tandem.\(nodeID)") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = ProcessInfo.processInfo.environment["TANDEM_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .error
        let node = try await TandemNode(configuration: config, logger: logger, eventLoopThreads: 2)
        try await node.start()
        let started = InProcessNode(node: node, nodeID: nodeID)
        try await waitUntil("node \(nodeID) ready (Redis connected)") {
            (try? await started.get("/readyz").status) == 200
        }
        return started
    }

    func stop() async { await node.shutdown() }

    /// Seals `doc`'s history to its head now (not at the next housekeeping ticks); the sealed clock.
    func sealHistory(_ doc: String) async throws -> UInt64 { try await node.sealHistory(doc) }

    func url(user: String, name: String? = nil, query: String = "") -> String {
        var url = "ws://127.0.0.1:\(port)/v1/ws?user=\(user)&name=\(name ?? user)"
        if !query.isEmpty { url += "&" + query }
        return url
    }

    var wsBase: String { "ws://127.0.0.1:\(port)/v1/ws" }

    func get(_ path: String) async throws -> HTTPResult { try await HTTP.get(port: opsPort, path: path) }

    func metric(_ name: String) async throws -> Double { try await HTTP.metric(port: opsPort, name) }
}

/// A Tandem node as a child process (for SIGKILL, SIGTERM and restart tests).
final class ProcessNode: @unchecked Sendable {
    let process: ChildProcess
    let port: Int
    let opsPort: Int
    let nodeID: String

    init(arguments: [String], nodeID: String = "p-\(UUID().uuidString.prefix(6))", directory: URL? = nil) async throws {
        self.nodeID = nodeID
        process = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: ["serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0", "--node-id", nodeID] + arguments,
            directory: directory)
        let line = try await process.waitForOutput(matching: #"ops\.port=\d+ .*port=\d+.*listening"#, timeout: .seconds(30))
        func value(_ key: String) -> Int {
            let pattern = try! Regex("(^| )\(key)=(\\d+)")
            return line.firstMatch(of: pattern).flatMap { Int($0.output[2].substring ?? "") } ?? 0
        }
        opsPort = value("ops\\.port")
        port = value("port")
        try await waitUntil("process node \(nodeID) ready") { (try? await HTTP.get(port: self.opsPort, path: "/readyz").status) == 200 }
    }

    func url(user: String, query: String = "") -> String {
        "ws://127.0.0.1:\(port)/v1/ws?user=\(user)&name=\(user)" + (query.isEmpty ? "" : "&" + query)
    }

    func get(_ path: String) async throws -> HTTPResult { try await HTTP.get(port: opsPort, path: path) }
}

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// A minimal HTTP/1.0 client over a blocking socket (run off the cooperative pool).
enum HTTP {
    static func get(port: Int, path: String, headers: [String: String] = [:]) async throws -> HTTPResult {
        try await Task.detached {
            try request(port: port, raw: "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                + headers.map { "\($0.key): \($0.value)\r\n" }.joined() + "\r\n")
        }.value
    }

    static func metric(port: Int, _ name: String) async throws -> Double {
        let text = try await get(port: port, path: "/metrics").body
        var total = 0.0
        var found = false
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { continue }
            let series = String(parts[0])
            if series == name || (series.hasPrefix(name + "{") && !name.contains("{")) {
                total += Double(parts[1]) ?? 0
                found = true
            }
        }
        if !found { throw HTTPError(message: "metric \(name) not exported") }
        return total
    }

    struct HTTPError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    static func request(port: Int, raw: String) throws -> HTTPResult {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPError(message: "socket failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HTTPError(message: "connect to \(port) failed") }
        let bytes = Array(raw.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw HTTPError(message: "write failed") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            response.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw HTTPError(message: "no HTTP response") }
        let head = text[..<split.lowerBound].split(separator: "\r\n")
        let status = head.first.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPResult(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}
