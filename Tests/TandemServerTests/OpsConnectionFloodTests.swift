import Foundation
import TandemServer
import TandemTestSupport
import Testing

/// Issue 7: "100 idle connections to the ops port make /healthz fail". A real node with its ops port's
/// connection limit taken by idle clients and by slow-loris clients (partial request heads) still
/// answers health checks, and its metrics say what happened.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct OpsConnectionFloodTests {
    @Test(arguments: [false, true])
    func healthChecksAreAnsweredWithTheOpsPortFull(slowLoris: Bool) async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-flood", stopWhenDone: true) {
            $0.opsMaxConnections = 100
            $0.opsMaxConnectionsPerIP = 25
            $0.opsIdleTimeoutMs = 60_000
        }
        // 100 idle clients from four addresses: the whole connection limit.
        var held: [HeldSocket] = []
        for address in 2...5 {
            for _ in 0..<25 {
                let socket = try HeldSocket(port: node.opsPort, source: "127.0.0.\(address)")
                if slowLoris { socket.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ") }
                held.append(socket)
            }
        }
        try await waitUntil("all 100 held connections counted") {
            // The scrape itself is one more connection, counted while it is served.
            try await node.value("tandem_ops_connections") >= 100
        }
        for _ in 0..<20 {
            let health = try await node.get("/healthz")
            #expect(health.status == 200)
            #expect(health.body == "ok\n")
        }
        #expect(try await node.value("tandem_ops_connections_evicted_total") >= 1)
        #expect(try await node.value(#"tandem_ops_connections_refused_total{reason="full"}"#) == 0)
        // A 26th connection from one of the flooding addresses (a health checker on that host) is served
        // in the place of that address's connection idle longest; nothing is refused.
        let extra = try HeldSocket(port: node.opsPort, source: "127.0.0.3")
        extra.send("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(String(decoding: extra.readAll(), as: UTF8.self).hasSuffix("ok\n"))
        #expect(try await node.value(#"tandem_ops_connections_refused_total{reason="per_address"}"#) == 0)
        withExtendedLifetime(held) {}
    }
}

/// A client socket that connects from a chosen loopback address and is otherwise left alone.
final class HeldSocket {
    let fd: Int32

    init(port: Int, source: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTP.HTTPError(message: "socket failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = UInt16(port).bigEndian
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, connected == 0 else {
            close(fd)
            throw HTTP.HTTPError(message: "connect from \(source) failed")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Everything until the server closes (or the 10 s receive timeout).
    func readAll() -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { return result }
            result.append(contentsOf: buffer[0..<count])
        }
    }
}
