import TandemRedis
import TandemTestSupport
import Testing

/// One received pub/sub message.
struct Message: Equatable, Sendable, CustomStringConvertible {
    var channel: String
    var payload: [UInt8]

    init(_ channel: String, _ payload: String) {
        self.channel = channel
        self.payload = Array(payload.utf8)
    }

    init(_ channel: String, bytes: [UInt8]) {
        self.channel = channel
        self.payload = bytes
    }

    var description: String { "\(channel): \(String(decoding: payload, as: UTF8.self))" }
}

/// Records everything a subscriber reports.
final class SubscriberProbe: Sendable {
    let messages = Recorder<Message>()
    let readies = Recorder<Int>()
    let states = Recorder<Bool>()

    /// A subscriber wired to this probe, not yet started.
    func subscriber(
        _ url: String,
        configure: (inout RedisSubscriber.Configuration) -> Void = { _ in }
    ) throws -> RedisSubscriber {
        var configuration = RedisSubscriber.Configuration(endpoint: try RedisEndpoint(url: url)) { [messages] in
            messages.append(Message($0, bytes: $1))
        }
        configuration.connection = testSettings()
        configuration.onReady = { [readies] in readies.append(readies.count + 1) }
        configuration.onConnectionStateChange = { [states] in states.append($0) }
        configure(&configuration)
        return RedisSubscriber(configuration: configuration)
    }
}

