import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Tombstones and bounded history: removals reach clients that were away, and history older than
/// `--log-retention` commits is compacted (clients that far behind get a snapshot).
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncHistoryTests {
    @Test func removalsReachClientsThatWereAwayAndHistoryIsBounded() async throws {
        let retention: UInt64 = 20
        let cluster = try await SyncCluster.start(nodes: 2) { $0.logRetention = Int(retention) }
        let doc = "history:1"
        let redis = cluster.redis
        let alice = try await cluster.client("alice", node: 0)
        let carol = try await cluster.client("carol", node: 1)
        try await alice.join(doc)
        try await carol.join(doc)
        alice.push(doc, id: 1, ops: #"{"r1":["put",{"v":1}],"r2":["put",{"v":2}],"r3":["put",{"v":3}]}"#)
        let c1 = try #require(try await alice.answer(doc, id: 1).clock())
        carol.push(doc, id: 1, ops: #"{"r4":["put",{"v":4}]}"#)
        #expect(try await carol.answer(doc, id: 1).string("action") == "commit")
        #expect(redis.command("HEXISTS", SyncRedis.key(doc, "pushids"), carol.session) == "1")

        // Bob has seen c1, then goes away.
        let bob = try await cluster.client("bob", node: 1)
        try await bob.join(doc, since: c1)
        #expect(bob.view(doc).complete == false, "joined with a since it did not build itself")
        let bobSince = c1

        alice.push(doc, id: 2, ops: #"{"r2":["remove"]}"#)
        let removedAt = try #require(try await alice.answer(doc, id: 2).clock())
        #expect(redis.command("ZSCORE", SyncRedis.key(doc, "tombs"), "r2") == "\(removedAt)", "the tombstone carries the removal's clock")
        #expect(redis.command("HEXISTS", SyncRedis.key(doc, "records"), "r2") == "0")
        #expect(redis.command("HEXISTS", SyncRedis.key(doc, "versions"), "r2") == "0")

        // A client coming back with an older since gets the remove in its log catch-up.
        let dave = try await cluster.client("dave", node: 0)
        try await dave.join(doc, since: bobSince)
        let catchUp = dave.view(doc)
        #expect(catchUp.chunks.map(\.type) == ["log"])
        #expect(catchUp.catchUpEntries[removedAt]?["ops"] == json(#"{"r2":["remove"]}"#))
        #expect(catchUp.records["r2"] == nil)
        // From 0 (within the history) the whole log replays to the same state: r2 never comes back.
        let erin = try await cluster.client("erin", node: 1)
        try await erin.join(doc, since: 0)
        #expect(erin.view(doc).chunks.map(\.type) == ["log"])
        #expect(erin.view(doc).complete)
        cluster.expectRecordsEqualRedis(erin, doc)

        // Many commits later the old entries and tombstones are gone (the log is trimmed on every commit,
        // tombstones and idle sessions every 64 clocks).
        for i in 3...90 {
            alice.push(doc, id: i, ops: #"{"r1":["put",{"v":\#(i)}]}"#)
        }
        #expect(try await alice.answer(doc, id: 90).string("action") == "commit")
        alice.push(doc, id: 91, ops: #"{"r3":["remove"]}"#)
        let head = try #require(try await alice.answer(doc, id: 91).clock())
        #expect(head > removedAt + retention)
        // The log is trimmed by clock, whole stream nodes at a time: at least the retention is kept, the
        // nodes' slack (100 entries by default) at most.
        let retained = SyncRedis.log(redis, doc)
        #expect(retained.last?.clock == head)
        #expect(retained.map(\.clock) == Array((retained.first?.clock ?? 1)...head), "contiguous")
        #expect((retained.first?.clock ?? 0) <= head - retention + 1)
        #expect(redis.command("ZCARD", SyncRedis.key(doc, "tombs")) == "1", "r2's tombstone compacted, r3's kept")
        #expect(redis.command("ZSCORE", SyncRedis.key(doc, "tombs"), "r3") == "\(head)")
        #expect(redis.command("HEXISTS", SyncRedis.key(doc, "pushids"), carol.session) == "0", "idle pushers forgotten too")
        #expect(redis.command("HEXISTS", SyncRedis.key(doc, "pushids"), alice.session) == "1")

        // Bob comes back with a since older than the retained history: a full snapshot, no partial log.
        bob.socket.abort()
        try await bob.reconnect(cluster.nodes[0].url(user: "bob"))
        try await bob.join(doc, since: bobSince)
        #expect(bob.view(doc).chunks.map(\.type) == ["snapshot"])
        #expect(bob.view(doc).records["r2"] == nil && bob.view(doc).records["r3"] == nil)
        cluster.expectRecordsEqualRedis(bob, doc)

        // The edge of the history, on a node that loads the doc from Redis and on one that followed it.
        for node in [0, 1] {
            let edge = try await cluster.client("edge\(node)", node: node)
            try await edge.join(doc, since: head - retention)
            #expect(edge.view(doc).chunks.map(\.type) == ["log"], "node \(node): since at the oldest retained entry - 1")
            #expect(edge.view(doc).catchUpEntries.count == Int(retention))
            let before = try await cluster.client("before\(node)", node: node)
            try await before.join(doc, since: head - retention - 1)
            #expect(before.view(doc).chunks.map(\.type) == ["snapshot"], "node \(node): since one older")
            cluster.expectRecordsEqualRedis(before, doc)
        }

        // Explicit sync: from a retained clock a log, from an older one a snapshot.
        alice.sendJSON(.object(["t": .string("sync"), "doc": .string(doc), "from": .number(head - 3)]))
        alice.sendJSON(.object(["t": .string("sync"), "doc": .string(doc), "from": .number(UInt64(1))]))
        try await waitUntil("two explicit replies") { alice.view(doc).explicitReplies.count == 2 }
        let replies = alice.view(doc).explicitReplies
        #expect(replies[0]["t"] == .string("log"))
        #expect(replies[0]["entries"]?.arrayValue?.compactMap { $0.objectValue?["clock"]?.uint64Value } == [head - 2, head - 1, head])
        #expect(replies[0]["more"] == .bool(false))
        #expect(replies[1]["t"] == .string("snapshot"))
        #expect(replies[1]["records"] == .object(alice.view(doc).records))

        // (Dave joined with a since he had not built himself, so only his clocks are checked.)
        try await cluster.waitConverged(doc, clients: [alice, carol, bob, dave, erin])
        for client in [alice, carol, bob, erin] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }
}
