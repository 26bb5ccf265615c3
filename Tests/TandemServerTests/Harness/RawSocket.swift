import Foundation
import TandemTestSupport

/// A plain TCP socket to a node's client port, for what a well-behaved client library will not do:
/// connect and send nothing (or half a request), write WebSocket frames without ever reading, shrink its
/// receive buffer so back-pressure reaches the server at once.
///
/// Writes block (with a timeout); reads never block (`MSG_DONTWAIT`), so tests poll with `waitUntil`.
final class RawSocket: @unchecked Sendable {
    // @unchecked: a test drives each socket from one task at a time; `fd` is closed once.
    private(set) var fd: Int32
    private(set) var received: [UInt8] = []
    private(set) var sawEOF = false

    struct SocketError: Error, CustomStringConvertible {
        var description: String
    }

    /// Connects to 127.0.0.1:`port`. `receiveBuffer` sets SO_RCVBUF before connecting (the kernel
    /// doubles it and keeps a floor), so a client that stops reading pushes back on the server quickly.
    init(port: Int, receiveBuffer: Int? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "socket: \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let code = errno
            Glibc.close(fd)
            fd = -1
            throw SocketError(description: "connect to \(port): errno \(code)")
        }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Writes everything (blocking up to the send timeout per call).
    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError(description: "send: errno \(errno)") }
            offset += n
        }
    }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Reads what is available, and what keeps arriving within 5 ms of the last read (at most 200 ms in
    /// all: a small receive buffer refills from the server only as it is read); notes end of stream (or
    /// a reset) in `sawEOF`.
    @discardableResult
    func readAvailable() -> Int {
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(200))
        while fd >= 0, !sawEOF {
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                received.append(contentsOf: buffer[0..<n])
                total += n
            } else if n == 0 {
                sawEOF = true
            } else {
                if errno != EAGAIN && errno != EWOULDBLOCK {
                    sawEOF = true
                    break
                }
                var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard ContinuousClock.now < deadline, poll(&waiting, 1, 5) > 0 else { break }
            }
        }
        return total
    }

    /// Grows the receive buffer (once the test wants to read what the server queued).
    func setReceiveBuffer(_ bytes: Int) {
        var size = Int32(bytes)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// True once the server closed the connection (reads what arrived before).
    var closedByPeer: Bool {
        readAvailable()
        return sawEOF
    }

    var receivedText: String { String(decoding: received, as: UTF8.self) }

    // MARK: WebSocket by hand

    /// Sends an upgrade request for `/v1/ws?query` and waits (bounded) for the response head; returns its
    /// status code. Frames that follow the head stay in `received`.
    /// `headers` are extra header lines, each ending in CRLF (`"Origin: https://a.example\r\n"`);
    /// `trailing` is sent in the same write, right after the request (frames a client sends at once).
    func upgrade(
        path: String = "/v1/ws", query: String, headers: String = "", trailing: [UInt8] = [], timeout: Duration = .seconds(10)
    ) async throws -> Int {
        try write(
            Array(
                ("GET \(path)?\(query) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(headers)\r\n").utf8) + trailing)
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        try await waitUntil("response head; got \(receivedText.prefix(200))", timeout: timeout) {
            readAvailable()
            headEnd = received.firstRange(of: separator)?.upperBound
            return headEnd != nil || sawEOF
        }
        guard let headEnd else { throw SocketError(description: "connection closed before a response") }
        let head = String(decoding: received[..<headEnd], as: UTF8.self)
        received.removeFirst(headEnd)
        return Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// One masked client frame (RFC 6455 §5.2). The masking key is zero, which leaves the payload as is
    /// (still a valid masked frame).
    static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [0x80 | opcode]
        switch payload.count {
        case ..<126:
            bytes.append(0x80 | UInt8(payload.count))
        case ..<65536:
            bytes.append(0x80 | 126)
            bytes.append(contentsOf: [UInt8(payload.count >> 8), UInt8(payload.count & 0xff)])
        default:
            bytes.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xff)) }
        }
        bytes.append(contentsOf: [0, 0, 0, 0])
        bytes.append(contentsOf: payload)
        return bytes
    }

    static func text(_ text: String) -> [UInt8] { frame(opcode: 0x1, Array(text.utf8)) }

    /// The server's frames in `received` so far, as (opcode, payload); a partial frame at the end stays.
    func frames() -> [(opcode: UInt8, payload: [UInt8])] {
        readAvailable()
        var result: [(UInt8, [UInt8])] = []
        var i = 0
        while i + 2 <= received.count {
            let opcode = received[i] & 0x0f
            var length = Int(received[i + 1] & 0x7f)
            var start = i + 2
            if length == 126 {
                guard start + 2 <= received.count else { break }
                length = Int(received[start]) << 8 | Int(received[start + 1])
                start += 2
            } else if length == 127 {
                guard start + 8 <= received.count else { break }
                length = received[start..<start + 8].reduce(0) { $0 << 8 | Int($1) }
                start += 8
            }
            guard start + length <= received.count else { break }
            result.append((opcode, Array(received[start..<start + length])))
            i = start + length
        }
        return result
    }
}
