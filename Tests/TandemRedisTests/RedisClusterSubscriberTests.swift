import Foundation
@testable import TandemRedis
import TandemTestSupport
import Testing

@Suite("RedisClusterSubscriber: sharded pub/sub on a real cluster", .serialized, .sharedCluster, .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisClusterSubscriberTests {
    /// A doc channel (`tandem:{docN}`) on each primary, in primary order.
    static func channels(_ cluster: RedisClusterProcess, prefix: String) async -> (ports: [Int], channels: [String]) {
        await blocking {
            let ports = cluster.primaryPorts()
            return (ports, ports.map { cluster.names(ownedBy: $0, count: 1) { "tandem:{\(prefix)\($0)}" }[0] })
        }
    }

    static func shardChannels(_ cluster: RedisClusterProcess, _ port: Int) async -> Set<String> {
        await blocking {
            Set(cluster.node(port: port)!.command("PUBSUB", "SHARDCHANNELS").split(whereSeparator: \.isNewline).map(String.init))
        }
    }

    @Test func subscribesEachChannelOnItsShardAndDeliversInOrder() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        let probe = ClusterSubscriberProbe()
        let subscriber = probe.subscriber(client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        let (ports, channels) = await Self.channels(cluster, prefix: "deliver")
        subscriber.subscribe(channels[0])
        subscriber.subscribe(channels[1])
        subscriber.start()
        #expect(await waitUntil { subscriber.isConnected && subscriber.subscribedChannels == Set(channels[0...1]) })
        subscriber.subscribe(channels[2])  // while connected
        #expect(await waitUntil { subscriber.subscribedChannels == Set(channels) })
        #expect(probe.subscribed.values.sorted() == channels.sorted())  // each reported once
        #expect(probe.states.values == [true])
        // One SSUBSCRIBE connection per primary, each holding exactly its own channel.
        for (port, channel) in zip(ports, channels) {
            #expect(await Self.shardChannels(cluster, port) == [channel])
        }

        // SPUBLISH through the client reaches exactly one subscriber per channel, in order per channel.
        var sent: [Message] = []
        for index in 0..<30 {
            let message = Message(channels[index % 3], "m\(index)")
            sent.append(message)
            #expect(try await client.send(client.publishCommand(channel: message.channel, payload: message.payload)) == .integer(1))
        }
        #expect(await waitUntil { probe.messages.count == sent.count })
        for channel in channels {
            #expect(probe.messages.values.filter { $0.channel == channel } == sent.filter { $0.channel == channel })
        }

        // SPUBLISH from inside a Lua script (Redis 7.0): works where the script runs on the channel's
        // primary, which a key with the channel's hash tag guarantees.
        let publishFromLua = RedisScript("redis.call('SET', KEYS[1], ARGV[2]) return redis.call('SPUBLISH', ARGV[1], ARGV[2])")
        for channel in channels {
            let key = channel + ":clock"  // same hash tag, same slot
            #expect(try await client.evalScript(publishFromLua, keys: [key], args: [channel, "lua"]) == .integer(1))
        }
        #expect(await waitUntil { probe.messages.values.filter { $0.payload == Array("lua".utf8) }.count == 3 })
        // Classic PUBLISH does not reach sharded subscribers: the server must switch in cluster mode.
        #expect(try await client.send(RedisCommand("PUBLISH", channels[0], "classic")) == .integer(0))

        subscriber.unsubscribe(channels[1])
        #expect(await waitUntil { subscriber.subscribedChannels == [channels[0], channels[2]] })
        #expect(await Self.shardChannels(cluster, ports[1]) == [])
        #expect(try await client.send(client.publishCommand(channel: channels[1], payload: "late")) == .integer(0))
        #expect(subscriber.desiredChannels == [channels[0], channels[2]])
    }

    @Test func resubscribesWhereTheSlotMovedAndReportsIt() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        let probe = ClusterSubscriberProbe()
        let subscriber = probe.subscriber(client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        let (ports, channels) = await Self.channels(cluster, prefix: "migrate")
        let (source, target) = (ports[0], ports[1])
        let (moving, staying) = (channels[0], channels[2])
        subscriber.subscribe(moving)
        subscriber.subscribe(staying)
        subscriber.start()
        #expect(await waitUntil { subscriber.subscribedChannels == [moving, staying] })
        #expect(probe.subscriptions(of: moving) == 1)

        // Moving the slot makes the source push `sunsubscribe`; the subscriber follows the slot.
        try await blocking { try cluster.migrateSlot(ClusterSlot.slot(forKey: moving), from: source, to: target) }
        #expect(await waitUntil { probe.subscriptions(of: moving) == 2 })
        #expect(await waitUntil { subscriber.subscribedChannels == [moving, staying] })
        #expect(await Self.shardChannels(cluster, target) == [moving])
        #expect(await Self.shardChannels(cluster, source) == [])
        #expect(probe.subscriptions(of: staying) == 1)  // untouched
        #expect(try await client.send(client.publishCommand(channel: moving, payload: "after")) == .integer(1))
        #expect(await waitUntil { probe.messages.values == [Message(moving, "after")] })
        // The subscriber never looked disconnected: only the one channel moved.
        #expect(probe.states.values == [true])
    }
}

extension RedisClusterSubscriberTests {
    @Test func followsMovedWhenSubscribingWithAStaleMap() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs) { $0.cluster.refreshInterval = .seconds(60) }
        let probe = ClusterSubscriberProbe()
        let subscriber = probe.subscriber(client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        subscriber.start()
        #expect(await waitUntil { subscriber.isConnected && client.core.refreshIsQuiet(forNanoseconds: 30_000_000_000) })
        let (ports, channels) = await Self.channels(cluster, prefix: "stale")
        let (source, target, channel) = (ports[1], ports[2], channels[1])
        let slot = ClusterSlot.slot(forKey: channel)
        try await blocking { try cluster.migrateSlot(slot, from: source, to: target) }
        let movedBefore = await blocking { cluster.statistic(source, "errorstat_MOVED", "count") }
        #expect(client.core.address(forSlot: slot)?.port == source)  // stale on purpose

        // SSUBSCRIBE goes to the old owner, which answers MOVED; the channel follows it.
        subscriber.subscribe(channel)
        #expect(await waitUntil { subscriber.subscribedChannels == [channel] })
        #expect(await blocking { cluster.statistic(source, "errorstat_MOVED", "count") } == movedBefore + 1)
        #expect(await Self.shardChannels(cluster, target) == [channel])
        #expect(probe.subscribed.values == [channel])  // reported once, when it really was subscribed
        #expect(try await client.send(client.publishCommand(channel: channel, payload: "found")) == .integer(1))
        #expect(await waitUntil { probe.messages.values == [Message(channel, "found")] })
    }

    @Test func resubscribesAfterItsConnectionIsDroppedAndReportsIt() async throws {
        let cluster = try SharedCluster.get()
        let client = try startedClusterClient(cluster.seedURLs)
        let probe = ClusterSubscriberProbe()
        let subscriber = probe.subscriber(client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        let (ports, channels) = await Self.channels(cluster, prefix: "drop")
        for channel in channels { subscriber.subscribe(channel) }
        subscriber.start()
        #expect(await waitUntil { subscriber.subscribedChannels == Set(channels) })

        // The server closes the shard's subscriber connection (as a restart or a network cut would).
        #expect(await blocking { cluster.node(port: ports[0])!.command("CLIENT", "KILL", "TYPE", "pubsub") } == "1")
        #expect(await waitUntil { probe.subscriptions(of: channels[0]) == 2 })
        #expect(await waitUntil { subscriber.subscribedChannels == Set(channels) })
        #expect(probe.subscriptions(of: channels[1]) == 1 && probe.subscriptions(of: channels[2]) == 1)
        #expect(await waitUntil { probe.states.values == [true, false, true] })
        #expect(try await client.send(client.publishCommand(channel: channels[0], payload: "back")) == .integer(1))
        #expect(await waitUntil { probe.messages.values == [Message(channels[0], "back")] })
    }
}

@Suite("RedisClusterClient and RedisClusterSubscriber against a single redis-server", .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisClusterSingleServerTests {
    @Test func aSingleServerWorksUnchangedThroughTheClusterEntryPoint() async throws {
        let server = try await startServer()
        let states = Recorder<Bool>()
        // The first seed is dead: detection uses whichever seed answers.
        let client = try startedClusterClient(["redis://127.0.0.1:\(freeTCPPort())", server.url]) { configuration in
            configuration.onConnectionStateChange = { states.append($0) }
        }
        let probe = SubscriberProbe()
        var configuration = RedisClusterSubscriber.Configuration { [messages = probe.messages] in messages.append(Message($0, bytes: $1)) }
        configuration.connection = testSettings()
        let subscribedChannels = Recorder<String>()
        configuration.onSubscribed = { subscribedChannels.append($0) }
        let subscriber = RedisClusterSubscriber(configuration: configuration, client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        #expect(await waitUntil { client.isConnected })
        #expect(client.mode == .single)
        #expect(!client.isClusterMode)
        #expect(client.publishCommandName == "PUBLISH")
        #expect(client.topology == nil)
        #expect(await waitUntil { states.values == [true] })
        #expect(client.endpointDescription == "redis://127.0.0.1:\(server.port)/0")

        // No slot rules: keys in different slots share commands, batches and scripts.
        #expect(try await client.send(RedisCommand("MSET", "a", "1", "b", "2")) == .simpleString("OK"))
        #expect(try await client.send([RedisCommand("GET", "a"), RedisCommand("GET", "b")]) == [.bulkString([0x31]), .bulkString([0x32])])
        let script = RedisScript("return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])")
        #expect(try await client.evalScript(script, keys: ["a", "b"]).string == "12")
        await cli(server, "SCRIPT", "FLUSH")
        #expect(try await client.evalScript(script, keys: ["b", "a"]).string == "21")  // NOSCRIPT → EVAL

        // Classic pub/sub, re-subscribed after a restart, every subscription reported.
        subscriber.subscribe("tandem:{d}")
        subscriber.start()
        #expect(await waitUntil { subscriber.subscribedChannels == ["tandem:{d}"] })
        #expect(await cli(server, "PUBSUB", "NUMSUB", "tandem:{d}") == "tandem:{d}\n1")
        #expect(try await client.send(client.publishCommand(channel: "tandem:{d}", payload: "one")) == .integer(1))
        #expect(await waitUntil { probe.messages.values == [Message("tandem:{d}", "one")] })
        #expect(subscribedChannels.values == ["tandem:{d}"])

        server.kill()
        #expect(await waitUntil { !client.isConnected && !subscriber.isConnected })
        await #expect(throws: RedisError.notConnected) { try await client.send(RedisCommand("PING")) }
        try await blocking { try server.start() }
        #expect(await waitUntil { client.isConnected && subscribedChannels.count == 2 })
        // The state callback runs after `isConnected` turns true (on the owner thread): wait for it too.
        #expect(await waitUntil { states.values == [true, false, true] })
        #expect(try await client.send(client.publishCommand(channel: "tandem:{d}", payload: "two")) == .integer(1))
        #expect(await waitUntil { probe.messages.count == 2 })
    }
}
