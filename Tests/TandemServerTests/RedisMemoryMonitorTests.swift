import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TandemRedis
@testable import TandemServer
import TandemTestSupport
import Testing

/// The Redis memory monitor's sample (issue 8): INFO's four sections are parsed on the event loop it is
/// given, not on the Redis command thread, which reads every commit's reply (~1 ms of parsing every five
/// seconds held back every doc's reply).
@Suite(.serialized, .cleanup) struct RedisMemoryMonitorTests {
    @Test func infoIsParsedOnTheGivenLoopNotOnTheRedisThread() async throws {
        let server = try RedisServerProcess()
        let redis = try RedisClient(url: server.url)
        redis.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let release = DispatchSemaphore(value: 0)
        do {
            try await waitUntil("connected to Redis") { redis.isConnected }
            let metrics = TandemMetrics(nodeID: "monitor")
            let monitor = RedisMemoryMonitor(redis: redis, database: 0, metrics: metrics, logger: Logger(label: "monitor-test"))
            let loop = group.next()

            // Hold the loop: nothing the monitor hands it runs until released.
            let held = NIOLockedValueBox(false)
            loop.execute {
                held.withLockedValue { $0 = true }
                release.wait()
            }
            try await waitUntil("the loop is held") { held.withLockedValue { $0 } }
            monitor.sample(nowNanos: RedisMemoryMonitor.intervalNanos, on: loop)
            // A command written after INFO on the same connection is answered after it: once PING is back,
            // the Redis thread has read INFO's replies and run the monitor's completion.
            _ = try await redis.send(RedisCommand("PING"))
            #expect(metrics.value(of: "tandem_redis_memory_used_bytes") == 0, "INFO was parsed and recorded on the Redis thread")

            release.signal()
            try await waitUntil("the loop parsed and recorded INFO") { metrics.value(of: "tandem_redis_memory_used_bytes") > 0 }
        } catch {
            release.signal()
            throw error
        }
        await redis.shutdown()
        try await group.shutdownGracefully()
    }
}
