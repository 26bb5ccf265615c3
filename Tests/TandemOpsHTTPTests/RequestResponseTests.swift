import Foundation
import Testing
@testable import TandemOpsHTTP

/// Requests and responses over real sockets: what the handler sees and what
/// the client receives, byte for byte.
@Suite struct RequestResponseTests {
    @Test func startsOnPortZeroAndReportsTheBoundPort() throws {
        let server = OpsHTTPServer(configuration: .init(port: 0), logger: testLogger()) { _ in .text("up\n") }
        #expect(server.boundPort == 0)
        try server.start()
        defer { server.stop() }

        #expect(server.isRunning)
        #expect((1...65535).contains(server.boundPort))
        let response = try RawHTTP.get("/", port: server.boundPort)
        #expect(response.status == 200)
        #expect(response.text == "up\n")
    }

    @Test func getReturnsHandlerStatusHeadersAndBodyByteExact() throws {
        let allBytes = (0...255).map { UInt8($0) } + [0, 13, 10, 0]
        let server = try startedServer { _ in
            OpsResponse(
                status: 201,
                headers: [("Content-Type", "application/x-tandem"), ("X-Tandem-Test", "yes"), ("X-Twice", "1"), ("X-Twice", "2")],
                body: allBytes)
        }
        defer { server.stop() }

        let connection = try RawHTTPConnection(port: server.boundPort)
        try connection.send(RawHTTP.requestBytes("GET", "/bytes"))
        let response = try connection.readResponse()
        #expect(response.status == 201)
        #expect(response.body == allBytes)
        #expect(response.header("Content-Length") == String(allBytes.count))
        #expect(response.header("Content-Type") == "application/x-tandem")
        #expect(response.header("X-Tandem-Test") == "yes")
        #expect(response.values(of: "X-Twice") == ["1", "2"])
        #expect(response.header("Cache-Control") == "no-store", "dynamic responses default to no-store")
        #expect(try connection.readToEOF().isEmpty, "nothing after the declared body")
    }

