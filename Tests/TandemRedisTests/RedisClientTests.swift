import Foundation
import NIOCore
import TandemRedis
import TandemTestSupport
import Testing

@Suite("RedisClient against a real redis-server", .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisClientTests {
    @Test func allReplyTypes() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        #expect(try await client.send(RedisCommand("SET", "k", "v")) == .simpleString("OK"))
        #expect(try await client.send(RedisCommand("GET", "k")) == .bulkString(Array("v".utf8)))
        #expect(try await client.send(RedisCommand("GET", "missing")) == .null)
        #expect(try await client.send(RedisCommand("INCRBY", "n", Int64(41))) == .integer(41))
        #expect(try await client.send(RedisCommand("INCRBYFLOAT", "f", 1.5)).string == "1.5")
        #expect(try await client.send(RedisCommand("SET", "empty", "")) == .simpleString("OK"))
        #expect(try await client.send(RedisCommand("GET", "empty")) == .bulkString([]))
        #expect(try await client.send(RedisCommand("RPUSH", "list", "a", "b", 3)) == .integer(3))
        #expect(
            try await client.send(RedisCommand("LRANGE", "list", 0, -1))
                == .array([.bulkString(Array("a".utf8)), .bulkString(Array("b".utf8)), .bulkString(Array("3".utf8))]))
        #expect(try await client.send(RedisCommand("LRANGE", "nothing", 0, -1)) == .array([]))
        #expect(
            try await client.send(RedisCommand("MGET", "k", "missing"))
                == .array([.bulkString(Array("v".utf8)), .null]))
        // Nested arrays mixing every type, from Lua.
        let nested = try await client.send(
            RedisCommand("EVAL", "return {1, 'two', {3, {'four'}}, redis.status_reply('FINE')}", 0))
        #expect(
            nested
                == .array([
                    .integer(1), .bulkString(Array("two".utf8)),
                    .array([.integer(3), .array([.bulkString(Array("four".utf8))])]),
                    .simpleString("FINE"),
                ]))
        // A null array reply (`*-1`): BLPOP timing out.
        #expect(try await client.send(RedisCommand("BLPOP", "nothing", 0.01)) == .null)
        // Accessors on real replies.
        #expect(try await client.send(RedisCommand("GET", "n")).int == 41)
        #expect(try await client.send(RedisCommand("PING")).string == "PONG")
    }

    @Test func binarySafeKeysAndValues() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        let key: [UInt8] = [0x6b, 0x00, 0xff, 0x0d, 0x0a]  // "k\0\xff\r\n"
        let value: [UInt8] = (0...255).map { UInt8($0) } + [0, 0, 0x0d, 0x0a, 0x24]
        #expect(try await client.send(RedisCommand("HSET", key, "field\u{0}x", value)) == .integer(1))
        #expect(try await client.send(RedisCommand("HGET", key, "field\u{0}x")) == .bulkString(value))
        #expect(try await client.send(RedisCommand("HGET", key, "field")) == .null)
        #expect(try await client.send(RedisCommand("HSTRLEN", key, "field\u{0}x")) == .integer(Int64(value.count)))
    }

    @Test func errorRepliesSurfaceAsServerErrors() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        await #expect {
            try await client.send(RedisCommand("NOSUCHCOMMAND", "x"))
        } throws: { error in
            guard case RedisError.server(let message) = error else { return false }
            return message.hasPrefix("ERR unknown command")
        }
        _ = try await client.send(RedisCommand("RPUSH", "list", "a"))
        await #expect {
            try await client.send(RedisCommand("INCR", "list"))
        } throws: { error in
            guard case RedisError.server(let message) = error else { return false }
            return message.hasPrefix("WRONGTYPE")
        }
        // The callback API hands the error reply over as a value.
        let viaCallback = await sendViaCallback(client, RedisCommand("INCR", "list"))
        guard case .success(.error(let message)) = viaCallback else {
            Issue.record("expected an error value, got \(viaCallback)")
            return
        }
        #expect(message.hasPrefix("WRONGTYPE"))
        // The connection is still fine afterwards.
        #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))
    }

    @Test func tenThousandConcurrentCommandsMatchRepliesInOrder() async throws {
        let server = try await startServer()
        let observed = Recorder<Double>()
        let client = try startedClient(server.url) { $0.commandObserver = { observed.append($0) } }
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        let threads = 4
        let perThread = 2_500
        // Each thread alternates INCR (global order) with ECHO of a unique token (per-reply matching).
        let increments = Recorder<(thread: Int, sequence: Int, value: Int64)>()
        let echoMismatches = Recorder<String>()
        let failures = Recorder<RedisError>()
        for thread in 0..<threads {
            Thread.detachNewThread {
                for sequence in 0..<perThread {
                    client.send(RedisCommand("INCR", "counter")) { result in
                        switch result {
                        case .success(let value): increments.append((thread, sequence, value.int ?? -1))
                        case .failure(let error): failures.append(error)
                        }
                    }
                    let token = "t\(thread)-\(sequence)"
                    client.send(RedisCommand("ECHO", token)) { result in
                        switch result {
                        case .success(let value): if value.string != token { echoMismatches.append(token) }
                        case .failure(let error): failures.append(error)
                        }
                    }
                }
            }
        }
        let total = threads * perThread
        #expect(await waitUntil { increments.count + failures.count == total })
        #expect(failures.values.isEmpty)
        #expect(echoMismatches.values.isEmpty)
        // Unique and contiguous: every value 1...total exactly once.
        #expect(increments.values.map(\.value).sorted() == (1...Int64(total)).map { $0 })
        // Each thread's commands ran in the order it sent them.
        for thread in 0..<threads {
            let mine = increments.values.filter { $0.thread == thread }.sorted { $0.sequence < $1.sequence }
            #expect(zip(mine, mine.dropFirst()).allSatisfy { $0.value < $1.value })
        }
        #expect(await waitUntil { client.pendingCommandCount == 0 })
        #expect(await waitUntil { observed.count == 2 * total })
        #expect(observed.values.allSatisfy { $0 >= 0 })
        #expect(try await client.send(RedisCommand("GET", "counter")).int == Int64(total))
    }

    @Test func batchesArePipelinedInOrder() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        let batch = [
            RedisCommand("SET", "a", "1"),
            RedisCommand("INCR", "a"),
            RedisCommand("HSET", "a", "f", "v"),  // WRONGTYPE: stays in the array as an error value
            RedisCommand("GET", "a"),
        ]
        let values = try await client.send(batch)
        #expect(values.count == 4)
        #expect(values[0] == .simpleString("OK"))
        #expect(values[1] == .integer(2))
        #expect(values[2].errorMessage?.hasPrefix("WRONGTYPE") == true)
        #expect(values[3] == .bulkString(Array("2".utf8)))

        let viaCallback = await withCheckedContinuation { continuation in
            client.send((0..<100).map { RedisCommand("INCR", "b\($0 % 2)") }) { continuation.resume(returning: $0) }
        }
        let counts: [Int64] = viaCallback.map { (try? $0.get())?.int ?? -1 }
        let expected: [Int64] = (0..<100).map { Int64($0 / 2 + 1) }
        #expect(counts == expected)
        #expect(try await client.send([RedisCommand]()) == [])
    }

    @Test func futuresCompleteOnTheGivenEventLoop() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let loop = QueueEventLoop()

        let set = client.send(RedisCommand("SET", "k", "v"), on: loop)
        #expect(set.eventLoop === loop)
        #expect(try await set.get() == .simpleString("OK"))
        let onLoop = try await client.send(RedisCommand("GET", "k"), on: loop).map { value in
            (value, loop.inEventLoop)
        }.get()
        #expect(onLoop.0 == .bulkString(Array("v".utf8)))
        #expect(onLoop.1)
        await #expect(throws: RedisError.self) {
            try await client.send(RedisCommand("NOSUCHCOMMAND"), on: loop).get()
        }
        let batch = try await client.send([RedisCommand("INCR", "n"), RedisCommand("INCR", "n")], on: loop).get()
        #expect(batch == [.integer(1), .integer(2)])
    }

    @Test func evalShaFallsBackToEvalAfterScriptFlush() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        let script = RedisScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
        let other = RedisScript("return 'other'")
        let expected: (Int64) -> RedisValue = {
            .array([.bulkString(Array("key".utf8)), .bulkString(Array("arg".utf8)), .integer($0)])
        }
        func stat(_ section: String, _ field: String) async -> String? {
            infoField(await cli(server, "INFO", section), field)?.split(separator: ",").first.map(String.init)
        }

        // New to the connection: loaded first (SCRIPT LOAD), so EVALSHA finds it at once.
        #expect(try await client.evalScript(script, keys: ["key"], args: ["arg"]) == expected(1))
        #expect(try await client.evalScript(other) == .bulkString(Array("other".utf8)))
        #expect(await stat("commandstats", "cmdstat_script|load") == "calls=2")
        #expect(await stat("commandstats", "cmdstat_eval") == nil)
        #expect(await stat("errorstats", "errorstat_NOSCRIPT") == nil)
        // Flushed under the live connection: NOSCRIPT, and the call falls back to EVAL once.
        await cli(server, "SCRIPT", "FLUSH")
        #expect(try await client.evalScript(script, keys: ["key"], args: ["arg"]) == expected(2))
        #expect(await stat("errorstats", "errorstat_NOSCRIPT") == "count=1")
        #expect(await stat("commandstats", "cmdstat_eval") == "calls=1")
        // Cached by the EVAL: EVALSHA alone.
        #expect(try await client.evalScript(script, keys: ["key"], args: ["arg"]) == expected(3))
        #expect(await stat("commandstats", "cmdstat_eval") == "calls=1")
        // The flush took every script: the other one is loaded again before its next call, without
        // a NOSCRIPT of its own.
        #expect(try await client.evalScript(other) == .bulkString(Array("other".utf8)))
        #expect(await stat("errorstats", "errorstat_NOSCRIPT") == "count=1")
        #expect(await stat("commandstats", "cmdstat_script|load") == "calls=3")
        // A script error is not mistaken for NOSCRIPT.
        await #expect {
            try await client.evalScript(RedisScript("return redis.error_reply('BOOM')"))
        } throws: { error in
            // Redis 7 prefixes a code-less error_reply with "ERR".
            guard case RedisError.server(let message) = error else { return false }
            return message.hasSuffix("BOOM")
        }
        // Nor is a script that does not compile: its SCRIPT LOAD fails, its EVALSHA gets NOSCRIPT, and
        // the EVAL retry reports the compile error.
        await #expect {
            try await client.evalScript(RedisScript("return ("))
        } throws: { error in
            guard case RedisError.server(let message) = error else { return false }
            return message.contains("Error compiling script")
        }
    }

    /// Issue 8: after a reconnect (a restart, a failover, a dropped connection) the client loads every
    /// script it has run before anything else goes out, so no call meets NOSCRIPT. (Before, the first
    /// call of each script after a restart failed with NOSCRIPT and was sent again with the source.)
    @Test func scriptsAreLoadedAgainWhenTheConnectionReconnects() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let scripts = [RedisScript("return 'one'"), RedisScript("return 'two'")]
        for script in scripts { _ = try await client.evalScript(script) }

        // What a restart does to the client: the cache is gone and so is the connection.
        await cli(server, "SCRIPT", "FLUSH")
        #expect(await cli(server, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") == "1")
        // The reconnect alone loads both, no call needed.
        #expect(await waitUntilBlocking { server.command(arguments: ["SCRIPT", "EXISTS"] + scripts.map(\.sha1)) == "1\n1" })
        #expect(await waitUntil { client.isConnected })
        for script in scripts { _ = try await client.evalScript(script) }
        #expect(infoField(await cli(server, "INFO", "errorstats"), "errorstat_NOSCRIPT") == nil)
        #expect(infoField(await cli(server, "INFO", "commandstats"), "cmdstat_eval") == nil)
    }

    /// A call made while an earlier one waits for its `NOSCRIPT` retry runs after it, not before (with the
    /// old retry it found the script loaded by a retry and ran at once: a, c, b).
    @Test func scriptCallsKeepTheirOrderAcrossANoscriptRetry() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url)
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        let script = RedisScript("return redis.call('RPUSH', KEYS[1], ARGV[1])")
        // Loaded on this connection, then flushed under it: the next calls meet NOSCRIPT.
        _ = try await client.evalScript(script, keys: ["warm"], args: ["-"])
        await cli(server, "SCRIPT", "FLUSH")
        let done = Recorder<String>()
        client.evalScript(script, keys: ["order"], args: ["a"]) { _ in done.append("a") }
        // WAIT (no replicas) holds this connection for a second: "b" stays behind it in Redis while "a"'s
        // NOSCRIPT comes back and its retry is sent.
        client.send(RedisCommand("WAIT", "1", "1000")) { _ in done.append("wait") }
        client.evalScript(script, keys: ["order"], args: ["b"]) { _ in done.append("b") }
        try await TandemTestSupport.waitUntil("\"a\" met NOSCRIPT", poll: .milliseconds(5)) {
            infoField(await cli(server, "INFO", "errorstats"), "errorstat_NOSCRIPT") != nil
        }
        // Made after "a"'s retry went out, while "b" (sent before it) has yet to meet NOSCRIPT.
        client.evalScript(script, keys: ["order"], args: ["c"]) { _ in done.append("c") }
        #expect(await waitUntil { done.count == 4 })
        #expect(await cli(server, "LRANGE", "order", "0", "-1") == "a\nb\nc")
        #expect(done.values.filter { $0 != "wait" } == ["a", "b", "c"])
    }

    @Test func selectsTheDatabaseFromTheURL() async throws {
        let server = try await startServer()
        let client = try startedClient(server.url + "/3")
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        _ = try await client.send(RedisCommand("SET", "where", "db3"))
        #expect(await cli(server, "-n", "3", "GET", "where") == "db3")
        #expect(await cli(server, "-n", "0", "EXISTS", "where") == "0")
        #expect(try await client.send(RedisCommand("CLIENT", "INFO")).string?.contains(" db=3 ") == true)
    }

    @Test func connectsOverAUnixSocket() async throws {
        let server = try await startServer(unixSocket: true)
        let url = try #require(server.unixURL)
        let client = try startedClient(url + "?db=2")
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })

        _ = try await client.send(RedisCommand("SET", "via", "unix"))
        #expect(await cli(server, "-n", "2", "GET", "via") == "unix")
        // CLIENT INFO shows the unix socket path as the connection's local address.
        let info = try await client.send(RedisCommand("CLIENT", "INFO")).string ?? ""
        #expect(info.contains(try #require(server.unixSocketPath)))
    }

    @Test func authenticatesWithThePasswordFromTheURL() async throws {
        let server = try await startServer(extraArguments: ["--requirepass", "s3cret"])
        let port = server.port

        let client = try startedClient("redis://:s3cret@127.0.0.1:\(port)")
        defer { client.shutdown() }
        #expect(await waitUntil { client.isConnected })
        #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))

        let withUser = try startedClient("redis://default:s3cret@127.0.0.1:\(port)/1")
        defer { withUser.shutdown() }
        #expect(await waitUntil { withUser.isConnected })
        #expect(try await withUser.send(RedisCommand("ACL", "WHOAMI")).string == "default")

        // A wrong password never reports connected; the server sees it retry.
        let states = Recorder<Bool>()
        let wrong = try startedClient("redis://:wrong@127.0.0.1:\(port)") { configuration in
            configuration.onConnectionStateChange = { states.append($0) }
        }
        defer { wrong.shutdown() }
        #expect(
            await waitUntilBlocking {
                let stats = server.command("INFO", "errorstats")
                let count = infoField(stats, "errorstat_WRONGPASS").flatMap { $0.split(separator: "=").last }
                return count.flatMap { Int($0) }.map { $0 >= 3 } ?? false
            })
        #expect(!wrong.isConnected)
        #expect(states.values.isEmpty)
        await #expect(throws: RedisError.notConnected) { try await wrong.send(RedisCommand("PING")) }
    }
}
