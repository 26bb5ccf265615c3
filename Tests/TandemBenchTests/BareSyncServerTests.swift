import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import TandemClient
import TandemTestSupport
import Testing

@testable import tandem_bench

/// `tandem-bench bare-sync-server` (issue 8's yardstick) through real sockets and a real redis-server: what
/// `tandem-bench sync` relies on must hold, or its figures compare nothing.
@Suite("bare-sync-server: the yardstick relay answers pushes and delivers patches in clock order", .serialized)
struct BareSyncServerTests {
    /// A client whose text messages are collected as they arrive.
    final class Peer: Sendable {
        let client: WebSocketClient
        private let received = NIOLockedValueBox<[String]>([])
        private let reader: Task<Void, Never>

        init(port: Int, user: String) async throws {
            let client = try await WebSocketClient.connect(
                to: "ws://127.0.0.1:\(port)/v1/ws?user=\(user)", on: MultiThreadedEventLoopGroup.singleton)
            self.client = client
            let received = self.received
            reader = Task {
                for await event in client.events {
                    if case .text(let text) = event { received.withLockedValue { $0.append(text) } }
                }
            }
        }

        var messages: [String] { received.withLockedValue { $0 } }
        func messages(_ type: String) -> [String] { messages.filter { $0.hasPrefix(#"{"t":"\#(type)""#) } }

        func close() async {
            await client.close()
            reader.cancel()
        }
    }

    static func start(redis: RedisServerProcess, maxPushesInFlight: Int = 8) async throws -> BareSyncServer {
        try await BareSyncServer.start(BareSyncOptions(redisURL: redis.url, threads: 2, maxPushesInFlight: maxPushesInFlight))
    }

    static func startRedis() async throws -> RedisServerProcess {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try RedisServerProcess() }) }
        }
    }

    static func cli(_ redis: RedisServerProcess, _ arguments: String...) async -> String {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: redis.command(arguments: arguments)) }
        }
    }

    /// The number after `"key":` in a message.
    static func number(_ key: String, in message: String) -> Int? {
        guard let r = message.range(of: #""\#(key)":"#) else { return nil }
        return Int(message[r.upperBound...].prefix { $0.isNumber })
    }

    static func join(_ peers: [Peer], doc: String) async throws {
        for p in peers { p.client.send(text: #"{"t":"join","doc":"\#(doc)"}"#) }
        try await waitUntil("every peer caught up", timeout: .seconds(30)) {
            peers.allSatisfy { p in p.messages("snapshot").contains { $0.contains(#""more":false"#) } }
        }
        for p in peers { #expect(p.messages("joined").first.flatMap { Self.number("clock", in: $0) } == 0) }
    }

    @Test func everyPushIsAnsweredAndEveryMemberGetsEachClockOnceInOrder() async throws {
        let redis = try await Self.startRedis()
        let server = try await Self.start(redis: redis)
        let (a, b, c) = (try await Peer(port: server.port, user: "a"), try await Peer(port: server.port, user: "b"), try await Peer(port: server.port, user: "c"))
        try await Self.join([a, b, c], doc: "doc-1")

        // Interleaved pushes of two members, some sent back to back (one group commit or several: either way).
        for i in 0..<6 {
            let (pusher, id) = i % 3 == 2 ? (b, 100 + i) : (a, 10 + i)
            pusher.client.send(text: #"{"t":"push","doc":"doc-1","id":\#(id),"base":0,"ops":{"r\#(i)":["put",{"n":\#(i)}]}}"#)
        }
        try await waitUntil("6 answers and every patch", timeout: .seconds(30)) {
            a.messages("result").count + b.messages("result").count == 6 && c.messages("patch").count == 6
                && a.messages("patch").count == 2 && b.messages("patch").count == 4
        }

        // Each member: results and patches with clocks 1...6, each once, in order.
        for p in [a, b, c] {
            let clocks = p.messages.filter { $0.hasPrefix(#"{"t":"result""#) || $0.hasPrefix(#"{"t":"patch""#) }
                .compactMap { Self.number("clock", in: $0) }
            #expect(clocks == Array(1...6))
        }
        // Results answer the pusher's ids as commits; patches carry the ops as sent, the pusher's id and sid.
        #expect(a.messages("result").compactMap { Self.number("id", in: $0) } == [10, 11, 13, 14])
        #expect(b.messages("result").compactMap { Self.number("id", in: $0) } == [102, 105])
        #expect(a.messages("result").allSatisfy { $0.contains(#""action":"commit""#) })
        let patch = try #require(c.messages("patch").first { Self.number("id", in: $0) == 102 })
        #expect(patch.contains(#""ops":{"r2":["put",{"n":2}]}"#))
        #expect(patch.contains(#""by":"s"#))

        // Durable: the six entries are in the doc's log in Redis in clock order (the order of the patches a
        // member that pushed nothing received), and the clock is 6.
        let keys = await Self.cli(redis, "KEYS", "bare-sync:*").split(separator: "\n").map(String.init)
        let log = try #require(keys.first { $0.hasSuffix(":{doc-1}:log") })
        let clockKey = try #require(keys.first { $0.hasSuffix(":{doc-1}:clock") })
        #expect(await Self.cli(redis, "GET", clockKey) == "6")
        let entries = await Self.cli(redis, "LRANGE", log, "0", "-1").split(separator: "\n").map(String.init)
        let patchOps = c.messages("patch").compactMap { m -> String? in
            guard let start = m.range(of: #""ops":"#)?.upperBound, let end = m.range(of: #","by":"#)?.lowerBound else { return nil }
            return String(m[start..<end])
        }
        #expect(entries.count == 6)
        #expect(entries == patchOps)
        #expect(Set(entries) == Set((0..<6).map { #"{"r\#($0)":["put",{"n":\#($0)}]}"# }))

        for p in [a, b, c] { await p.close() }
        await server.shutdown()
    }

    @Test func aPushBeyondTheInFlightLimitIsRefusedWithAHintAndTheOthersStillCommit() async throws {
        let redis = try await Self.startRedis()
        let server = try await Self.start(redis: redis, maxPushesInFlight: 1)
        let a = try await Peer(port: server.port, user: "a")
        try await Self.join([a], doc: "doc-2")

        // Redis frozen: the first push waits for its commit, so the second is one too many.
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                redis.pause()
                continuation.resume()
            }
        }
        a.client.send(text: #"{"t":"push","doc":"doc-2","id":1,"base":0,"ops":{"r":["put",{}]}}"#)
        a.client.send(text: #"{"t":"push","doc":"doc-2","id":2,"base":0,"ops":{"r":["put",{}]}}"#)
        try await waitUntil("the second push refused", timeout: .seconds(30)) { !a.messages("error").isEmpty }
        let refusal = try #require(a.messages("error").first)
        #expect(refusal.contains(#""code":"unavailable""#))
        #expect(Self.number("id", in: refusal) == 2)
        #expect((Self.number("retryAfterMs", in: refusal) ?? 0) > 0)
        #expect(a.messages("result").isEmpty)

        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                redis.resume()
                continuation.resume()
            }
        }
        try await waitUntil("the first push committed", timeout: .seconds(30)) { !a.messages("result").isEmpty }
        #expect(a.messages("result").map { Self.number("id", in: $0) } == [1])
        #expect(a.messages("result").map { Self.number("clock", in: $0) } == [1])
        // Answered, it no longer counts: the next push commits.
        a.client.send(text: #"{"t":"push","doc":"doc-2","id":3,"base":1,"ops":{"r":["put",{}]}}"#)
        try await waitUntil("the third push committed", timeout: .seconds(30)) { a.messages("result").count == 2 }
        #expect(Self.number("clock", in: a.messages("result")[1]) == 2)

        await a.close()
        await server.shutdown()
    }
}