    @Test func conveniencesSetStatusAndHeadersOnTheWire() throws {
        let server = try startedServer { request in
            switch request.path {
            case "/json": return .json(#"{"ok":true}"#)
            case "/json-bytes": return .json(Array("[1,2]".utf8), status: 202)
            case "/405": return .methodNotAllowed(allowed: ["GET", "HEAD"])
            case "/503": return .serviceUnavailable("redis down", retryAfterSeconds: 5)
            case "/cached": return OpsResponse(status: 200, headers: [("Cache-Control", "max-age=60")], body: Array("x".utf8))
            case "/raw": return OpsResponse(status: 200, body: [1, 2, 3])
            default: return .notFound()
            }
        }
        defer { server.stop() }
        let port = server.boundPort

        let json = try RawHTTP.get("/json", port: port)
        #expect(json.status == 200)
        #expect(json.header("Content-Type") == "application/json")
        #expect(json.text == #"{"ok":true}"#)

        let jsonBytes = try RawHTTP.get("/json-bytes", port: port)
        #expect(jsonBytes.status == 202)
        #expect(jsonBytes.text == "[1,2]")

        let notAllowed = try RawHTTP.request("POST", "/405", port: port, body: [])
        #expect(notAllowed.status == 405)
        #expect(notAllowed.header("Allow") == "GET, HEAD")

        let unavailable = try RawHTTP.get("/503", port: port)
        #expect(unavailable.status == 503)
        #expect(unavailable.header("Retry-After") == "5")
        #expect(unavailable.text == "redis down\n")

        let cached = try RawHTTP.get("/cached", port: port)
        #expect(cached.values(of: "Cache-Control") == ["max-age=60"], "a handler's own Cache-Control wins")

        let raw = try RawHTTP.get("/raw", port: port)
        #expect(raw.header("Content-Type") == "application/octet-stream")
        #expect(raw.body == [1, 2, 3])

        let missing = try RawHTTP.get("/nope", port: port)
        #expect(missing.status == 404)
        #expect(missing.header("Content-Type") == "text/plain; charset=utf-8")
    }

    @Test func queryAndHeadersAreDecodedAndNormalised() throws {
        let seen = Locked<OpsRequest?>(nil)
        let server = try startedServer { request in
            seen.withLock { $0 = request }
            return .text("ok")
        }
        defer { server.stop() }

        let response = try RawHTTP.request(
            "GET",
            "/api/a%20b/caf%C3%A9?name=J%C3%BCrgen&sum=1+2&pct=100%25&flag&empty=&dup=first&dup=last",
            port: server.boundPort,
            headers: [("X-Custom-Header", "Value With Spaces"), ("x-multi", "a"), ("X-MULTI", "b")])
        #expect(response.status == 200)

        let request = try #require(seen.current)
        #expect(request.method == "GET")
        #expect(request.path == "/api/a b/café")
        #expect(request.query["name"] == "Jürgen")
        #expect(request.query["sum"] == "1 2")
        #expect(request.query["pct"] == "100%")
        #expect(request.query["flag"] == "")
        #expect(request.query["empty"] == "")
        #expect(request.query["dup"] == "last")
        #expect(request.query.count == 6)
        #expect(request.headers["x-custom-header"] == "Value With Spaces")
        #expect(request.header("X-Custom-Header") == "Value With Spaces")
        #expect(request.headers["x-multi"] == "a, b")
        #expect(request.headers["host"] == "localhost")
        #expect(request.headers.keys.allSatisfy { $0 == $0.lowercased() })
        #expect(request.body.isEmpty)
    }

    @Test func headAnswersWithHeadersAndNoBody() throws {
        let methods = Locked<[String]>([])
        let server = try startedServer { request in
            methods.withLock { $0.append(request.method) }
            return .text("hello, status page\n")
        }
        defer { server.stop() }

        let connection = try RawHTTPConnection(port: server.boundPort)
        try connection.send(RawHTTP.requestBytes("HEAD", "/status"))
        let response = try connection.readResponse(isHead: true)
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(response.header("Content-Length") == "19", "HEAD reports the GET body's length")
        #expect(try connection.readToEOF().isEmpty, "no body bytes after a HEAD response")
        #expect(methods.current == ["HEAD"])
    }

    @Test func postBodyIsDeliveredWhole() throws {
        let server = try startedServer { request in
            OpsResponse(status: 200, headers: [("X-Method", request.method)], body: request.body)
        }
        defer { server.stop() }
        let body = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }

        let response = try RawHTTP.request("POST", "/echo", port: server.boundPort, body: body)
        #expect(response.status == 200)
        #expect(response.header("X-Method") == "POST")
        #expect(response.body == body)

        // The same body in chunked transfer encoding, split unevenly.
        let connection = try RawHTTPConnection(port: server.boundPort)
        try connection.send(RawHTTP.requestBytes("PUT", "/echo", headers: [("Transfer-Encoding", "chunked")]))
        var offset = 0
        for size in [1, 999, 17_000, 22_000] {
            try connection.send(Array(String(size, radix: 16).utf8) + [13, 10] + Array(body[offset..<offset + size]) + [13, 10])
            offset += size
        }
        try connection.send("0\r\n\r\n")
        let chunked = try connection.readResponse()
        #expect(chunked.status == 200)
        #expect(chunked.header("X-Method") == "PUT")
        #expect(chunked.body == body)
    }

    @Test func keepAliveConnectionServesSeveralRequests() throws {
        let count = Locked(0)
        let server = try startedServer { request in
            let n = count.withLock { $0 += 1; return $0 }
            return .text("\(request.path) #\(n)")
        }
        defer { server.stop() }

        let connection = try RawHTTPConnection(port: server.boundPort)
        for path in ["/a", "/b", "/c"] {
            try connection.send(RawHTTP.requestBytes("GET", path, headers: [("Connection", "keep-alive")]))
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.text.hasPrefix(path + " #"))
        }
        #expect(count.current == 3)
    }
}
