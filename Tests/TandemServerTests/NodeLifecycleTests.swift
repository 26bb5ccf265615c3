import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import ServiceLifecycleTestKit
import TandemServer
import TandemSystem
import TandemTestSupport
import Testing

/// Issue 9: the node's lifecycle is a `ServiceGroup`. A graceful shutdown of the group it runs in (what
/// SIGTERM/SIGINT do in `tandem serve`; ShutdownTests checks that through the binary) stops its services in
/// reverse start order; a component that fails to start shuts the started ones down, the embedded
/// redis-server included.
@Suite(.serialized) struct NodeLifecycleTests {
    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .error
        return logger
    }

    @Test func theParentGroupsGracefulShutdownClosesClientsRemovesPresenceAndEndsRun() async throws {
        let redis = try RedisServerProcess()
        var config = ServerConfiguration(nodeID: "lifecycle-1", redisURL: redis.url)
        config.port = 0
        config.opsPort = 0
        config.presenceTTLMs = 30_000  // far beyond the test: only the shutdown can remove the presence
        config.stormResumeGraceMs = 30_000
        let node = try await TandemNode(configuration: config, logger: Self.logger("lifecycle-1"), eventLoopThreads: 2)

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await node.run() }
                try await waitUntil("the node listens and is ready") {
                    guard node.port != 0 else { return false }
                    return (try? await HTTP.get(port: node.opsPort, path: "/readyz").status) == 200
                }
                let alice = try await TestClient.connect("ws://127.0.0.1:\(node.port)/v1/ws?user=alice", name: "alice")
                try await alice.join("lifecycle")
                try await waitUntil("alice's presence is in Redis") {
                    redis.hashKeys("tandem:{lifecycle}:presence:lifecycle-1") == [alice.session]
                }

                trigger.triggerGracefulShutdown()

                #expect(try await alice.waitClosed() == 1001, "clients are closed with going-away")
                try await group.waitForAll()  // run() returned: every service stopped
            }
        }
        #expect(redis.command("EXISTS", "tandem:{lifecycle}:presence:lifecycle-1") == "0", "presence removed on the way out")
        #expect(redis.command("ZSCORE", "tandem:{lifecycle}:nodes", "lifecycle-1") == "")
        for port in [node.port, node.opsPort] {
            await #expect(throws: HTTP.HTTPError.self, "port \(port) refuses connections") { try await HTTP.get(port: port, path: "/healthz") }
        }
    }

    /// A stopped node frees everything it held. Its shards point back to the node's context and its Redis
    /// callbacks reach the context too, so without breaking those cycles at the end of `run()` every stopped
    /// node stayed in memory with its metrics, docs and event-loop state (LeakSanitizer, in every `tandem`
    /// child and every in-process node). The metrics object is the witness: only the context holds it once
    /// the node is gone.
    @Test func aStoppedNodeIsFreed() async throws {
        let redis = try RedisServerProcess()
        weak var metrics: TandemMetrics?
        weak var stoppedNode: TandemNode?
        do {
            var config = ServerConfiguration(nodeID: "freed-1", redisURL: redis.url)
            config.port = 0
            config.opsPort = 0
            let node = try await TandemNode(configuration: config, logger: Self.logger("freed-1"), eventLoopThreads: 2)
            try await node.start()
            let alice = try await TestClient.connect("ws://127.0.0.1:\(node.port)/v1/ws?user=alice", name: "alice")
            try await alice.join("freed")
            metrics = node.metrics
            stoppedNode = node
            await node.shutdown()
            #expect(try await alice.waitClosed() == 1001)
        }
        try await waitUntil("the stopped node is freed") { stoppedNode == nil }
        try await waitUntil("the stopped node's context (holding its metrics) is freed") { metrics == nil }
    }

    @Test func aComponentThatCannotStartStopsTheOnesStartedBeforeIt() async throws {
        // The client port is taken, so the WebSocket server (started after the embedded Redis, the Redis
        // connections, the ops server and the shards) fails: start() must throw that, and every component
        // started before it must be stopped, the embedded redis-server last but one.
        let taken = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { taken.close(promise: nil) }
        let directory = try makeTemporaryDirectory(prefix: "tandem-lifecycle")
        let embedded = EmbeddedRedis(
            dataDirectory: directory.appendingPathComponent("redis").path, maxMemoryBytes: 64 << 20,
            logger: Self.logger("lifecycle-redis"))
        var config = ServerConfiguration(nodeID: "lifecycle-2", redisURL: embedded.url)
        config.port = try #require(taken.localAddress?.port)
        config.opsPort = 0
        let node = try await TandemNode(
            configuration: config, logger: Self.logger("lifecycle-2"), eventLoopThreads: 2, embeddedRedis: embedded)

        await #expect(throws: (any Error).self) { try await node.start() }

        let socket = directory.appendingPathComponent("redis/redis.sock").path
        #expect(!RedisServerChild.answersPing(.unix(path: socket)), "the embedded redis-server was stopped")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("redis/redis.pid").path),
                "redis-server exited cleanly (it removes its pid file on SIGTERM)")
        await node.shutdown()  // nothing left to stop; returns at once
    }

    @Test func anUnreachableRedisIsNotAStartupFailure() async throws {
        let node = try await TandemNode(
            configuration: {
                var config = ServerConfiguration(nodeID: "lifecycle-3", redisURL: "redis://127.0.0.1:1")
                config.port = 0
                config.opsPort = 0
                return config
            }(), logger: Self.logger("lifecycle-3"), eventLoopThreads: 1)
        // Redis is unreachable, which is not a start-up failure: the node listens (and reports not ready).
        try await node.start()
        #expect(node.port != 0)
        #expect(try await HTTP.get(port: node.opsPort, path: "/readyz").status == 503)
        await node.shutdown()
        await #expect(throws: HTTP.HTTPError.self, "the ops port is closed") { try await HTTP.get(port: node.opsPort, path: "/healthz") }
    }
}
