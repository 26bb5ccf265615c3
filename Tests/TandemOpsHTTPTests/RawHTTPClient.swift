import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A deliberately small blocking HTTP/1.1 client over a raw TCP socket, so
/// the tests control every byte sent and see every byte received (no client
/// library normalising headers, retrying, or decoding bodies behind our back).
/// Every socket has send/receive timeouts, so a server that never answers
/// fails the test instead of hanging it.
struct RawHTTPError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct RawHTTPResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    /// The first value of a header, case-insensitively.
    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    func values(of name: String) -> [String] {
        headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1)
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

final class RawHTTPConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var sawEOF = false

    /// - Parameter source: an IPv4 address to connect from (any of 127.0.0.0/8 works on Linux's
    ///   loopback), so a test can play several clients.
    init(host: String = "127.0.0.1", port: Int, timeoutSeconds: Int = 10, source: String? = nil) throws {
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        let family: Int32
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            family = AF_INET
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
        } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            family = AF_INET6
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
        } else {
            throw RawHTTPError("bad host \(host)")
        }
        #if canImport(Glibc)
        let streamType = Int32(SOCK_STREAM.rawValue)
        #else
        let streamType = SOCK_STREAM
        #endif
        fd = socket(family, streamType | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RawHTTPError("socket: \(String(cString: strerror(errno)))") }

        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            guard inet_pton(AF_INET, source, &local.sin_addr) == 1 else {
                close(fd)
                throw RawHTTPError("bad source \(source)")
            }
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound != 0 {
                let code = errno
                close(fd)
                throw RawHTTPError("bind to \(source): \(String(cString: strerror(code)))")
            }
        }

        let result: Int32
        if family == AF_INET {
            result = withUnsafePointer(to: &v4) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        } else {
            result = withUnsafePointer(to: &v6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        if result != 0 {
            let code = errno
            close(fd)
            throw RawHTTPError("connect to \(host):\(port): \(String(cString: strerror(code)))")
        }
    }

    deinit { close(fd) }

    /// Sends all bytes. MSG_NOSIGNAL: a server that already closed must
    /// produce an error here, not a SIGPIPE that kills the test process.
    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { raw in
                systemSend(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw RawHTTPError("send: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Half-closes the sending side (the server sees EOF on the request stream).
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads more bytes into the buffer; false on EOF. A reset after the
    /// server closed with unread request bytes is treated as EOF: what it
    /// sent before the reset is already in our buffer.
    @discardableResult
    private func fill() throws -> Bool {
        if sawEOF { return false }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                buffer.append(contentsOf: chunk[0..<count])
                return true
            }
            if count == 0 { sawEOF = true; return false }
            let code = errno
            if code == EINTR { continue }
            if code == ECONNRESET { sawEOF = true; return false }
            if code == EAGAIN || code == EWOULDBLOCK { throw RawHTTPError("timed out waiting for the server") }
            throw RawHTTPError("recv: \(String(cString: strerror(code)))")
        }
    }

    /// Reads one response. For HEAD (and 1xx/204/304) no body is read even if
    /// Content-Length is present; otherwise the body is read by
    /// Content-Length, by chunked encoding, or to EOF.
    func readResponse(isHead: Bool = false) throws -> RawHTTPResponse {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headerEnd: Int?
        while headerEnd == nil {
            headerEnd = buffer.firstRange(of: separator)?.lowerBound
            if headerEnd == nil, try !fill() {
                throw RawHTTPError("connection closed before a complete response head (\(buffer.count) bytes)")
            }
        }
        let head = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        buffer.removeFirst(headerEnd! + separator.count)

        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let statusParts = statusLine.split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw RawHTTPError("bad status line: \(statusLine)")
        }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw RawHTTPError("bad header line: \(line)") }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((String(line[..<colon]), value))
        }
        var response = RawHTTPResponse(status: status, headers: headers, body: [])
        if isHead || status < 200 || status == 204 || status == 304 { return response }

        if let lengthText = response.header("Content-Length") {
            guard let length = Int(lengthText) else { throw RawHTTPError("bad Content-Length \(lengthText)") }
            while buffer.count < length {
                if try !fill() { throw RawHTTPError("body truncated: \(buffer.count) of \(length) bytes") }
            }
            response.body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            response.body = try readChunkedBody()
        } else {
            while try fill() {}
            response.body = buffer
            buffer = []
        }
        return response
    }

    private func readChunkedBody() throws -> [UInt8] {
        var body: [UInt8] = []
        let crlf: [UInt8] = [13, 10]
        while true {
            var lineEnd = buffer.firstRange(of: crlf)?.lowerBound
            while lineEnd == nil {
                if try !fill() { throw RawHTTPError("chunked body truncated") }
                lineEnd = buffer.firstRange(of: crlf)?.lowerBound
            }
            let sizeText = String(decoding: buffer[0..<lineEnd!], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw RawHTTPError("bad chunk size")
            }
            buffer.removeFirst(lineEnd! + 2)
            while buffer.count < size + 2 {
                if try !fill() { throw RawHTTPError("chunk truncated") }
            }
            if size == 0 {
                // Trailer section is empty in our responses: just the CRLF.
                buffer.removeFirst(2)
                return body
            }
            body.append(contentsOf: buffer[0..<size])
            buffer.removeFirst(size + 2)
        }
    }

    /// Whether the server has closed the connection (end of file or reset is pending), without
    /// consuming anything or waiting longer than `waitMilliseconds`.
    func peerClosed(waitMilliseconds: Int32 = 0) -> Bool {
        if sawEOF { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, waitMilliseconds) == 1 else { return false }
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return count == 0 || (count < 0 && errno == ECONNRESET)
    }

    /// Every byte the server sends until it closes the connection.
    func readToEOF() throws -> [UInt8] {
        while try fill() {}
        defer { buffer = [] }
        return buffer
    }
}

enum RawHTTP {
    /// Builds an HTTP/1.1 request. Adds `Host` and `Connection: close` unless
    /// given, and `Content-Length` when there is a body and no length or
    /// transfer-encoding header was given.
    static func requestBytes(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: [UInt8]? = nil
    ) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\n"
        let names = Set(headers.map { $0.0.lowercased() })
        if !names.contains("host") { head += "Host: localhost\r\n" }
        if !names.contains("connection") { head += "Connection: close\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body, !names.contains("content-length"), !names.contains("transfer-encoding") {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }

    /// One request on a fresh connection; returns the parsed response.
    static func request(
        _ method: String,
        _ target: String,
        port: Int,
        host: String = "127.0.0.1",
        headers: [(String, String)] = [],
        body: [UInt8]? = nil
    ) throws -> RawHTTPResponse {
        let connection = try RawHTTPConnection(host: host, port: port)
        try connection.send(requestBytes(method, target, headers: headers, body: body))
        return try connection.readResponse(isHead: method == "HEAD")
    }

    static func get(_ target: String, port: Int, host: String = "127.0.0.1", source: String? = nil) throws -> RawHTTPResponse {
        let connection = try RawHTTPConnection(host: host, port: port, source: source)
        try connection.send(requestBytes("GET", target))
        return try connection.readResponse()
    }
}

/// The libc `send`, reachable from inside `RawHTTPConnection.send`.
private func systemSend(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int, _ flags: Int32) -> Int {
    send(fd, bytes, count, flags)
}
