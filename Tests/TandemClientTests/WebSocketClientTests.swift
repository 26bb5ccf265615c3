import NIOCore
import NIOPosix
import TandemClient
import TandemTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("WebSocketClient against a real NIO WebSocket server")
struct WebSocketClientTests {
    @Test func connectsAndEchoesText() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/echo", on: group)
            let recorder = EventRecorder(client)
            let json = #"{"type":"cursor","x":1}"#
            client.send(text: "hello")
            try await client.sendAndWait(text: json)
            client.sendBinary([1, 2, 3])

            #expect(try await recorder.waitForTexts(2) == ["hello", json])
            try await waitUntil("binary echo") { recorder.events.contains(.binary([1, 2, 3])) }
            try await waitUntil("counters, have \(client.statistics)") {
                client.messagesReceived == 3 && client.bytesReceived == "hello".utf8.count + json.utf8.count + 3
            }
            #expect(try await server.connection().seen.texts == ["hello", json])
            await client.close()
        }
    }

    @Test func queryStringAndHeadersReachTheServer() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(
                to: server.url + "/ws/doc-1?token=abc.def&user=u%201",
                headers: [("Authorization", "Bearer secret"), ("X-Tandem-Client", "bench/1")],
                on: group
            )
            let request = try await server.connection().request
            #expect(request.uri == "/ws/doc-1?token=abc.def&user=u%201")
            #expect(request.header("authorization") == "Bearer secret")
            #expect(request.header("x-tandem-client") == "bench/1")
            #expect(request.header("host") == "127.0.0.1:\(server.port)")
            #expect(request.header("sec-websocket-version") == "13")
            #expect(client.upgradeResponseHeaders.contains(where: { $0.0.lowercased() == "sec-websocket-accept" }))
            await client.close()
        }
    }

    @Test func handshakeRejectedWith401ReportsStatusAndBody() async throws {
        try await withServer { server in
            let error = await #expect(throws: WebSocketClientError.self) {
                _ = try await WebSocketClient.connect(to: server.url + "/reject?status=401", on: group)
            }
            guard case .handshakeRejected(let status, _, let body)? = error else {
                Issue.record("expected handshakeRejected, got \(String(describing: error))")
                return
            }
            #expect(status == 401)
            #expect(body == "rejected: 401 Unauthorized")
            #expect(server.connections.isEmpty)
        }
    }

    @Test func handshakeRejectedWith503CarriesRetryAfter() async throws {
        try await withServer { server in
            let error = await #expect(throws: WebSocketClientError.self) {
                _ = try await WebSocketClient.connect(to: server.url + "/reject?status=503&retry-after=7", on: group)
            }
            guard case .handshakeRejected(let status, let headers, _)? = error else {
                Issue.record("expected handshakeRejected, got \(String(describing: error))")
                return
            }
            #expect(status == 503)
            #expect(headers.contains(where: { $0 == ("Retry-After", "7") }))
            #expect(error?.headerValue("retry-after") == "7")
        }
    }

    @Test(arguments: [1000, 1001, 1003, 1008, 1013])
    func serverCloseCodeIsReported(code: Int) async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/close", on: group)
            let recorder = EventRecorder(client)
            let connection = try await server.connection()
            connection.sendClose(code: code, reason: "reason \(code)")

            let closed = try await recorder.waitForClosed()
            #expect(closed.code == code)
            #expect(closed.reason == "reason \(code)")
            #expect(client.closeCode == code)
            #expect(client.closeReason == "reason \(code)")
            #expect(client.isClosed)
            // The client answered with a close frame echoing the code (RFC 6455 5.5.1).
            try await waitUntil("server saw the echo, saw \(connection.seen.closeFrames)") {
                connection.seen.closeFrames.count == 1
            }
            #expect(connection.seen.closeFrames.first?.code == code)
        }
    }

    @Test func clientCloseCompletesTheHandshake() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/bye", on: group)
            let recorder = EventRecorder(client)
            let connection = try await server.connection()

            await client.close(code: 1000, reason: "bye")

            #expect(client.isClosed)
            // 1000 came back in the server's answering close frame: the handshake ran, no timeout.
            #expect(client.closeCode == 1000)
            #expect(connection.seen.closeFrames.count == 1)
            #expect(connection.seen.closeFrames.first?.code == 1000)
            #expect(connection.seen.closeFrames.first?.reason == "bye")
            #expect(try await recorder.waitForClosed().code == 1000)
            try await waitUntil("server side closed") { connection.seen.isClosed }

            // Sending after close fails instead of writing to a dead connection.
            let promise = client.eventLoop.makePromise(of: Void.self)
            client.send(text: "too late", promise: promise)
            await #expect(throws: (any Error).self) { try await promise.futureResult.get() }
        }
    }

    @Test func closeWhileReadingIsPausedStillCompletesTheHandshake() async throws {
        try await withServer { server in
            // The server answers the close frame but leaves the TCP connection open (no EOF that
            // NIO would drain despite the pause), and the close timeout is long: only reading the
            // answer gives the client its close code.
            let client = try await WebSocketClient.connect(
                to: server.url + "/keep-tcp",
                on: group,
                configuration: .init(closeTimeout: .seconds(60))
            )
            let connection = try await server.connection()
            try await client.setReading(paused: true)

            await client.close(code: 1001, reason: "leaving")

            #expect(client.closeCode == 1001)
            #expect(connection.seen.closeFrames.first?.code == 1001)
            try await waitUntil("server saw the client drop TCP") { connection.seen.isClosed }
        }
    }

    @Test func abortDropsTheConnectionWithoutACloseFrame() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/crash", on: group)
            let recorder = EventRecorder(client)
            let connection = try await server.connection()

            client.abort()

            try await waitUntil("server saw the connection end") { connection.seen.isClosed }
            #expect(connection.seen.closeFrames.isEmpty)
            let closed = try await recorder.waitForClosed()
            #expect(closed.code == nil)
            #expect(client.closeCode == nil)
            #expect(client.isClosed)
        }
    }

    @Test func autoPongAnswersServerPings() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/ping", on: group)
            let connection = try await server.connection()

            connection.sendPing([1, 2, 3])

            try await waitUntil("server got the pong, got \(connection.seen.pongs)") {
                connection.seen.pongs == [[1, 2, 3]]
            }
            #expect(client.statistics.pingsReceived == 1)
            await client.close()
        }
    }

    @Test func withoutAutoPongNoPongIsSent() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(
                to: server.url + "/no-pong",
                on: group,
                configuration: .init(autoPong: false)
            )
            let connection = try await server.connection()

            connection.sendPing([7])
            try await waitUntil("client counted the ping") { client.statistics.pingsReceived == 1 }
            // A pong would have been written while the ping was handled, before this marker:
            // once the marker has arrived, a pong would have too.
            client.send(text: "marker")
            try await waitUntil("server got the marker") { connection.seen.texts == ["marker"] }
            #expect(connection.seen.pongs.isEmpty)
            await client.close()
        }
    }

    @Test func clientPingGetsAPong() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/client-ping", on: group)
            let connection = try await server.connection()

            client.sendPing([9, 9])

            try await waitUntil("pong counted, have \(client.statistics)") { client.statistics.pongsReceived == 1 }
            #expect(connection.seen.pings == [[9, 9]])
            await client.close()
        }
    }

    @Test func pausedReadingBacksUpTheServerAndResumingDrainsIt() async throws {
        try await withServer { server in
            // Count only (callbacks): 64 MiB through an unconsumed AsyncStream would pile up in memory.
            let client = try await WebSocketClient.connect(
                to: server.url + "/slow",
                on: group,
                callbacks: .init(onText: { _ in })
            )
            let connection = try await server.connection()
            try await client.setReading(paused: true)

            // 64 MiB: far more than the kernel buffers of a socket whose reader never read.
            let count = 1024
            let size = 64 * 1024
            connection.flood(count: count, size: size)

            try await waitUntil("server channel became unwritable, \(connection.seen)") {
                connection.seen.sawUnwritable && !connection.seen.isWritable
            }
            #expect(client.messagesReceived == 0)
            #expect(connection.seen.floodRemaining > 0)

            try await client.setReading(paused: false)

            try await waitUntil("client received the whole flood, \(client.statistics)") {
                client.messagesReceived == count
            }
            try await waitUntil("server drained, \(connection.seen)") {
                connection.seen.floodRemaining == 0 && connection.seen.isWritable
            }
            #expect(client.bytesReceived == count * size)
            await client.close()
        }
    }

    @Test func fiveHundredConcurrentClientsConnectAndEcho() async throws {
        try await withServer { server in
            let clientCount = 500
            let received = Locked<[Int: String]>([:])
            let clients = try await withThrowingTaskGroup(of: WebSocketClient.self) { tasks in
                for index in 0..<clientCount {
                    tasks.addTask {
                        try await WebSocketClient.connect(
                            to: server.url + "/many?client=\(index)",
                            on: group,
                            // 500 handshakes at once take longer than the default 10 s under a sanitizer.
                            configuration: .init(connectTimeout: .seconds(10 * Int64(TestTimeouts.scale))),
                            callbacks: .init(onText: { buffer in
                                received.withLock { $0[index] = String(buffer: buffer) }
                            })
                        )
                    }
                }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
            #expect(clients.count == clientCount)
            // NIO's server upgrader flushes the 101 before it runs the pipeline callback that records the
            // connection, so a client can finish its handshake before the server has recorded it.
            try await waitUntil("all server connections, have \(server.connections.count)") {
                server.connections.count == clientCount
            }

            // Each client learns its index from the server's record of its request.
            let indexByPort = Dictionary(
                uniqueKeysWithValues: server.connections.map { connection in
                    (connection.channel.remoteAddress!.port!, Int(connection.request.uri.split(separator: "=").last!)!)
                }
            )
            for client in clients {
                let index = indexByPort[client.localAddress!.port!]!
                client.send(text: "hello \(index)")
            }

            try await waitUntil("all echoes, have \(received.value.count)") { received.value.count == clientCount }
            let echoes = received.value
            for index in 0..<clientCount {
                #expect(echoes[index] == "hello \(index)")
            }

            await withTaskGroup(of: Void.self) { tasks in
                for client in clients {
                    tasks.addTask { await client.close() }
                }
            }
            #expect(clients.allSatisfy { $0.isClosed && $0.closeCode == 1000 })
        }
    }

    @Test func callbacksRunOnTheEventLoop() async throws {
        try await withServer { server in
            let loop = group.next()
            let seen = Locked<[String]>([])
            let closes = Locked<[Int?]>([])
            let client = try await WebSocketClient.connect(
                to: server.url + "/callbacks",
                on: loop,
                callbacks: .init(
                    onText: { buffer in
                        seen.withLock { $0.append("\(loop.inEventLoop) \(String(buffer: buffer))") }
                    },
                    onClose: { code, _ in closes.withLock { $0.append(code) } }
                )
            )
            #expect(client.eventLoop === loop)
            client.send(text: "one")
            try await waitUntil("callback ran") { seen.value == ["true one"] }

            let connection = try await server.connection()
            connection.sendClose(code: 1001, reason: "going away")
            try await waitUntil("onClose ran") { closes.value == [1001] }

            // With callbacks, the stream carries nothing and has ended.
            var events: [WebSocketEvent] = []
            for await event in client.events { events.append(event) }
            #expect(events.isEmpty)
        }
    }

    /// A client whose callback captures the client itself (client → handler → callbacks → client, what a
    /// bench connection answering from `onText` builds) is freed once its connection has ended, however it
    /// ended: the handler drops its callbacks then. Without that the cycle keeps it forever.
    @Test(arguments: ["client close", "server close", "protocol error", "abort"])
    func aClientCapturedByItsOwnCallbacksIsFreedOnceClosed(ending: String) async throws {
        try await withServer { server in
            let answered = Locked(0)
            var client: WebSocketClient? = try await Self.connectCapturingItself(server.url + "/cycle", answered: answered)
            weak var freed = client
            let connection = try await server.connection()
            connection.sendText("ping")
            try await waitUntil("answered from the callback") { connection.seen.texts == ["pong"] && answered.value == 1 }
            switch ending {
            case "client close": await client?.close()
            case "server close": connection.sendClose(code: 1001, reason: "going away")
            case "protocol error": connection.sendFrame(opcode: 0x3, payload: "what is this")
            default: client?.abort()
            }
            try await waitUntil("closed") { client?.isClosed == true }
            client = nil
            try await waitUntil("the client is freed (\(ending))") { freed == nil }
        }
    }

    /// Connects with an `onText` that answers "ping" with "pong" through the client it holds strongly; the
    /// holder is local here, so only the callback keeps it.
    private static func connectCapturingItself(_ url: String, answered: Locked<Int>) async throws -> WebSocketClient {
        let holder = Locked<WebSocketClient?>(nil)
        let client = try await WebSocketClient.connect(
            to: url, on: group,
            callbacks: .init(onText: { buffer in
                guard String(buffer: buffer) == "ping" else { return }
                holder.value?.send(text: "pong")
                answered.withLock { $0 += 1 }
            }))
        holder.withLock { $0 = client }
        return client
    }

    @Test func messageSentRightAfterTheUpgradeIsNotLost() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/welcome", on: group)
            let recorder = EventRecorder(client)
            #expect(try await recorder.waitForTexts(1) == ["welcome"])
            await client.close()
        }
    }

    @Test func fragmentedMessageArrivesWhole() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/fragments", on: group)
            let recorder = EventRecorder(client)
            try await server.connection().sendFragmented(["{\"type\":", "\"hel", "lo\"}"])
            #expect(try await recorder.waitForTexts(1) == [#"{"type":"hello"}"#])
            #expect(client.messagesReceived == 1)
            await client.close()
        }
    }

    @Test func messageOverMaxFrameSizeClosesWith1009() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(
                to: server.url + "/big",
                on: group,
                configuration: .init(maxFrameSize: 1024)
            )
            let connection = try await server.connection()
            connection.sendBinary(count: 2048)

            try await waitUntil("client closed") { client.isClosed }
            try await waitUntil("server saw 1009, saw \(connection.seen.closeFrames)") {
                connection.seen.closeFrames.first?.code == 1009
            }
            #expect(client.messagesReceived == 0)
            #expect(client.error != nil)
        }
    }

    @Test func reservedOpcodeFailsTheConnectionWith1002() async throws {
        try await withServer { server in
            let client = try await WebSocketClient.connect(to: server.url + "/reserved", on: group)
            let connection = try await server.connection()
            connection.sendFrame(opcode: 0x3, payload: "what is this")

            try await waitUntil("server saw 1002, saw \(connection.seen.closeFrames)") {
                connection.seen.closeFrames.first?.code == 1002
            }
            try await waitUntil("client closed") { client.isClosed }
            #expect(client.messagesReceived == 0)
        }
    }

    @Test func connectionRefusedIsReported() async throws {
        let port = freeTCPPort()
        let error = await #expect(throws: WebSocketClientError.self) {
            _ = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(port)/", on: group)
        }
        guard case .connectionRefused(let host, let refusedPort)? = error else {
            Issue.record("expected connectionRefused, got \(String(describing: error))")
            return
        }
        #expect(host == "127.0.0.1")
        #expect(refusedPort == port)
    }

    @Test func silentServerHitsTheHandshakeTimeout() async throws {
        let server = try await RawTCPServer(response: nil)
        let error = await #expect(throws: WebSocketClientError.self) {
            _ = try await WebSocketClient.connect(
                to: "ws://127.0.0.1:\(server.port)/",
                on: group,
                // One budget covers the TCP connect and the handshake: on a loaded machine a loopback connect
                // alone took over 200 ms (a connectTimeout, not the handshakeTimeout under test). The silent
                // server makes the test wait the whole budget, so it stays short.
                configuration: .init(connectTimeout: .seconds(1))
            )
        }
        guard case .handshakeTimeout? = error else {
            Issue.record("expected handshakeTimeout, got \(String(describing: error))")
            return
        }
        try await server.stop()
    }

    @Test func wrongAcceptKeyFailsTheHandshake() async throws {
        let server = try await RawTCPServer(
            response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: bm90LXRoZS1yaWdodC1rZXk=\r\n\r\n"
        )
        let error = await #expect(throws: WebSocketClientError.self) {
            _ = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(server.port)/", on: group)
        }
        guard case .handshakeFailed(let reason)? = error else {
            Issue.record("expected handshakeFailed, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("Sec-WebSocket-Accept"))
        try await server.stop()
    }

    /// wss:// too, without the package's TLS trait (with it, `make test-tls` tests wss for real).
    @Test(arguments: ["http://127.0.0.1/", "ws://127.0.0.1:99999/", "ws:///path", "127.0.0.1:80"] + withoutTLS(["wss://127.0.0.1/"]))
    func invalidURLsAreRejectedBeforeConnecting(url: String) async throws {
        let error = await #expect(throws: WebSocketClientError.self) {
            _ = try await WebSocketClient.connect(to: url, on: group)
        }
        guard case .invalidURL(let reported, _)? = error else {
            Issue.record("expected invalidURL, got \(String(describing: error))")
            return
        }
        #expect(reported == url)
    }
}

/// `urls` in a build without the package's TLS trait, none with it.
private func withoutTLS(_ urls: [String]) -> [String] {
    #if TLS
    return []
    #else
    return urls
    #endif
}
