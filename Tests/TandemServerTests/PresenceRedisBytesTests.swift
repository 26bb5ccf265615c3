import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Issue 14: a tick's Redis write splices each entry from the node message it publishes instead of
/// encoding it again. What Redis holds must still be exactly each session's entry: the entry's own
/// encoding, at its latest state and version, for every session written in the same tick.
@Suite(.serialized) struct PresenceRedisBytesTests {
    @Test func eachEntryInRedisIsExactlyItsSessionsEntry() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "bytes-node")
        defer { Task { await node.stop() } }
        var clients: [TestClient] = []
        for i in 0..<3 { clients.append(try await TestClient.connect(node.url(user: "user\(i)"), name: "c\(i)")) }
        for client in clients { try await client.join("d1", state: ["i": 0]) }
        let key = "tandem:{d1}:presence:bytes-node"
        // All three change within one tick, so one write carries them all.
        for (i, client) in clients.enumerated() {
            client.send(["t": "presence", "doc": "d1", "state": ["i": i + 1, "name": "c\(i) \"q\""]])
        }
        for (i, client) in clients.enumerated() {
            try await waitUntil("c\(i)'s update is in Redis") { redis.command("HGET", key, client.session).contains(#""i":\#(i + 1)"#) }
            let stored = Array(redis.command("HGET", key, client.session).utf8)
            let entry = try #require(PresenceEntry(encoded: stored), "c\(i): \(String(decoding: stored, as: UTF8.self))")
            #expect(entry.sid == client.session)
            #expect(entry.node == "bytes-node")
            #expect(entry.version >= 2)
            #expect(entry.encoded == stored, "stored as the entry's own encoding, byte for byte")
        }
        for client in clients { await client.close() }
    }
}
