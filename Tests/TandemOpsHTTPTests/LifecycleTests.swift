import Foundation
import TandemTestSupport
import Testing
@testable import TandemOpsHTTP

/// start/stop: binding, port release, idempotence, errors.
@Suite struct LifecycleTests {
    /// Whether this process still has a listening TCP socket on `port`: the sockets in LISTEN state on it
    /// (`/proc/net/tcp`, `/proc/net/tcp6`) against this process's descriptors (`/proc/self/fd`). "Is a
    /// connection refused" is not the question after stop(): once the port is free any other process may
    /// bind it (seen once with four helpers' servers on the machine), and the connection is then accepted.
    private func thisProcessListens(on port: Int) -> Bool {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl, local address:port (hex), remote, state (0A: LISTEN), queues, timer, retransmits, uid, timeout, inode
                guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                    Int(fields[1][fields[1].index(after: colon)...], radix: 16) == port
                else { continue }
                inodes.insert("socket:[\(fields[9])]")
            }
        }
        guard !inodes.isEmpty else { return false }
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return descriptors.contains { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")).map(inodes.contains) ?? false
        }
    }

    private func connectionRefused(port: Int) -> Bool {
        do {
            _ = try RawHTTPConnection(port: port)
            return false
        } catch {
            return String(describing: error).contains("refused")
        }
    }

    @Test func stopReleasesThePortAndIsIdempotent() throws {
        let server = try startedServer { _ in .text("first") }
        let port = server.boundPort
        #expect(try RawHTTP.get("/", port: port).text == "first")
        #expect(thisProcessListens(on: port), "the check sees the listener while it is there")

        server.stop()
        #expect(!server.isRunning)
        #expect(!thisProcessListens(on: port), "nothing listens after stop()")
        server.stop()  // second call: no-op, no crash
        #expect(server.boundPort == port, "boundPort keeps reporting the last port")

        // The very same port can be bound again at once.
        let again = try startedServer(.init(port: port)) { _ in .text("second") }
        defer { again.stop() }
        #expect(again.boundPort == port)
        #expect(try RawHTTP.get("/", port: port).text == "second")
    }

    @Test func stopBeforeStartIsANoOp() {
        let server = OpsHTTPServer(configuration: .init(), logger: testLogger()) { _ in .text("") }
        server.stop()
        #expect(!server.isRunning)
        #expect(server.boundPort == 0)
    }

    @Test func serverCanBeRestartedAfterStop() throws {
        let server = try startedServer { _ in .text("hi") }
        server.stop()
        try server.start()
        defer { server.stop() }
        #expect(server.isRunning)
        #expect(try RawHTTP.get("/", port: server.boundPort).text == "hi")
    }

    @Test func startWhileRunningThrowsAlreadyRunning() throws {
        let server = try startedServer { _ in .text("hi") }
        defer { server.stop() }
        #expect(throws: OpsHTTPServerError.alreadyRunning) { try server.start() }
        #expect(try RawHTTP.get("/", port: server.boundPort).text == "hi", "still serving")
    }

    @Test func concurrentStopCallsAllReturnOnlyAfterShutdown() throws {
        let server = try startedServer { _ in .text("hi") }
        let port = server.boundPort
        #expect(thisProcessListens(on: port))
        let refusedAfterReturn = Locked<[Bool]>([])
        let finished = runOnThreads(4) { _ in
            server.stop()
            // Whichever thread did the work, every stop() has returned only
            // after the listener is gone.
            let refused = !self.thisProcessListens(on: port)
            refusedAfterReturn.withLock { $0.append(refused) }
        }
        #expect(finished)
        #expect(refusedAfterReturn.current == [true, true, true, true])
    }

    @Test func stopWaitsForRunningHandlersAndNoHandlerRunsAfterIt() async throws {
        let entered = Locked(false)
        let handlerDone = Locked(false)
        let callsAfterStop = Locked(0)
        let stopped = Locked(false)
        let release = DispatchSemaphore(value: 0)
        let server = try startedServer { request in
            if stopped.current { callsAfterStop.withLock { $0 += 1 } }
            if request.path == "/block" {
                entered.withLock { $0 = true }
                _ = release.wait(timeout: .now() + 20)
                handlerDone.withLock { $0 = true }
            }
            return .text("done")
        }
        let port = server.boundPort

        let client = BackgroundWork { _ = try? RawHTTP.get("/block", port: port) }
        try await waitUntil { entered.current }

        let handlerDoneWhenStopReturned = Locked<Bool?>(nil)
        let stopper = BackgroundWork {
            server.stop()
            handlerDoneWhenStopReturned.withLock { $0 = handlerDone.current }
            stopped.withLock { $0 = true }
        }
        // stop() is under way once the server no longer reports running...
        try await waitUntil { !server.isRunning }
        // ...and, with the handler still blocked, must not return. (A stop()
        // that did not wait would return within this bounded grace period
        // and be caught either here or by the check after the release.)
        await #expect(throws: WaitTimeoutError.self) {
            try await waitUntil(timeout: .milliseconds(500)) { handlerDoneWhenStopReturned.current != nil }
        }
        #expect(handlerDoneWhenStopReturned.current == nil)

        release.signal()
        #expect(stopper.wait())
        #expect(client.wait())
        #expect(handlerDoneWhenStopReturned.current == true, "stop() returned only after the handler finished")
        #expect(!thisProcessListens(on: port))
        #expect(callsAfterStop.current == 0)
    }

    @Test func bindingABusyPortThrowsAClearError() throws {
        let holder = try startedServer { _ in .text("holder") }
        defer { holder.stop() }
        let port = holder.boundPort

        let logged = Locked<[String]>([])
        let contender = OpsHTTPServer(
            configuration: .init(port: port), logger: testLogger(capturing: logged)
        ) { _ in .text("contender") }
        do {
            try contender.start()
            Issue.record("second server bound a busy port \(port)")
            contender.stop()
        } catch let error as OpsHTTPServerError {
            guard case .startFailed(let host, let failedPort, let reason) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(host == "127.0.0.1")
            #expect(failedPort == port)
            #expect(reason.lowercased().contains("in use"), "reason: \(reason)")
            #expect(error.description.contains("\(port)"))
        }
        #expect(!contender.isRunning)
        #expect(logged.current.contains { $0.contains("libmicrohttpd") && $0.lowercased().contains("in use") },
                "libmicrohttpd's own error log is routed to the Logger")
        #expect(try RawHTTP.get("/", port: port).text == "holder", "the holder is unaffected")
    }

    @Test func invalidConfigurationIsRejectedBeforeBinding() {
        let handler: @Sendable (OpsRequest) -> OpsResponse = { _ in .text("") }
        for host in ["", "example.com", "127.0.0.256", "::g", "[::1"] {
            let server = OpsHTTPServer(configuration: .init(host: host), logger: testLogger(), handler: handler)
            #expect(throws: OpsHTTPServerError.invalidHost(host)) { try server.start() }
        }
        for configuration in [
            OpsHTTPServer.Configuration(port: 70000),
            OpsHTTPServer.Configuration(maxConnections: 0),
            OpsHTTPServer.Configuration(connectionTimeoutSeconds: -1),
            OpsHTTPServer.Configuration(maxRequestBodyBytes: -1),
        ] {
            let server = OpsHTTPServer(configuration: configuration, logger: testLogger(), handler: handler)
            #expect(throws: OpsHTTPServerError.self) { try server.start() }
            #expect(!server.isRunning)
        }
    }

    @Test func localhostMeansIPv4Loopback() throws {
        let server = try startedServer(.init(host: "localhost")) { _ in .text("v4") }
        defer { server.stop() }
        #expect(try RawHTTP.get("/", port: server.boundPort, host: "127.0.0.1").text == "v4")
    }

    @Test(.enabled(if: ipv6LoopbackAvailable)) func listensOnIPv6Loopback() throws {
        for host in ["::1", "[::1]"] {
            let server = try startedServer(.init(host: host)) { _ in .text("v6") }
            defer { server.stop() }
            #expect(try RawHTTP.get("/", port: server.boundPort, host: "::1").text == "v6")
            #expect(connectionRefused(port: server.boundPort), "bound to ::1 only, not 127.0.0.1")
        }
    }

    @Test(.enabled(if: ipv6LoopbackAvailable)) func ipv6AnyAddressIsDualStack() throws {
        let server = try startedServer(.init(host: "::")) { _ in .text("both") }
        defer { server.stop() }
        #expect(try RawHTTP.get("/", port: server.boundPort, host: "::1").text == "both")
        #expect(try RawHTTP.get("/", port: server.boundPort, host: "127.0.0.1").text == "both")
    }

    @Test func deinitStopsTheServer() throws {
        var server: OpsHTTPServer? = try startedServer { _ in .text("hi") }
        let port = server!.boundPort
        #expect(try RawHTTP.get("/", port: port).text == "hi")
        server = nil
        #expect(!thisProcessListens(on: port))
    }
}

