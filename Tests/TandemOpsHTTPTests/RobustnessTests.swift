import Foundation
import TandemTestSupport
import Testing
@testable import TandemOpsHTTP

/// Malformed requests and unusable handler responses cost one request, never
/// the process, and the server keeps serving.
@Suite struct RobustnessTests {
    private func assertStillServing(_ server: OpsHTTPServer) throws {
        let response = try RawHTTP.get("/alive", port: server.boundPort)
        #expect(response.status == 200)
        #expect(response.text == "alive")
    }

    @Test func malformedRequestsAreRejectedAndTheServerKeepsServing() throws {
        let paths = Locked<[String]>([])
        let server = try startedServer { request in
            paths.withLock { $0.append(request.path) }
            return .text("alive")
        }
        defer { server.stop() }
        let port = server.boundPort

        let garbage: [[UInt8]] = [
            Array("GARBAGE\r\n\r\n".utf8),
            Array("GET\r\n\r\n".utf8),
            Array("GET / HTTP/9.9\r\nHost: x\r\n\r\n".utf8),
            Array("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n".utf8),
            Array("GET / HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n".utf8),
            Array("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8),
            [0x00, 0xFF, 0xFE, 0x0D, 0x0A, 0x0D, 0x0A],
            Array(("GET /" + String(repeating: "a", count: 100_000) + " HTTP/1.1\r\nHost: x\r\n\r\n").utf8),
        ]
        for bytes in garbage {
            let connection = try RawHTTPConnection(port: port)
            try? connection.send(bytes)
            connection.shutdownWrite()
            // Whatever comes back (a 4xx or a plain close) must not be a
            // handler answer to something unparseable, and must terminate.
            let reply = String(decoding: (try? connection.readToEOF()) ?? [], as: UTF8.self)
            #expect(!reply.hasPrefix("HTTP/1.1 2"), "got \(reply.prefix(40)) for \(bytes.prefix(20))")
        }
        try assertStillServing(server)
    }

    @Test func oddButValidPathsReachTheHandlerSafely() throws {
        let paths = Locked<[String]>([])
        let server = try startedServer { request in
            paths.withLock { $0.append(request.path) }
            return .text("alive")
        }
        defer { server.stop() }

        // Invalid UTF-8 after decoding, an encoded NUL, and an encoded CR/LF.
        for target in ["/%ff%fe", "/a%00b", "/x%0d%0aSet-Cookie:%20evil=1"] {
            let response = try RawHTTP.get(target, port: server.boundPort)
            #expect(response.status == 200)
            #expect(response.header("Set-Cookie") == nil)
        }
        let seen = paths.current
        #expect(seen.count == 3)
        #expect(seen[0] == "/\u{FFFD}\u{FFFD}", "invalid UTF-8 is repaired, not trusted")
        try assertStillServing(server)
    }

    @Test func unusableHandlerResponsesBecome500() throws {
        let server = try startedServer { request in
            switch request.path {
            case "/crlf-header": return OpsResponse(status: 200, headers: [("X-Evil", "a\r\nSet-Cookie: evil=1")], body: [])
            case "/bad-name": return OpsResponse(status: 200, headers: [("Bad Name", "x")], body: [])
            case "/status-99": return OpsResponse(status: 99)
            case "/status-1000": return OpsResponse(status: 1000)
            case "/own-length": return OpsResponse(status: 200, headers: [("Content-Length", "999")], body: Array("abc".utf8))
            default: return .text("alive")
            }
        }
        defer { server.stop() }
        let port = server.boundPort

        for path in ["/crlf-header", "/bad-name", "/status-99", "/status-1000"] {
            let response = try RawHTTP.get(path, port: port)
            #expect(response.status == 500, "\(path)")
            #expect(response.header("Set-Cookie") == nil)
        }
        let ownLength = try RawHTTP.get("/own-length", port: port)
        #expect(ownLength.status == 200)
        #expect(ownLength.header("Content-Length") == "3", "the server computes Content-Length, not the handler")
        #expect(ownLength.text == "abc")
        try assertStillServing(server)
    }

    @Test func clientDisconnectingMidRequestDoesNotDisturbTheServer() throws {
        let server = try startedServer(.init(maxRequestBodyBytes: 1 << 20)) { _ in .text("alive") }
        defer { server.stop() }

        for _ in 0..<5 {
            let connection = try RawHTTPConnection(port: server.boundPort)
            try connection.send(RawHTTP.requestBytes("POST", "/", headers: [("Content-Length", "100000")]))
            try connection.send([UInt8](repeating: 7, count: 1000))
            // The connection is dropped here with the body unfinished.
        }
        try assertStillServing(server)
    }
}

/// Every request's per-request state (kept in libmicrohttpd's `con_cls`)
/// is freed through `MHD_OPTION_NOTIFY_COMPLETED`, however the request ends.
@Suite struct RequestStateLifetimeTests {
    @Test func perRequestStateIsFreedForEveryOutcome() async throws {
        let release = DispatchSemaphore(value: 0)
        let entered = Locked(false)
        let server = try startedServer(.init(maxRequestBodyBytes: 1024)) { request in
            if request.path == "/block" {
                entered.withLock { $0 = true }
                _ = release.wait(timeout: .now() + 20)
            }
            return .text("ok")
        }
        let counter = try #require(server.liveRequestCounter)
        let port = server.boundPort

        // Completed, keep-alive, over-limit (early and chunked), aborted mid-body.
        _ = try RawHTTP.get("/", port: port)
        let keepAlive = try RawHTTPConnection(port: port)
        for _ in 0..<3 {
            try keepAlive.send(RawHTTP.requestBytes("GET", "/", headers: [("Connection", "keep-alive")]))
            _ = try keepAlive.readResponse()
        }
        _ = try RawHTTP.request("POST", "/", port: port, body: [UInt8](repeating: 0, count: 2048))
        let chunked = try RawHTTPConnection(port: port)
        try chunked.send(RawHTTP.requestBytes("POST", "/", headers: [("Transfer-Encoding", "chunked")]))
        try chunked.send("800\r\n" + String(repeating: "z", count: 2048) + "\r\n0\r\n\r\n")
        #expect(try chunked.readResponse().status == 413)
        do {
            let aborted = try RawHTTPConnection(port: port)
            try aborted.send(RawHTTP.requestBytes("POST", "/", headers: [("Content-Length", "1000")]))
            try aborted.send([UInt8](repeating: 1, count: 10))
        }
        try await waitUntil("live request states: \(counter.value)") { counter.value == 0 }

        // A request still inside its handler when the server stops is freed
        // by the shutdown itself.
        let client = BackgroundWork { _ = try? RawHTTP.get("/block", port: port) }
        try await waitUntil { entered.current }
        #expect(counter.value >= 1)
        let stopper = BackgroundWork { server.stop() }
        release.signal()
        #expect(stopper.wait())
        #expect(client.wait())
        #expect(counter.value == 0)
        _ = keepAlive
    }
}

/// A connection the client ended is let go at once, not at the idle timeout: its slot counts against
/// the connection limits. (libmicrohttpd 0.9.75's epoll mode missed some of these until the timeout,
/// about 1 in 5; hence poll() — see `OpsHTTPServer.daemonFlags`.)
@Suite struct ClosedConnectionTests {
    @Test func finishedAndAbandonedRequestsAreFreedWellBeforeTheIdleTimeout() async throws {
        let server = try startedServer(.init(connectionTimeoutSeconds: 60, maxRequestBodyBytes: 1024)) { _ in .text("ok") }
        defer { server.stop() }
        let counter = try #require(server.liveRequestCounter)
        let context = try #require(server.runningContext)
        for round in 0..<30 {
            #expect(try RawHTTP.get("/", port: server.boundPort).status == 200)
            do {
                let abandoned = try RawHTTPConnection(port: server.boundPort)
                try abandoned.send(RawHTTP.requestBytes("POST", "/", headers: [("Content-Length", "1000")]))
                try abandoned.send([UInt8](repeating: 1, count: 10))
            }
            // Bounded by waitUntil's 10 s, far below the 60 s idle timeout.
            try await waitUntil("round \(round)") { counter.value == 0 && context.connections.counts.tracked == 0 }
        }
    }
}

