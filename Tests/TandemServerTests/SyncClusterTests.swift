import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// One authority per document across nodes: clocks come from Redis, so pushes through any node get
/// unique, contiguous clocks, and every client sees them in order.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncClusterTests {
    @Test func concurrentPushesThroughTwoNodesGetUniqueContiguousClocks() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "cluster:1"
        var clients: [SyncClient] = []
        for i in 0..<6 {
            let client = try await cluster.client("u\(i)", node: i % 2)
            try await client.join(doc)
            clients.append(client)
        }
        // A shared record everyone patches, so pushes really contend.
        clients[0].push(doc, id: 0, ops: #"{"shared":["put",{"title":"start"}]}"#)
        #expect(try await clients[0].answer(doc, id: 0).string("action") == "commit")
        try await cluster.waitConverged(doc)

        // Every client fires 25 pushes without waiting for answers, all at once.
        let perClient = 25
        await withTaskGroup(of: Void.self) { group in
            for (i, client) in clients.enumerated() {
                group.addTask {
                    for k in 1...perClient {
                        client.push(
                            doc, id: k,
                            ops: #"{"own-\#(i)-\#(k)":["put",{"k":\#(k)}],"shared":["patch",{"by-\#(i)":["put",\#(k)]}]}"#)
                    }
                }
            }
        }
        var assigned: [UInt64: (client: Int, id: Int)] = [:]
        var contended = 0
        for (i, client) in clients.enumerated() {
            for k in 1...perClient {
                var answer = try await client.answer(doc, id: k)
                if answer.string("code") == "unavailable" {
                    // A push that kept losing the race for "shared" to the other node is refused
                    // ("too much contention"), not applied: the client pushes it again.
                    contended += 1
                    answer = try await client.pushUntilAnswered(doc, id: .number(k), ops: json(
                        #"{"own-\#(i)-\#(k)":["put",{"k":\#(k)}],"shared":["patch",{"by-\#(i)":["put",\#(k)]}]}"#))
                }
                #expect(answer.string("t") == "result", "\(client.name) push \(k): \(answer)")
                #expect(answer.string("action") == "commit", "puts and field puts always apply as sent")
                guard let clock = answer.clock() else { continue }
                #expect(assigned[clock] == nil, "clock \(clock) assigned twice: \(assigned[clock].map { "\($0)" } ?? "") and (\(i), \(k))")
                assigned[clock] = (i, k)
            }
        }
        let total = UInt64(1 + clients.count * perClient)
        #expect(Set(assigned.keys) == Set(2...total), "the pushes got exactly clocks 2…\(total)")
        #expect(SyncRedis.head(cluster.redis, doc) == total)

        // The log holds exactly those clocks, each with the pusher's session and push id.
        let log = SyncRedis.log(cluster.redis, doc)
        #expect(log.map(\.clock) == Array(1...total))
        // (Group commits write one entry per batch, so the stream may hold fewer entries than commits.)
        #expect((Int(cluster.redis.command("XLEN", SyncRedis.key(doc, "log"))) ?? 0) <= Int(total))
        for entry in log where entry.clock > 1 {
            guard let (i, k) = assigned[entry.clock] else { continue }
            #expect(entry.fields["by"] == clients[i].session && entry.fields["id"] == "\(k)", "log entry \(entry.clock): \(entry.fields)")
            #expect(entry.fields["node"] == "node-\(i % 2)", "the node that executed the push is logged")
        }

        // Every key of the doc is hash-tagged with it (one Cluster slot). (The others are per node or
        // per session: tandem:{nodes}:…, tandem:session:….)
        let keys = cluster.redis.command("KEYS", "*").split(separator: "\n").map(String.init)
        for name in ["clock", "records", "versions", "log", "pushids", "pushlast", "nodes", "presence:node-0", "presence:node-1"] {
            #expect(keys.contains(SyncRedis.key(doc, name)), "\(SyncRedis.key(doc, name)) in \(keys)")
        }
        for key in keys where key.contains(doc) {
            #expect(key.hasPrefix("tandem:{\(doc)}:"), "key \(key) is not tagged {\(doc)}")
        }
        for key in keys where !key.contains(doc) {
            #expect(key.hasPrefix("tandem:{nodes}:") || key.hasPrefix("tandem:session:"), "unexpected key \(key)")
        }
        if contended > 0 { print("SyncClusterTests: \(contended) pushes refused for contention and pushed again") }

        try await cluster.waitConverged(doc)
        for client in clients { cluster.expectRecordsEqualRedis(client, doc) }
        for client in clients { #expect(client.view(doc).liveClocks.count == Int(total), "\(client.name) got every clock once") }
        await cluster.finish()
    }

    @Test func pushOnNodeBWithABaseSeenOnNodeA() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "cluster:base"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)

        // Alice commits on A; Bob learns her clock out of band and pushes on B with that base at once,
        // possibly before B's replica has it: B must wait for its replica, not refuse the push.
        for round in 1...20 {
            alice.push(doc, id: round, ops: #"{"r":["put",{"text":"a\#(round)","n":\#(round)}]}"#)
            let aliceClock = try #require(try await alice.answer(doc, id: round).clock())
            bob.push(doc, id: round, base: aliceClock, ops: #"{"r":["patch",{"text":["append","b",\#(("a\(round)").utf16.count)]}]}"#)
            let answer = try await bob.answer(doc, id: round)
            #expect(answer.string("action") == "commit", "round \(round): \(answer)")
            #expect(answer.clock() == aliceClock + 1)
        }
        try await cluster.waitConverged(doc)
        #expect(bob.view(doc).records["r"] == json(#"{"n":20,"text":"a20b"}"#))

        // A base the doc never reached is refused (after the node waited for it in vain) — each such push.
        let head = SyncRedis.head(cluster.redis, doc)
        bob.push(doc, id: 100, base: head + 50, ops: #"{"r":["put",{}]}"#)
        bob.push(doc, id: 101, base: head + 60, ops: #"{"r":["put",{}]}"#)
        for id in [100, 101] {
            let refused = try await bob.answer(doc, id: id)
            #expect(refused.string("action") == "discard", "\(refused)")
            #expect(refused.string("reason") == "invalid_base")
            #expect(refused.clock() == head, "a discard carries the client's current position")
        }
        #expect(SyncRedis.head(cluster.redis, doc) == head)
        for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }
}