/// The connection options reach libmicrohttpd (more in ConnectionFloodTests).
@Suite struct ConnectionOptionTests {
    @Test func atTheLimitANewConnectionClosesTheOneIdleLongest() async throws {
        let server = try startedServer(.init(maxConnections: 2)) { _ in .text("ok") }
        defer { server.stop() }
        let port = server.boundPort
        let context = try #require(server.runningContext)

        // Two keep-alive connections, each proven accepted by an answer, and held open. A connection is idle
        // only once libmicrohttpd has reported its request complete, which may come after the client has
        // read the response (late under a sanitizer): wait for that notice, one connection at a time, so
        // the first is idle longest and both are idle when the third arrives.
        var held: [RawHTTPConnection] = []
        for count in 1...2 {
            let connection = try RawHTTPConnection(port: port)
            try connection.send(RawHTTP.requestBytes("GET", "/", headers: [("Connection", "keep-alive")]))
            #expect(try connection.readResponse().status == 200)
            held.append(connection)
            try await waitUntil("\(count) idle: \(context.connections.counts)") { context.connections.counts.idle == count }
        }

        // The third is answered; the first (idle longest) is closed to make room, the second stays.
        #expect(try RawHTTP.get("/", port: port).status == 200)
        #expect(try held[0].readToEOF().isEmpty)
        try held[1].send(RawHTTP.requestBytes("GET", "/", headers: [("Connection", "keep-alive")]))
        #expect(try held[1].readResponse().status == 200)
    }

    @Test func idleConnectionsAreClosedAfterTheTimeout() throws {
        let server = try startedServer(.init(connectionTimeoutSeconds: 1)) { _ in .text("ok") }
        defer { server.stop() }

        let idle = try RawHTTPConnection(port: server.boundPort, timeoutSeconds: 15)
        try idle.send(RawHTTP.requestBytes("GET", "/", headers: [("Connection", "keep-alive")]))
        #expect(try idle.readResponse().status == 200)
        // Sends nothing more: the server closes it (the client would wait 15 s).
        #expect(try idle.readToEOF().isEmpty)
        #expect(idle.sawEOF)
    }
}
