import NIOCore
import NIOPosix
@testable import TandemCore
import TandemRedis
@testable import TandemServer
import TandemTestSupport
import Testing

/// `PresenceScripts.docWrite` against a real redis-server (issue 14): a write sends its message's head and
/// tail only, and the script joins them with the entries it writes to the hash, so another node hears the
/// very bytes `NodeMessage.encode` made, and the hash holds each entry's own encoding.
@Suite(.serialized, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct PresenceWriteScriptTests {
    static func entry(_ sid: String, _ version: UInt64, _ x: Int) -> PresenceEntry {
        PresenceEntry(
            sid: sid, user: "u-\(sid) \"q\"", name: "ü\n,", role: .editor, node: "n1", version: version,
            state: .object(["x": .number("\(x)"), "s": .string("a,b")]))
    }

    @Test func anotherNodeHearsTheMessageAsEncoded() async throws {
        let server = try RedisServerProcess()
        let client = try RedisClient(url: server.url)
        client.start()
        defer { client.shutdown() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        try await waitUntil("connected to Redis") { client.isConnected }
        let store = PresenceStore(redis: client, nodeID: "n1", ttlMs: 30_000)
        let doc = "pw:1"
        let keys = store.keys(doc: doc)
        let messages = Locked<[[UInt8]]>([])
        let subscriber = RedisSubscriber(
            configuration: RedisSubscriber.Configuration(endpoint: try RedisEndpoint(url: server.url)) { _, payload in
                messages.withLock { $0.append(payload) }
            })
        subscriber.start()
        defer { subscriber.shutdown() }
        subscriber.subscribe(keys.channel)
        try await waitUntil("subscribed") { subscriber.subscribedChannels.contains(keys.channel) }

        // One entry, three, and a full write with removals: each message exactly as encoded.
        let writes: [PresenceWrite] = [
            {
                let upserts = [Self.entry("s1", 1, 1)]
                return PresenceWrite(
                    upserts: upserts, deletes: [], full: false, refresh: true,
                    publish: .presence(node: "n1", upserts: upserts, removals: [], full: false))
            }(),
            {
                let upserts = [Self.entry("s1", 2, 2), Self.entry("s\"2", 12_345_678_901, -2), Self.entry("s3", 3, 3)]
                return PresenceWrite(
                    upserts: upserts, deletes: ["gone", "silent"], full: false, refresh: false,
                    publish: .presence(node: "n1", upserts: upserts, removals: ["gone"], full: false))
            }(),
            {
                let upserts = [Self.entry("s1", 4, 4)]
                return PresenceWrite(
                    upserts: upserts, deletes: [], full: true, refresh: true,
                    publish: .presence(node: "n1", upserts: upserts, removals: [], full: true))
            }(),
        ]
        for (index, write) in writes.enumerated() {
            // 0: this node's subscription is not confirmed, so the one subscriber is another node's.
            let published = try await store.write(keys: keys, write, ownSubscribers: 0, on: group.next()).get()
            #expect(published)
            try await waitUntil("message \(index)") { messages.value.count == index + 1 }
            let expected = write.publish!.encode()
            #expect(messages.value[index] == expected, "\(String(decoding: messages.value[index], as: UTF8.self))")
            for entry in write.upserts {
                #expect(server.command(arguments: ["HGET", keys.hash, entry.sid]) == String(decoding: entry.encoded, as: UTF8.self))
            }
        }
        try await group.shutdownGracefully()
    }

    /// The write's effects reach a replica but not the primary's append-only file: presence outlives its
    /// last write by the TTL only and is rewritten by every node once Redis is back, so its AOF copy was
    /// CPU spent for nothing (issue 14, stop 29). A plain SET made after it is in the AOF, so the restarted
    /// primary did load its AOF; without `redis.set_repl(redis.REPL_REPLICA)` the hash would be loaded too.
    @Test func aWriteReachesReplicasButNotTheAppendOnlyFile() async throws {
        let primary = try RedisServerProcess(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let replica = try RedisServerProcess(extraArguments: ["--replicaof", "127.0.0.1", "\(primary.port)"])
        try await waitUntil("replica linked") { replica.command("INFO", "replication").contains("master_link_status:up") }
        let client = try RedisClient(url: primary.url)
        client.start()
        defer { client.shutdown() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        try await waitUntil("connected to Redis") { client.isConnected }
        let store = PresenceStore(redis: client, nodeID: "n1", ttlMs: 60_000)
        let keys = store.keys(doc: "pw:aof")
        let upserts = [Self.entry("s1", 1, 1), Self.entry("s2", 2, 2)]
        let write = PresenceWrite(
            upserts: upserts, deletes: [], full: true, refresh: true,
            publish: .presence(node: "n1", upserts: upserts, removals: [], full: true))
        _ = try await store.write(keys: keys, write, ownSubscribers: 0, on: group.next()).get()
        #expect(primary.command("HLEN", keys.hash) == "2")
        try await waitUntil("replicated") { replica.command("HLEN", keys.hash) == "2" }
        #expect(replica.command("HGET", keys.hash, "s2") == String(decoding: upserts[1].encoded, as: UTF8.self))
        #expect(replica.command("ZCARD", keys.nodes) == "1")
        #expect(primary.command("SET", "pw:aof:control", "1") == "OK")
        try await group.shutdownGracefully()

        primary.stop()
        try primary.start()
        #expect(primary.command("GET", "pw:aof:control") == "1", "the restarted primary loaded its AOF")
        #expect(primary.command("EXISTS", keys.hash) == "0", "the presence write is not in the AOF")
        #expect(primary.command("EXISTS", keys.nodes) == "0", "nor its registration")
    }
}
