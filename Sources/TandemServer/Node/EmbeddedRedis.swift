import Foundation
import Logging

/// The private redis-server `tandem serve` runs when no `--redis` is given: a child process with its data
/// in `dataDirectory` (AOF on), reachable over a unix socket there, stopped when Tandem stops.
///
/// If Tandem was killed without stopping it, the next start finds the old server through its pid file
/// and stops it before starting a fresh one on the same data (nothing is lost: AOF).
public final class EmbeddedRedis: @unchecked Sendable {
    // Mutable state is only touched by start/stop, which the serve command calls from one task.
    public let dataDirectory: String
    public let redisServer: String
    public let appendFsync: String
    /// Redis's `maxmemory` (0: no limit), always with `maxmemory-policy noeviction`: evicting a sync key
    /// would silently lose acknowledged edits, while a refused write is answered `unavailable` (retryable)
    /// and nothing acknowledged is lost.
    public let maxMemoryBytes: UInt64
    private let logger: Logger
    private var process: SpawnedProcess?

    public init(
        dataDirectory: String, redisServer: String = "redis-server", appendFsync: String = "everysec",
        maxMemoryBytes: UInt64 = EmbeddedRedis.defaultMaxMemoryBytes(), logger: Logger
    ) {
        self.dataDirectory = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        self.redisServer = redisServer
        self.appendFsync = appendFsync
        self.maxMemoryBytes = maxMemoryBytes
        self.logger = logger
    }

    /// A quarter of the memory this process may use: physical memory, or the cgroup limit when lower (a
    /// container's limit, not the host's RAM). A quarter, because Redis's AOF rewrite forks and, under
    /// writes, copy-on-write can briefly need up to as much again, and the Tandem node itself and the
    /// kernel's page cache need the rest. Never below 64 MiB.
    public static func defaultMaxMemoryBytes() -> UInt64 {
        max(64 << 20, availableMemoryBytes() / 4)
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

    /// Starts redis-server and waits until it accepts connections. Returns its URL.
    public func start() throws -> String {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        stopStaleServer()
        // Unix socket paths are limited to 107 bytes; deep directories fall back to a loopback port.
        let useSocket = socketPath.utf8.count < 100
        var arguments = [
            "--dir", dataDirectory, "--appendonly", "yes", "--appendfsync", appendFsync, "--save", "",
            "--pidfile", pidFile, "--logfile", dataDirectory + "/redis.log", "--daemonize", "no",
            "--maxmemory", "\(maxMemoryBytes)", "--maxmemory-policy", "noeviction",
        ]
        let url: String
        if useSocket {
            try? FileManager.default.removeItem(atPath: socketPath)
            arguments += ["--port", "0", "--unixsocket", socketPath, "--unixsocketperm", "700"]
            url = "unix://" + socketPath
        } else {
            let port = Self.freePort()
            arguments += ["--port", "\(port)", "--bind", "127.0.0.1"]
            url = "redis://127.0.0.1:\(port)"
        }
        let process = try SpawnedProcess(executable: try Self.locate(redisServer).path, arguments: arguments)
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if !process.isRunning {
                throw EmbeddedRedisError(message: "redis-server exited at start-up; see \(dataDirectory)/redis.log")
            }
            if Self.answersPing(url: url) {
                logger.info(
                    "embedded redis started",
                    metadata: ["redis.url": "\(url)", "redis.data": "\(dataDirectory)", "redis.appendfsync": "\(appendFsync)",
                               "redis.pid": "\(process.pid)",
                               "redis.maxmemory": "\(maxMemoryBytes == 0 ? "none" : OptionValues.describe(bytes: maxMemoryBytes))"])
                return url
            }
            usleep(20_000)
        }
        process.signal(SIGKILL)
        process.wait(timeout: 5)
        throw EmbeddedRedisError(message: "redis-server did not answer within 10 s; see \(dataDirectory)/redis.log")
    }

    /// Stops the server (SIGTERM: Redis flushes the AOF and exits) and waits for it.
    public func stop() {
        guard let process, process.isRunning else { return }
        process.signal(SIGTERM)
        process.wait(timeout: 30)
        logger.info("embedded redis stopped")
        self.process = nil
    }

    private func stopStaleServer() {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
            let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
            cmdline.contains("redis-server")
        else { return }
        logger.warning("stopping a stale embedded redis-server from an earlier run", metadata: ["redis.pid": "\(pid)"])
        kill(pid, SIGTERM)
        // Not our child any more, so we cannot wait for it: poll until it is gone (or a zombie).
        for _ in 0..<1000 {
            let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?
                .split(separator: ")").last?.split(separator: " ").first
            if state == nil || state == "Z" { break }
            usleep(10_000)
        }
    }

    private static func locate(_ program: String) throws -> URL {
        if program.contains("/") { return URL(fileURLWithPath: program) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/sbin", "/usr/bin"] {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
        }
        throw EmbeddedRedisError(message: "\(program) not found; install redis-server (make run does) or pass --redis")
    }

    /// A bare RESP PING over a socket (the embedded server is local, this runs once at start-up).
    private static func answersPing(url: String) -> Bool {
        let fd: Int32
        if url.hasPrefix("unix://") {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return false }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let path = Array(url.dropFirst("unix://".count).utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in path.enumerated() where i < raw.count - 1 { raw[i] = byte }
            }
            let ok = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard ok == 0 else { close(fd); return false }
        } else {
            guard let port = UInt16(url.split(separator: ":").last ?? "") else { return false }
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return false }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard ok == 0 else { close(fd); return false }
        }
        defer { close(fd) }
        let ping = Array("PING\r\n".utf8)
        guard write(fd, ping, ping.count) == ping.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &buffer, buffer.count)
        return n > 0 && String(decoding: buffer[0..<n], as: UTF8.self).hasPrefix("+PONG")
    }

    private static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public struct EmbeddedRedisError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
