import Foundation
import Logging
import NIOConcurrencyHelpers
import TandemSystem

/// The private redis-server `tandem serve` runs when no `--redis` is given: a child process with its data
/// in `dataDirectory` (AOF on), reachable over a unix socket there, started and stopped as one of the node's
/// services.
///
/// If Tandem was killed without stopping it, the next start finds the old server through its pid file
/// and stops it before starting a fresh one on the same data (nothing is lost: AOF).
public final class EmbeddedRedis: Sendable {
    public let dataDirectory: String
    public let redisServer: String
    public let appendFsync: String
    /// Redis's `maxmemory` (0: no limit), always with `maxmemory-policy noeviction`: evicting a sync key
    /// would silently lose acknowledged edits, while a refused write is answered `unavailable` (retryable)
    /// and nothing acknowledged is lost.
    public let maxMemoryBytes: UInt64
    /// Where the server will listen, known before it starts (the node's Redis client is configured with it).
    public let url: String
    private let port: Int?
    private let logger: Logger
    /// The running server; set by `start`, cleared by `stop` (one service calls both, in that order).
    private let child = NIOLockedValueBox<RedisServerChild?>(nil)

    /// How long redis-server may take to answer its first PING.
    static let startTimeout: Duration = .seconds(10)
    /// How long it may take to flush its AOF and exit on SIGTERM before it is killed.
    static let stopGrace: Duration = .seconds(30)
    /// How long a stale server from an earlier run may take to exit on SIGTERM.
    static let staleStopTimeout: Duration = .seconds(10)
    /// Unix socket paths are limited to 107 bytes (`sun_path`); deeper data directories use a loopback port.
    static let maxSocketPathBytes = 100
    /// The smallest default `maxmemory`, whatever the machine.
    static let minimumDefaultMaxMemory: UInt64 = 64 << 20
    /// The default `maxmemory` is this fraction of the memory available (see `defaultMaxMemoryBytes`).
    static let defaultMaxMemoryDivisor: UInt64 = 4

    public init(
        dataDirectory: String, redisServer: String = "redis-server", appendFsync: String = "everysec",
        maxMemoryBytes: UInt64 = EmbeddedRedis.defaultMaxMemoryBytes(), logger: Logger
    ) {
        let directory = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        self.dataDirectory = directory
        self.redisServer = redisServer
        self.appendFsync = appendFsync
        self.maxMemoryBytes = maxMemoryBytes
        self.logger = logger
        let socketPath = directory + "/redis.sock"
        if socketPath.utf8.count < Self.maxSocketPathBytes {
            port = nil
            url = "unix://" + socketPath
        } else {
            let port = LoopbackPort.probe() ?? 6379
            self.port = port
            url = "redis://127.0.0.1:\(port)"
        }
    }

    /// A quarter of the memory this process may use: physical memory, or the cgroup limit when lower (a
    /// container's limit, not the host's RAM). A quarter, because Redis's AOF rewrite forks and, under
    /// writes, copy-on-write can briefly need up to as much again, and the Tandem node itself and the
    /// kernel's page cache need the rest. Never below 64 MiB.
    public static func defaultMaxMemoryBytes() -> UInt64 {
        max(minimumDefaultMaxMemory, availableMemoryBytes() / defaultMaxMemoryDivisor)
    }

    /// Physical memory, capped by the cgroup v2 (`memory.max`) or v1 (`memory.limit_in_bytes`) limit.
    static func availableMemoryBytes() -> UInt64 {
        var available = ProcessInfo.processInfo.physicalMemory
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                let limit = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))  // "max" means none
            else { continue }
            available = min(available, limit)
        }
        return available
    }

    private var pidFile: String { dataDirectory + "/redis.pid" }
    private var socketPath: String { dataDirectory + "/redis.sock" }

    /// Starts redis-server and returns once it answers PING (at `url`).
    public func start() async throws {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        await stopStaleServer()
        guard let executable = SpawnedProcess.locate(redisServer) else {
            throw EmbeddedRedisError(message: "\(redisServer) not found; install redis-server (make run does) or pass --redis")
        }
        if port == nil { try? FileManager.default.removeItem(atPath: socketPath) }
        let server: RedisServerChild
        do {
            server = try RedisServerChild(
                executable: executable, directory: dataDirectory, port: port ?? 0,
                unixSocket: port == nil ? socketPath : nil,
                arguments: [
                    "--appendonly", "yes", "--appendfsync", appendFsync, "--pidfile", pidFile,
                    "--maxmemory", "\(maxMemoryBytes)", "--maxmemory-policy", "noeviction",
                ])
        } catch {
            throw EmbeddedRedisError(message: error.description)
        }
        guard await server.waitUntilAnswering(timeout: Self.startTimeout) else {
            let exited = !server.process.isRunning
            await server.process.terminate(signal: SIGKILL, grace: .seconds(5))
            throw EmbeddedRedisError(
                message: exited
                    ? "redis-server exited at start-up; see \(server.logPath)"
                    : "redis-server did not answer within \(Self.startTimeout); see \(server.logPath)")
        }
        child.withLockedValue { $0 = server }
        logger.info(
            "embedded redis started",
            metadata: [
                "redis.url": "\(url)", "redis.data": "\(dataDirectory)", "redis.appendfsync": "\(appendFsync)",
                "redis.pid": "\(server.process.pid)",
                "redis.maxmemory": "\(maxMemoryBytes == 0 ? "none" : OptionValues.describe(bytes: maxMemoryBytes))",
            ])
    }

    /// Stops the server (SIGTERM: Redis flushes the AOF and exits) and waits for it.
    public func stop() async {
        guard let server = child.withLockedValue({ $0 }), server.process.isRunning else { return }
        await server.stop(grace: Self.stopGrace)
        child.withLockedValue { $0 = nil }
        logger.info("embedded redis stopped")
    }

    private func stopStaleServer() async {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
            let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
            cmdline.contains("redis-server")
        else { return }
        logger.warning("stopping a stale embedded redis-server from an earlier run", metadata: ["redis.pid": "\(pid)"])
        kill(pid, SIGTERM)
        // Not our child any more, so we cannot wait for it: poll until it is gone (or a zombie).
        let deadline = ContinuousClock.now.advanced(by: Self.staleStopTimeout)
        while ContinuousClock.now < deadline {
            let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?
                .split(separator: ")").last?.split(separator: " ").first
            if state == nil || state == "Z" { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

public struct EmbeddedRedisError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