@Suite("RedisSubscriber against a real redis-server", .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisSubscriberTests {
    @Test func deliversMessagesInOrderAndStopsAfterUnsubscribe() async throws {
        let server = try await startServer()
        let probe = SubscriberProbe()
        let subscriber = try probe.subscriber(server.url)
        let publisher = try startedClient(server.url)
        defer {
            subscriber.shutdown()
            publisher.shutdown()
        }
        subscriber.subscribe("a")
        subscriber.subscribe("b")
        subscriber.subscribe("a")  // idempotent
        subscriber.start()
        #expect(await waitUntil { probe.readies.count == 1 && publisher.isConnected })
        #expect(subscriber.subscribedChannels == ["a", "b"])
        #expect(await cli(server, "PUBSUB", "NUMSUB", "a", "b") == "a\n1\nb\n1")

        let sent = (0..<300).map { Message($0 % 3 == 0 ? "a" : "b", "m\($0)") }
        let receivers = try await publisher.send(sent.map { RedisCommand("PUBLISH", $0.channel, $0.payload) })
        #expect(receivers.allSatisfy { $0 == .integer(1) })
        #expect(await waitUntil { probe.messages.count == sent.count })
        #expect(probe.messages.values == sent)

        // Binary payloads arrive byte for byte.
        let binary: [UInt8] = [0, 0xff, 0x0d, 0x0a, 0]
        _ = try await publisher.send(RedisCommand("PUBLISH", "b", binary))
        #expect(await waitUntil { probe.messages.values.last == Message("b", bytes: binary) })

        // After unsubscribe returns nothing of "a" is delivered, even if the UNSUBSCRIBE is still on
        // its way. Messages on one connection arrive in order, so once the marker published after
        // "late" is in, "late" would have been too.
        subscriber.unsubscribe("a")
        subscriber.unsubscribe("a")  // idempotent
        _ = try await publisher.send([RedisCommand("PUBLISH", "a", "late"), RedisCommand("PUBLISH", "b", "marker")])
        #expect(await waitUntil { probe.messages.values.last == Message("b", "marker") })
        #expect(!probe.messages.values.contains(Message("a", "late")))
        #expect(await waitUntil { subscriber.subscribedChannels == ["b"] })
        #expect(await cli(server, "PUBSUB", "NUMSUB", "a") == "a\n0")

        // Subscribing while connected takes effect without a reconnect.
        subscriber.subscribe("c")
        #expect(await waitUntil { subscriber.subscribedChannels == ["b", "c"] })
        #expect(try await publisher.send(RedisCommand("PUBLISH", "c", "hello")) == .integer(1))
        #expect(await waitUntil { probe.messages.values.last == Message("c", "hello") })
        #expect(probe.readies.count == 1)
        #expect(subscriber.desiredChannels == ["b", "c"])
    }

    /// `onMessages` (issue 11): a read's messages in one call, in order, none of a channel once it is
    /// unsubscribed, and each confirmation's hook after the messages that came before it.
    @Test func onMessagesDeliversEachReadTogetherInOrder() async throws {
        let server = try await startServer()
        let probe = SubscriberProbe()
        let batches = Recorder<[Message]>()
        let events = Recorder<String>()
        let subscriber = try probe.subscriber(server.url) { configuration in
            configuration.onMessages = { messages in
                batches.append(messages.map { Message($0.channel, bytes: $0.payload) })
                events.append("messages")
            }
            configuration.onSubscribed = { channel in events.append("subscribed \(channel)") }
        }
        let publisher = try startedClient(server.url)
        defer {
            subscriber.shutdown()
            publisher.shutdown()
        }
        subscriber.subscribe("a")
        subscriber.subscribe("b")
        subscriber.start()
        #expect(await waitUntil { probe.readies.count == 1 && publisher.isConnected })

        // 300 messages published by one pipeline reach the subscriber in a few reads, not 300.
        let sent = (0..<300).map { Message($0 % 3 == 0 ? "a" : "b", "m\($0)") }
        _ = try await publisher.send(sent.map { RedisCommand("PUBLISH", $0.channel, $0.payload) })
        #expect(await waitUntil { batches.values.joined().count == sent.count })
        #expect(Array(batches.values.joined()) == sent)
        #expect(batches.count < sent.count / 2)
        #expect(probe.messages.count == 0)  // `onMessage` is not called when `onMessages` is set

        // Nothing of "a" once unsubscribe returned.
        subscriber.unsubscribe("a")
        _ = try await publisher.send([RedisCommand("PUBLISH", "a", "late"), RedisCommand("PUBLISH", "b", "marker")])
        #expect(await waitUntil { batches.values.last?.last == Message("b", "marker") })
        #expect(!batches.values.joined().contains(Message("a", "late")))

        // A subscription confirmed after a message was read is reported after that message's batch.
        let before = events.count
        _ = try await publisher.send(RedisCommand("PUBLISH", "b", "first"))
        subscriber.subscribe("c")
        #expect(await waitUntil { events.values.contains("subscribed c") })
        #expect(await waitUntil { batches.values.joined().contains(Message("b", "first")) })
        let after = Array(events.values.dropFirst(before))
        #expect(after == ["messages", "subscribed c"])
    }

    /// Pushes taken straight from the read buffer (`RedisPubSubPush`) and those hiredis parses (split
    /// across reads: larger than its 16 KiB read) arrive intact and in order, binary payloads included.
    @Test func largeAndBinaryPayloadsArriveIntactAndInOrder() async throws {
        let server = try await startServer()
        let probe = SubscriberProbe()
        let batches = Recorder<[Message]>()
        let subscriber = try probe.subscriber(server.url) { configuration in
            configuration.onMessages = { messages in batches.append(messages.map { Message($0.channel, bytes: $0.payload) }) }
        }
        let publisher = try startedClient(server.url)
        defer {
            subscriber.shutdown()
            publisher.shutdown()
        }
        subscriber.subscribe("tandem:{a}")
        subscriber.subscribe("tandem:{b}")
        subscriber.start()
        #expect(await waitUntil { probe.readies.count == 1 && publisher.isConnected })

        let sizes = [0, 1, 13, 300, 20_000, 70_000, 2]
        let sent = (0..<120).map { index in
            let size = sizes[index % sizes.count]
            // Every byte value, CR LF and `$*` among them, at a different offset in each message.
            return Message(index % 2 == 0 ? "tandem:{a}" : "tandem:{b}", bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ index) })
        }
        _ = try await publisher.send(sent.map { RedisCommand("PUBLISH", $0.channel, $0.payload) })
        #expect(await waitUntil(timeout: .seconds(60)) { batches.values.joined().count >= sent.count })
        #expect(Array(batches.values.joined()) == sent)
    }

    @Test func resubscribesAfterAServerRestartAndCallsOnReadyAgain() async throws {
        let server = try await startServer()
        let probe = SubscriberProbe()
        let subscriber = try probe.subscriber(server.url)
        defer { subscriber.shutdown() }
        subscriber.subscribe("docs")
        subscriber.start()
        #expect(await waitUntil { probe.readies.count == 1 })

        server.kill()
        #expect(await waitUntil { probe.states.values == [true, false] })
        #expect(!subscriber.isConnected)
        #expect(subscriber.subscribedChannels.isEmpty)
        subscriber.subscribe("late")  // while disconnected: remembered for the reconnect

        try await blocking { try server.start() }
        #expect(await waitUntil { probe.readies.count == 2 })
        #expect(probe.states.values == [true, false, true])
        #expect(subscriber.subscribedChannels == ["docs", "late"])
        // onReady comes after the subscriptions are live, so publishing from it cannot be missed.
        #expect(await cli(server, "PUBLISH", "docs", "after-restart") == "1")
        #expect(await cli(server, "PUBLISH", "late", "x") == "1")
        #expect(await waitUntil { probe.messages.values == [Message("docs", "after-restart"), Message("late", "x")] })
    }

    @Test func healthCheckDetectsAPausedServer() async throws {
        let server = try await startServer()
        let probe = SubscriberProbe()
        let subscriber = try probe.subscriber(server.url) { configuration in
            // Long enough that a busy machine (a stalled event loop or redis-server) cannot time out a
            // command or health check of the running server, which would add a disconnect the test does
            // not expect; the paused server still times out within seconds.
            configuration.connection.commandTimeout = .seconds(2)
            configuration.connection.connectTimeout = .seconds(2)
            configuration.connection.healthCheckInterval = .milliseconds(500)
        }
        defer {
            server.resume()
            subscriber.shutdown()
        }
        subscriber.subscribe("x")
        subscriber.start()
        #expect(await waitUntil { probe.readies.count == 1 })

        server.pause()  // PING in subscribed mode gets no ["pong", ""] any more
        #expect(await waitUntil { !subscriber.isConnected })
        server.resume()
        #expect(await waitUntil { probe.readies.count == 2 })
        #expect(await cli(server, "PUBLISH", "x", "back") == "1")
        #expect(await waitUntil { probe.messages.values == [Message("x", "back")] })
    }

    @Test func onReadyFiresWithNoChannelsAndShutdownClosesTheConnection() async throws {
        let server = try await startServer()
        let probe = SubscriberProbe()
        let subscriber = try probe.subscriber(server.url)
        subscriber.start()
        #expect(await waitUntil { probe.readies.count == 1 })
        #expect(subscriber.isConnected)
        // The readiness probe's connection may still be counted for a moment, hence the wait.
        #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "connected_clients") == "2" })

        await subscriber.shutdown()
        #expect(!subscriber.isConnected)
        #expect(probe.states.values == [true, false])
        #expect(await waitUntilBlocking { infoField(server.command("INFO", "clients"), "connected_clients") == "1" })
    }
}
