import Testing
@testable import TandemOpsHTTP

/// `maxRequestBodyBytes`: bodies up to the limit reach the handler, larger
/// ones are answered 413 by the server without running the handler.
@Suite struct BodyLimitTests {
    /// A server with a 1 KiB limit whose handler echoes the body and counts calls.
    private func echoServer(limit: Int = 1024, calls: Locked<Int>) throws -> OpsHTTPServer {
        try startedServer(.init(maxRequestBodyBytes: limit)) { request in
            calls.withLock { $0 += 1 }
            return OpsResponse(status: 200, body: request.body)
        }
    }

    @Test func bodyExactlyAtTheLimitIsAccepted() throws {
        let calls = Locked(0)
        let server = try echoServer(calls: calls)
        defer { server.stop() }
        let body = [UInt8](repeating: 0x61, count: 1024)

        let response = try RawHTTP.request("POST", "/upload", port: server.boundPort, body: body)
        #expect(response.status == 200)
        #expect(response.body == body)
        #expect(calls.current == 1)
    }

    @Test func declaredOverLimitBodyGets413WithoutRunningTheHandler() throws {
        let calls = Locked(0)
        let server = try echoServer(calls: calls)
        defer { server.stop() }

        let response = try RawHTTP.request(
            "POST", "/upload", port: server.boundPort, body: [UInt8](repeating: 0x62, count: 1025))
        #expect(response.status == 413)
        #expect(response.text.contains("1024"))
        #expect(calls.current == 0)
    }

    /// With no body allowed (Tandem's ops routes are all GETs), a chunked upload is refused as soon as
    /// its headers are in: not one chunk is read, so a slow upload cannot hold the connection busy.
    @Test func withALimitOfZeroAChunkedUploadIsRefusedBeforeItsFirstChunk() throws {
        let calls = Locked(0)
        let server = try echoServer(limit: 0, calls: calls)
        defer { server.stop() }

        let connection = try RawHTTPConnection(port: server.boundPort)
        try connection.send(RawHTTP.requestBytes("POST", "/upload", headers: [("Transfer-Encoding", "chunked")]))
        let response = try connection.readResponse()
        #expect(response.status == 413)
        #expect(calls.current == 0)
        #expect(try RawHTTP.get("/", port: server.boundPort).status == 200, "a GET without a body is fine")
    }

    @Test func expectContinueOverLimitIsRefusedBeforeTheBodyIsSent() throws {
        let calls = Locked(0)
        let server = try echoServer(calls: calls)
        defer { server.stop() }

        let connection = try RawHTTPConnection(port: server.boundPort)
        try connection.send(RawHTTP.requestBytes(
            "POST", "/upload", headers: [("Content-Length", "5000000"), ("Expect", "100-continue")]))
        let response = try connection.readResponse()
        #expect(response.status == 413, "final answer instead of 100 Continue")
        #expect(calls.current == 0)
    }

    @Test func chunkedOverLimitBodyGets413WithoutRunningTheHandler() throws {
        let calls = Locked(0)
        let server = try echoServer(calls: calls)
        defer { server.stop() }

        let connection = try RawHTTPConnection(port: server.boundPort)
        try connection.send(RawHTTP.requestBytes("POST", "/upload", headers: [("Transfer-Encoding", "chunked")]))
        for _ in 0..<3 {  // 3 × 600 bytes, no length announced up front
            try connection.send("258\r\n" + String(repeating: "c", count: 600) + "\r\n")
        }
        try connection.send("0\r\n\r\n")
        let response = try connection.readResponse()
        #expect(response.status == 413)
        #expect(calls.current == 0)
    }

    @Test func defaultLimitIs64KiB() throws {
        let calls = Locked(0)
        let server = try startedServer { request in
            calls.withLock { $0 += 1 }
            return .text("\(request.body.count)")
        }
        defer { server.stop() }
        #expect(server.configuration.maxRequestBodyBytes == 64 * 1024)

        let atLimit = try RawHTTP.request(
            "POST", "/", port: server.boundPort, body: [UInt8](repeating: 1, count: 64 * 1024))
        #expect(atLimit.status == 200)
        #expect(atLimit.text == "65536")

        let over = try RawHTTP.request(
            "POST", "/", port: server.boundPort, body: [UInt8](repeating: 1, count: 70 * 1024))
        #expect(over.status == 413)
        #expect(calls.current == 1)
    }

    @Test func serverStillServesAfterRefusingABody() throws {
        let calls = Locked(0)
        let server = try echoServer(calls: calls)
        defer { server.stop() }

        _ = try RawHTTP.request("POST", "/", port: server.boundPort, body: [UInt8](repeating: 0, count: 4096))
        let next = try RawHTTP.request("POST", "/", port: server.boundPort, body: Array("small".utf8))
        #expect(next.status == 200)
        #expect(next.text == "small")
    }
}
