import TandemRedis
import TandemTestSupport
import Testing

@Suite("RedisClient failure handling: outage, timeout, overload, shutdown", .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisClientFailureTests {
    @Test func reconnectsByItselfAfterTheServerIsKilledAndRestarted() async throws {
        let server = try await startServer()
        let states = Recorder<Bool>()
        let client = try startedClient(server.url) { configuration in
            // BLPOP below blocks until the kill; with the default 5 s timeout the client would (rightly)
            // call the connection dead first if the machine is slow.
            configuration.connection.commandTimeout = .seconds(120)
            configuration.onConnectionStateChange = { states.append($0) }
        }
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        #expect(states.values == [true])

        // A command blocked on the server is in flight when the server dies.
        async let blocked = sendViaCallback(client, RedisCommand("BLPOP", "never", 0))
        #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "blocked_clients") == "1" })
        server.kill()
        #expect(await blocked == .failure(.connectionLost))
        #expect(await waitUntil { states.values == [true, false] })
        #expect(!client.isConnected)

        // While down, commands fail fast: the callback runs before `send` returns.
        let immediate = Recorder<Result<RedisValue, RedisError>>()
        client.send(RedisCommand("PING")) { immediate.append($0) }
        #expect(immediate.values == [.failure(.notConnected)])
        await #expect(throws: RedisError.notConnected) { try await client.send(RedisCommand("PING")) }
        #expect(client.pendingCommandCount == 0)

        try await blocking { try server.start() }  // same port
        #expect(await waitUntil { client.isConnected })
        #expect(states.values == [true, false, true])
        #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))
    }

    @Test func pausedServerTimesOutInFlightCommandsThenReconnectsAfterResume() async throws {
        let server = try await startServer()
        let states = Recorder<Bool>()
        let client = try startedClient(server.url) { configuration in
            // Long enough that a busy machine (a stalled event loop or redis-server) cannot time out a
            // command or health check of the running server, which would add a disconnect the test does
            // not expect; the paused server still times out within seconds.
            configuration.connection.commandTimeout = .seconds(2)
            configuration.connection.connectTimeout = .seconds(2)
            configuration.connection.healthCheckInterval = .milliseconds(500)
            configuration.onConnectionStateChange = { states.append($0) }
        }
        defer {
            server.resume()
            client.shutdown()
        }
        #expect(await waitUntil { client.isConnected })

        server.pause()
        #expect(await sendViaCallback(client, RedisCommand("SET", "k", "v")) == .failure(.timeout))
        #expect(!client.isConnected)
        #expect(states.values == [true, false])
        // Connecting succeeds at the TCP level (the kernel accepts into the backlog), but the handshake
        // PING gets no answer, so the client must not report connected while the server is paused.
        await #expect(throws: RedisError.notConnected) { try await client.send(RedisCommand("PING")) }

        server.resume()
        #expect(await waitUntil { client.isConnected })
        #expect(try await client.send(RedisCommand("GET", "k")) == .bulkString(Array("v".utf8)))

        // With no traffic at all, the health check notices a hung server too.
        server.pause()
        #expect(await waitUntil { !client.isConnected })
        server.resume()
        #expect(await waitUntil { client.isConnected })
        #expect(states.values == [true, false, true, false, true])
    }

    @Test func refusesCommandsBeyondMaxPending() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url) { configuration in
            configuration.maxPendingCommands = 10
            configuration.connection.commandTimeout = .seconds(120)
        }
        defer {
            server.resume()
            client.shutdown()
        }
        #expect(await waitUntil { client.isConnected })

        server.pause()  // nothing completes until resume
        let results = Recorder<Result<RedisValue, RedisError>>()
        for _ in 0..<10 {
            client.send(RedisCommand("INCR", "n")) { results.append($0) }
        }
        #expect(client.pendingCommandCount == 10)
        let refused = Recorder<Result<RedisValue, RedisError>>()
        client.send(RedisCommand("PING")) { refused.append($0) }
        client.send([RedisCommand("PING")]) { refused.append(contentsOf: $0) }
        #expect(refused.values == [.failure(.overloaded), .failure(.overloaded)])

        server.resume()
        #expect(await waitUntil { results.count == 10 })
        #expect(results.values.compactMap { try? $0.get().int }.sorted() == (1...10).map { Int64($0) })
        #expect(await waitUntil { client.pendingCommandCount == 0 })
        #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))
    }

    @Test func shutdownFailsPendingCommandsAndReleasesTheConnection() async throws {
        let server = try await startServer()
        let states = Recorder<Bool>()
        let client = try startedClient(server.url) { configuration in
            configuration.connection.commandTimeout = .seconds(120)
            configuration.onConnectionStateChange = { states.append($0) }
        }
        #expect(await waitUntil { client.isConnected })
        // The readiness probe's connection may still be counted for a moment, hence the wait.
        #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "connected_clients") == "2" })  // us and redis-cli

        server.pause()
        let results = Recorder<Result<RedisValue, RedisError>>()
        for _ in 0..<5 {
            client.send(RedisCommand("GET", "k")) { results.append($0) }
        }
        await client.shutdown()
        // The owner thread has ended, so every callback has already run.
        #expect(results.values == Array(repeating: .failure(.shutdown), count: 5))
        #expect(!client.isConnected)
        #expect(client.pendingCommandCount == 0)
        #expect(states.values == [true, false])
        let after = Recorder<Result<RedisValue, RedisError>>()
        client.send(RedisCommand("PING")) { after.append($0) }
        #expect(after.values == [.failure(.shutdown)])

        client.start()  // no effect after shutdown
        server.resume()
        #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "connected_clients") == "1" })
        #expect(!client.isConnected)
        await client.shutdown()  // idempotent
    }

    @Test func unstartedAndDroppedClientsCleanUp() async throws {
        let server = try await startServer()
        let idle = try RedisClient(url: server.url)
        await #expect(throws: RedisError.notConnected) { try await idle.send(RedisCommand("PING")) }
        await idle.shutdown()
        await #expect(throws: RedisError.shutdown) { try await idle.send(RedisCommand("PING")) }

        // A started client dropped without shutdown() stops its thread and closes its socket in deinit.
        do {
            let dropped = try startedClient(server.url)
            #expect(await waitUntil { dropped.isConnected })
            // The readiness probe's connection may still be counted for a moment, hence the wait.
            #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "connected_clients") == "2" })
        }
        #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "connected_clients") == "1" })
    }
}
