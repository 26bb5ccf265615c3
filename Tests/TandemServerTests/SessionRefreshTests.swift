import NIOPosix
import TandemRedis
import TandemTestSupport
import Testing

@testable import TandemServer

/// Session keys of open connections are re-claimed about once an hour (`SessionOwnership`), so a
/// connection that outlives the key's day keeps its session id: otherwise anyone who saw the `sid` could
/// claim it once the key expired.
@Suite struct SessionRefreshTests {
    @Test func eachOpenSessionIsDueOncePerRefreshPeriodSpreadOverTheSeconds() {
        let slots = SessionOwnership.refreshSlots
        for id: UInt64 in [1, 2, 3_599, 3_600, 123_456] {
            let due = (0..<slots).filter { SessionOwnership.isDue(connectionID: id, second: 1_700_000_000 + $0) }
            #expect(due.count == 1, "connection \(id) is refreshed exactly once per period")
        }
        let perSecond = (1...UInt64(36_000)).filter { SessionOwnership.isDue(connectionID: $0, second: 42) }.count
        #expect(perSecond == 10, "36,000 connections: 10 refreshes a second")
    }

    @Test func aDueSessionIsReclaimedAndAnotherUsersKeyIsLeftAlone() async throws {
        let redis = try RedisServerProcess()
        let client = try RedisClient(url: redis.url)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        client.start()
        defer { client.shutdown() }
        try await waitUntil("connected to Redis") { client.isConnected }
        let sessions = SessionOwnership(redis: client)
        let expired = SessionOwnership.key("EXPIREDSESSION00000000")
        let aging = SessionOwnership.key("AGINGSESSION0000000000")
        let taken = SessionOwnership.key("TAKENSESSION0000000000")
        redis.command("SET", aging, "alice", "EX", "60")
        redis.command("SET", taken, "mallory", "EX", "60")

        // Connection 7 is due at second 7 (mod the period); connection 8 is not.
        sessions.refreshOpenSessions(
            [(id: 7, sessionID: "EXPIREDSESSION00000000", user: "alice"), (id: 7, sessionID: "AGINGSESSION0000000000", user: "alice"),
             (id: 7, sessionID: "TAKENSESSION0000000000", user: "alice"), (id: 8, sessionID: "NOTDUESESSION000000000", user: "bob")],
            second: SessionOwnership.refreshSlots * 1_000 + 7, on: group.next())
        try await waitUntil("the due sessions are claimed for a day") {
            Int(redis.command("TTL", expired)) ?? 0 > 86_000 && Int(redis.command("TTL", aging)) ?? 0 > 86_000
        }
        #expect(redis.command("GET", expired) == "alice")
        #expect(redis.command("GET", taken) == "mallory", "a key another user holds is left to them")
        #expect(Int(redis.command("TTL", taken)) ?? 0 <= 60)
        #expect(redis.command("EXISTS", SessionOwnership.key("NOTDUESESSION000000000")) == "0")
        try await group.shutdownGracefully()
    }
}
