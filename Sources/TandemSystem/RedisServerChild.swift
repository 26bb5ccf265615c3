#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A redis-server child process: the one launcher behind `tandem serve`'s embedded Redis and the tests'
/// `RedisServerProcess`. It starts redis-server with the arguments both share (data and log in
/// `directory`, no RDB snapshots, in the foreground, listening on loopback or a unix socket), tells when
/// it answers PING, and stops it (SIGTERM: Redis flushes its AOF and exits; SIGKILL after a grace).
public final class RedisServerChild: Sendable {
    public let process: SpawnedProcess
    /// Where PING is sent: the TCP port when there is one, else the unix socket.
    public let endpoint: Endpoint
    public let directory: String

    public enum Endpoint: Sendable, Equatable {
        case tcp(port: Int)
        case unix(path: String)
    }

    /// `directory`/redis.log.
    public var logPath: String { directory + "/redis.log" }

    /// Spawns redis-server; it is not answering yet (see `waitUntilAnswering`).
    /// - Parameters:
    ///   - port: TCP port on 127.0.0.1; 0 for none (then `unixSocket` is required).
    ///   - unixSocket: Also (or only) listen on this socket, mode 700.
    ///   - arguments: More redis-server options (persistence, memory, cluster…), after the shared ones.
    public init(
        executable: String, directory: String, port: Int, unixSocket: String? = nil, arguments: [String] = []
    ) throws(SpawnedProcess.SpawnError) {
        precondition(port > 0 || unixSocket != nil, "redis-server needs a port or a unix socket")
        self.directory = directory
        var all = ["--dir", directory, "--logfile", directory + "/redis.log", "--save", "", "--daemonize", "no"]
        all += port > 0 ? ["--port", "\(port)", "--bind", "127.0.0.1"] : ["--port", "0"]
        if let unixSocket { all += ["--unixsocket", unixSocket, "--unixsocketperm", "700"] }
        all += arguments
        endpoint = port > 0 ? .tcp(port: port) : .unix(path: unixSocket ?? "")
        process = try SpawnedProcess(executable: executable, arguments: all)
    }

    /// How often the waits send PING.
    static let pingInterval: Duration = .milliseconds(20)

    /// Waits until the server answers PING (true), or it exits or `timeout` passes (false). Suspends
    /// between tries.
    public func waitUntilAnswering(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if !process.isRunning { return false }
            if Self.answersPing(endpoint) { return true }
            try? await Task.sleep(for: Self.pingInterval)
        }
        return false
    }

    /// `waitUntilAnswering` for synchronous callers; blocks the calling thread.
    public func waitUntilAnsweringBlocking(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if !process.isRunning { return false }
            if Self.answersPing(endpoint) { return true }
            usleep(UInt32(Self.pingInterval / .microseconds(1)))
        }
        return false
    }

    /// Stops the server: SIGCONT (in case it was paused), SIGTERM, and SIGKILL if it is still running after
    /// `grace`. Returns whether it is gone.
    @discardableResult
    public func stop(grace: Duration) async -> Bool {
        process.signal(SIGCONT)
        return await process.terminate(signal: SIGTERM, grace: grace) != nil
    }

    /// `stop` for synchronous callers; blocks the calling thread.
    @discardableResult
    public func stopBlocking(grace: Duration) -> Bool {
        process.signal(SIGCONT)
        return process.terminateBlocking(signal: SIGTERM, grace: grace) != nil
    }

    /// How long one PING may wait to connect, send or read: a paused server must not hold the caller.
    static let pingTimeoutMicroseconds = 200_000

    /// Sends an inline PING and checks the answer: `+PONG`, or `-NOAUTH` from a server with a password.
    /// Blocks for at most about 2 × `pingTimeoutMicroseconds` (a local socket).
    public static func answersPing(_ endpoint: Endpoint) -> Bool {
        let fd: Int32
        switch endpoint {
        case .tcp(let port):
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return false }
            setTimeouts(fd)
            var address = loopbackAddress(port: port)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { close(fd); return false }
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return false }
            setTimeouts(fd)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in bytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard connected == 0 else { close(fd); return false }
        }
        defer { close(fd) }
        let request = Array("PING\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            return false
        }
        var reply = [UInt8](repeating: 0, count: 64)
        let count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        let text = String(decoding: reply[0..<count], as: UTF8.self)
        return text.hasPrefix("+PONG") || text.hasPrefix("-NOAUTH")
    }

    private static func setTimeouts(_ fd: Int32) {
        var timeout = timeval(tv_sec: 0, tv_usec: .init(pingTimeoutMicroseconds))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// TCP ports on 127.0.0.1.
public enum LoopbackPort {
    /// Binds a TCP socket to 127.0.0.1:`port` (0: any), closes it, and returns the port it got; nil when
    /// the port is taken. Another process can take the port before it is used.
    public static func probe(_ port: Int = 0) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}
