import Foundation
import TandemCore
import TandemServer
import TandemTestSupport
import Testing

/// Permissions and limits: viewers cannot change a doc, oversized or malformed pushes are refused as a
/// whole (head and records unchanged), and the connection stays usable.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncLimitsTests {
    @Test func viewersPushesAreDiscardedReadOnly() async throws {
        let secret = "sync-test-secret-of-at-least-32-bytes"
        let cluster = try await SyncCluster.start(nodes: 1) { $0.jwtSecret = secret }
        let node = cluster.nodes[0]
        func token(_ user: String, _ role: String) async throws -> String {
            try await Authenticator.makeToken(
                secret: secret, claims: TandemClaims(sub: user, name: user, exp: Date().addingTimeInterval(600), docs: ["*": role]))
        }
        let editor = try await SyncClient.connect("\(node.wsBase)?token=\(try await token("ed", "editor"))", name: "ed")
        let viewer = try await SyncClient.connect("\(node.wsBase)?token=\(try await token("vi", "viewer"))", name: "vi")
        cluster.track(editor)
        cluster.track(viewer)
        let doc = "limits:viewer"
        try await editor.join(doc)
        try await viewer.join(doc)
        editor.push(doc, id: 1, ops: #"{"r":["put",{"v":1}]}"#)
        let head = try #require(try await editor.answer(doc, id: 1).clock())
        try await viewer.waitHead(doc, head)
        let discardsBefore = try await node.metric(#"tandem_sync_pushes_total{action="discard"}"#)

        viewer.push(doc, id: 1, ops: #"{"r":["put",{"v":"viewer"}],"s":["put",{}]}"#)
        let refused = try await viewer.answer(doc, id: 1)
        #expect(refused.string("t") == "result")
        #expect(refused.string("action") == "discard")
        #expect(refused.string("reason") == "read_only")
        #expect(refused.clock() == head)
        #expect(SyncRedis.head(cluster.redis, doc) == head)
        #expect(SyncRedis.records(cluster.redis, doc) == ["r": #"{"v":1}"#])
        #expect(try await node.metric(#"tandem_sync_pushes_total{action="discard"}"#) == discardsBefore + 1)

        // The viewer keeps receiving the doc, in order.
        editor.push(doc, id: 2, ops: #"{"r":["patch",{"v":["put",2]}]}"#)
        try await viewer.waitHead(doc, head + 1)
        cluster.expectRecordsEqualRedis(viewer, doc)
        await cluster.finish()
    }

    @Test func oversizedPushesAreRefusedWholeAndNothingIsApplied() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.maxRecordBytes = 200
            $0.maxPushBytes = 1000
            $0.maxPushOps = 5
            $0.maxDocRecords = 10
            $0.limits.maxMessageBytes = 4096
        }
        let doc = "limits:size"
        let redis = cluster.redis
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)
        alice.push(doc, id: 1, ops: #"{"r0":["put",{"s":"x"}],"r1":["put",{"s":""}]}"#)
        #expect(try await alice.answer(doc, id: 1).string("action") == "commit")

        /// Sends a push that must be refused with `too_large`, and checks that nothing changed.
        func expectTooLarge(_ id: Int, _ ops: JSONValue, _ what: String) async throws {
            let head = SyncRedis.head(redis, doc)
            let records = SyncRedis.records(redis, doc)
            alice.push(doc, id: .number(id), ops: ops)
            let answer = try await alice.answer(doc, id: id)
            #expect(answer.string("t") == "error", "\(what): \(answer)")
            #expect(answer.string("code") == "too_large", "\(what): \(answer)")
            #expect(answer["id"] == .number(id), "\(what): the refusal names the push")
            #expect(answer.string("doc") == doc)
            #expect(SyncRedis.head(redis, doc) == head, "\(what): head unchanged")
            #expect(SyncRedis.records(redis, doc) == records, "\(what): records unchanged")
        }
        let big = String(repeating: "x", count: 250)
        try await expectTooLarge(10, json(#"{"ok":["put",{"v":1}],"big":["put",{"s":"\#(big)"}]}"#), "a record over the limit")
        try await expectTooLarge(11, json(#"{"ok":["put",{"v":1}],"r1":["patch",{"s":["append","\#(big)",0]}]}"#), "a patch growing a record over it")
        let near = String(repeating: "y", count: 185)
        let fiveBig = (0..<5).map { #""p\#($0)":["put",{"s":"\#(near)"}]"# }.joined(separator: ",")
        try await expectTooLarge(12, json("{\(fiveBig)}"), "ops over the push byte limit")
        let six = (0..<6).map { #""q\#($0)":["put",{}]"# }.joined(separator: ",")
        try await expectTooLarge(13, json("{\(six)}"), "more ops than allowed")
        let huge = String(repeating: "z", count: 5000)
        try await expectTooLarge(14, json(#"{"h":["put",{"s":"\#(huge)"}]}"#), "a message over maxMessageBytes")

        // The doc record limit (10): 2 records now, 8 more reach it exactly, one more is refused.
        let firstFour = (2..<6).map { #""r\#($0)":["put",{}]"# }.joined(separator: ",")
        let nextFour = (6..<10).map { #""r\#($0)":["put",{}]"# }.joined(separator: ",")
        alice.push(doc, id: .number(20), ops: json("{\(firstFour)}"))
        #expect(try await alice.answer(doc, id: 20).string("action") == "commit")
        alice.push(doc, id: .number(21), ops: json("{\(nextFour)}"))
        #expect(try await alice.answer(doc, id: 21).string("action") == "commit")
        #expect(SyncRedis.records(redis, doc).count == 10)
        try await expectTooLarge(22, json(#"{"r0":["remove"],"n1":["put",{}],"n2":["put",{}]}"#), "a doc over its record limit")
        // Removing one makes room for one.
        alice.push(doc, id: 23, ops: #"{"r0":["remove"],"n1":["put",{}]}"#)
        #expect(try await alice.answer(doc, id: 23).string("action") == "commit")

        // Two nodes racing for the last slot: exactly one wins (Redis re-checks the count atomically).
        alice.push(doc, id: 24, ops: #"{"r1":["remove"]}"#)
        let head = try #require(try await alice.answer(doc, id: 24).clock())
        try await bob.waitHead(doc, head)
        alice.push(doc, id: 25, ops: #"{"from-alice":["put",{}]}"#)
        bob.push(doc, id: 25, ops: #"{"from-bob":["put",{}]}"#)
        let answers = [try await alice.answer(doc, id: 25), try await bob.answer(doc, id: 25)]
        #expect(answers.filter { $0.string("action") == "commit" }.count == 1, "\(answers)")
        #expect(answers.filter { $0.string("code") == "too_large" }.count == 1, "\(answers)")
        #expect(SyncRedis.records(redis, doc).count == 10)

        // Clocks stayed contiguous through all the refusals, and the connection is still usable.
        alice.push(doc, id: 30, ops: #"{"r2":["put",{"after":true}]}"#)
        let last = try #require(try await alice.answer(doc, id: 30).clock())
        #expect(last == SyncRedis.head(redis, doc))
        #expect(SyncRedis.log(redis, doc).map(\.clock) == Array(1...last))
        try await cluster.waitConverged(doc)
        for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }

    @Test func malformedPushesAreBadMessages() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let doc = "limits:malformed"
        let alice = try await cluster.client("alice")
        try await alice.join(doc)
        alice.push(doc, id: 1, ops: #"{"r":["put",{"v":1}]}"#)
        let head = try #require(try await alice.answer(doc, id: 1).clock())
        let longID = String(repeating: "i", count: 257)
        let malformed = [
            #"{"r":["put",5]}"#, #"{"r":["frob"]}"#, #"{"r":["remove","extra"]}"#, #"{"r":"put"}"#,
            #"{"r":["patch",{"v":["append",5,0]}]}"#, #"{"r":["patch",{"v":["append","x",-1]}]}"#,
            #"{"r":["patch",{"v":["append","x",1.5]}]}"#, #"{"r":["patch",{"v":["patch",[]]}]}"#,
            #"{"":["remove"]}"#, #"{"\#(longID)":["remove"]}"#, #"{"ok":["put",{}],"r":["patch",{"v":["nope"]}]}"#,
        ]
        for (offset, ops) in malformed.enumerated() {
            let id = 100 + offset
            alice.push(doc, id: .number(id), ops: json(ops))
            let answer = try await alice.answer(doc, id: id)
            #expect(answer.string("t") == "error" && answer.string("code") == "bad_message", "\(ops): \(answer)")
            #expect(answer.string("doc") == doc)
        }
        // Malformed push messages (not just their ops).
        alice.socket.sendRaw(#"{"t":"push","doc":"\#(doc)","id":200,"ops":{}}"#)
        let noBase = try await alice.answer(doc, id: 200)
        #expect(noBase.string("code") == "bad_message")
        alice.socket.sendRaw(#"{"t":"push","doc":"\#(doc)","id":201,"base":0,"ops":[]}"#)
        #expect(try await alice.answer(doc, id: 201).string("code") == "bad_message")
        alice.socket.sendRaw(#"{"t":"push","doc":"\#(doc)","id":{"x":1},"base":0,"ops":{}}"#)
        try await alice.socket.next("error") { JSON.string($0, at: "code") == "bad_message" && JSON.value($0, at: "id") == nil }

        #expect(SyncRedis.head(cluster.redis, doc) == head)
        #expect(SyncRedis.records(cluster.redis, doc) == ["r": #"{"v":1}"#])
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"v":["put",2]}]}"#)
        #expect(try await alice.answer(doc, id: 2).clock() == head + 1, "the connection is still usable")
        await cluster.finish()
    }
}
