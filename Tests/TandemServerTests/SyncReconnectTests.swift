import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Reconnecting with `?resume=` and `since`, then pushing again what was not answered: every edit is
/// applied exactly once.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncReconnectTests {
    /// Resuming on the same node, and on the other one.
    @Test(arguments: [0, 1])
    func pushesOfALostConnectionAreAppliedOnceWhenTheResumedSessionRePushesThem(reconnectTo: Int) async throws {
        // Bursts of 300 pushes behind a paused Redis: queue them all rather than refuse some as busy (this
        // test is about exactly-once after a resume, not admission).
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.maxPushWaitMs = 60_000
            $0.maxQueuedPushes = 10_000
        }
        let doc = "reconnect:repush"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.push(doc, id: 0, ops: #"{"text":["put",{"body":""}]}"#)
        #expect(try await alice.answer(doc, id: 0).string("action") == "commit")

        // A burst of appends, each adding its own marker, then the connection is lost at once. Redis holds
        // writes for a second meanwhile, so some pushes are surely still waiting when the socket goes (on
        // a fast day all 300 were committed before the abort, and the test checked nothing).
        _ = cluster.redis.command("CLIENT", "PAUSE", "1000", "WRITE")
        let count = 300
        var ops: [Int: JSONValue] = [:]
        var length = 0
        for k in 1...count {
            let marker = "<\(k)>"
            ops[k] = .object(["text": .array([.string("patch"), .object(["body": .array([.string("append"), .string(marker), .number(length)])])])])
            length += marker.utf16.count
            alice.push(doc, id: .number(k), ops: ops[k]!)
        }
        let session = alice.session
        alice.socket.abort()
        try await alice.reconnect(cluster.nodes[reconnectTo].url(user: "alice", query: "resume=\(session)"))
        #expect(alice.session == session, "resumed")
        try await alice.join(doc, since: alice.view(doc).head)

        // Push again everything not answered and not seen in the catch-up, as a client must.
        let view = alice.view(doc)
        let unanswered = (1...count).filter {
            let key = "\($0)"
            return view.results[key] == nil && view.ownCommitsInLog[key] == nil
        }
        #expect(!unanswered.isEmpty, "some pushes must still have been waiting when the client came back")
        for k in unanswered {
            alice.forgetAnswer(doc, id: .number(k))
            alice.push(doc, id: .number(k), ops: ops[k]!)
        }
        for k in unanswered {
            let answer = try await alice.answer(doc, id: k)
            #expect(answer.string("t") == "result", "push \(k): \(answer)")
            if answer.string("t") != "result" { break }  // one failure says it; 300 would drown it
        }
        try await cluster.waitConverged(doc)

        // Every marker exactly once: nothing lost, nothing applied twice.
        let body = try #require(alice.view(doc).records["text"]?.objectValue?["body"]?.stringValue)
        let counts = (1...count).map { body.components(separatedBy: "<\($0)>").count - 1 }
        let wrong = zip(1...count, counts).filter { $0.1 != 1 }
        #expect(wrong.isEmpty, "markers not applied exactly once (marker, times): \(wrong.prefix(10)) of \(wrong.count)")
        #expect(SyncRedis.pushesCommittedTwice(cluster.redis, doc) == [])
        cluster.expectRecordsEqualRedis(alice, doc)
        print("SyncReconnectTests: \(unanswered.count) of \(count) pushes re-pushed after the reconnect")
        await cluster.finish()
    }

    /// A client that comes back may send its pushes right after `join`, without waiting for `joined` or
    /// the end of its catch-up: they are answered after the catch-up, in clock order — on a doc the node
    /// has not loaded, on one it has, and when the catch-up is read from the Redis log (a `since` on a
    /// node that has just loaded the doc).
    @Test(arguments: ["unloaded", "loaded", "log catch-up"])
    func pushesSentRightAfterJoinAreAnsweredAfterTheCatchUp(_ situation: String) async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let keeper = try await cluster.client("keeper", node: 0)
        for round in 0..<3 {
            let doc = "early:\(round)"
            var since: UInt64?
            if situation != "unloaded" {
                try await keeper.join(doc)
                for k in 1...100 { keeper.push(doc, id: .number(k), ops: json(#"{"k\#(k % 7)":["put",{"k":\#(k)}]}"#)) }
                _ = try await keeper.answer(doc, id: 100)
            }
            if situation == "log catch-up" { since = 10 }
            let client = try await cluster.client("early\(round)", node: situation == "loaded" ? 0 : 1)
            try await client.join(doc, since: since, waitForSync: false)
            client.push(doc, id: 1, base: since ?? 0, ops: #"{"mine":["put",{"round":\#(round)}]}"#)
            client.push(doc, id: 2, base: since ?? 0, ops: #"{"mine":["patch",{"more":["put",true]}]}"#)
            for id in [1, 2] {
                let answer = try await client.answer(doc, id: id)
                #expect(answer.string("action") == "commit", "\(situation) round \(round), push \(id): \(answer)")
            }
            try await client.waitSynced(doc)
            if situation == "log catch-up" { #expect(client.view(doc).chunks.first?.type == "log") }
            #expect(client.view(doc).ownCommitsInLog.isEmpty, "answered, not only found in the catch-up")
            try await cluster.waitConverged(doc, clients: situation == "unloaded" ? [client] : [client, keeper])
            if since == nil { cluster.expectRecordsEqualRedis(client, doc) }
        }
        await cluster.finish()
    }
}
