import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// The push rules of docs/protocol.md against a real node and Redis: what commits as sent, what is
/// rebased (and into exactly which ops), what is discarded and why.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncRebaseTests {
    @Test func appendsWithStaleOffsetsBecomeAppendsAtTheCurrentLength() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "rebase:append"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)

        alice.push(doc, id: 1, ops: #"{"r":["put",{"text":"ab","list":[1],"emoji":"😀","n":5}]}"#)
        let c1 = try #require(try await alice.answer(doc, id: 1).clock())
        try await bob.waitHead(doc, c1)

        // Alice appends at the right offset; Bob, who has not seen it, appends at the same offset.
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"text":["append","cd",2],"list":["append",[2,3],1]}]}"#)
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")
        bob.push(doc, id: 1, base: c1, ops: #"{"r":["patch",{"text":["append","XY",2],"list":["append",[4],1]}]}"#)
        let rebased = try await bob.answer(doc, id: 1)
        #expect(rebased.string("action") == "rebase")
        #expect(rebased["ops"] == json(#"{"r":["patch",{"list":["append",[4],3],"text":["append","XY",4]}]}"#))

        // Offsets count UTF-16 code units, as JavaScript does: "😀" is 2 long (1 Character, 4 UTF-8 bytes).
        let c3 = try #require(rebased.clock())
        bob.push(doc, id: 2, base: c3, ops: #"{"r":["patch",{"emoji":["append","é",2]}]}"#)
        #expect(try await bob.answer(doc, id: 2).string("action") == "commit")
        bob.push(doc, id: 3, ops: #"{"r":["patch",{"emoji":["append","x",1]}]}"#)
        let utf16 = try await bob.answer(doc, id: 3)
        #expect(utf16.string("action") == "rebase")
        #expect(utf16["ops"] == json(#"{"r":["patch",{"emoji":["append","x",3]}]}"#))

        // A missing field counts as empty: offset 0 applies as sent, another offset becomes an append at 0.
        bob.push(doc, id: 4, ops: #"{"r":["patch",{"new":["append","z",0]}]}"#)
        #expect(try await bob.answer(doc, id: 4).string("action") == "commit")
        bob.push(doc, id: 5, ops: #"{"r":["patch",{"other":["append",[7],3]}]}"#)
        let missing = try await bob.answer(doc, id: 5)
        #expect(missing.string("action") == "rebase")
        #expect(missing["ops"] == json(#"{"r":["patch",{"other":["append",[7],0]}]}"#))

        // Appending to a value of another type is void: alone it is a discard, with others a rebase.
        let head = SyncRedis.head(cluster.redis, doc)
        bob.push(doc, id: 6, ops: #"{"r":["patch",{"n":["append","1",1]}]}"#)
        let void = try await bob.answer(doc, id: 6)
        #expect(void.string("action") == "discard" && void.string("reason") == "void")
        #expect(void.clock() == head)
        bob.push(doc, id: 7, ops: #"{"r":["patch",{"list":["append","s",4],"text":["append","!",6]}]}"#)
        let partial = try await bob.answer(doc, id: 7)
        #expect(partial.string("action") == "rebase")
        #expect(partial["ops"] == json(#"{"r":["patch",{"text":["append","!",6]}]}"#))

        try await cluster.waitConverged(doc)
        #expect(alice.view(doc).records["r"] == json(#"{"emoji":"😀éx","list":[1,2,3,4],"n":5,"new":"z","other":[7],"text":"abcdXY!"}"#))
        for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }

    @Test func patchesOfConcurrentlyRemovedRecordsAreDroppedAndPutsRecreate() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "rebase:removed"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)
        let conflictsBefore = try await cluster.nodes[1].metric("tandem_sync_conflicts_total")

        alice.push(doc, id: 1, ops: #"{"a":["put",{"v":1}],"b":["put",{"v":1}],"c":["put",{"v":1}]}"#)
        let base = try #require(try await alice.answer(doc, id: 1).clock())
        try await bob.waitHead(doc, base)
        alice.push(doc, id: 2, ops: #"{"a":["remove"],"b":["remove"],"c":["remove"]}"#)
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")

        // Bob still works from `base`: his patch of a removed record is void…
        bob.push(doc, id: 1, base: base, ops: #"{"a":["patch",{"v":["put",2]}]}"#)
        let dropped = try await bob.answer(doc, id: 1)
        #expect(dropped.string("action") == "discard")
        #expect(dropped.string("reason") == "void")
        // …and dropped from a push that also does something else (a rebase saying what applied).
        bob.push(doc, id: 2, base: base, ops: #"{"b":["patch",{"v":["put",2]}],"d":["put",{"v":4}]}"#)
        let rebased = try await bob.answer(doc, id: 2)
        #expect(rebased.string("action") == "rebase")
        #expect(rebased["ops"] == json(#"{"d":["put",{"v":4}]}"#))
        // Removing an already removed record is void; a put recreates it (latest wins).
        bob.push(doc, id: 3, base: base, ops: #"{"c":["remove"]}"#)
        #expect(try await bob.answer(doc, id: 3).string("reason") == "void")
        bob.push(doc, id: 4, base: base, ops: #"{"a":["put",{"v":"again"}]}"#)
        #expect(try await bob.answer(doc, id: 4).string("action") == "commit")

        // Those were conflicts: caused by a change Bob had not seen.
        let conflicts = try await cluster.nodes[1].metric("tandem_sync_conflicts_total") - conflictsBefore
        #expect(conflicts == 3, "discard, rebase and discard caused by the concurrent removal; got \(conflicts)")

        try await cluster.waitConverged(doc)
        #expect(bob.view(doc).records == ["a": json(#"{"v":"again"}"#), "d": json(#"{"v":4}"#)])
        for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }

    @Test func nestedPatchesAndDuplicatePushes() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let doc = "rebase:nested"
        let alice = try await cluster.client("alice")
        let bob = try await cluster.client("bob")
        try await alice.join(doc)
        try await bob.join(doc)

        alice.push(doc, id: .string("first"), ops: json(#"{"r":["put",{"meta":{"color":"red","deep":{"x":1,"keep":true}},"flat":3}]}"#))
        #expect(try await alice.answer(doc, id: .string("first")).string("action") == "commit")
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"meta":["patch",{"deep":["patch",{"x":["put",2],"y":["put",null]}],"color":["delete"]}]}]}"#)
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")
        // A nested patch needs an object there: the void part is dropped, the rest applies.
        alice.push(doc, id: 3, ops: #"{"r":["patch",{"flat":["patch",{"x":["put",1]}],"meta":["patch",{"deep":["patch",{"z":["append","s",0]}]}]}]}"#)
        let rebased = try await alice.answer(doc, id: 3)
        #expect(rebased.string("action") == "rebase")
        #expect(rebased["ops"] == json(#"{"r":["patch",{"meta":["patch",{"deep":["patch",{"z":["append","s",0]}]}]}]}"#))

        // The same push id again from the same session: recognised, not applied twice.
        let head = SyncRedis.head(cluster.redis, doc)
        alice.forgetAnswer(doc, id: .number(3))
        alice.push(doc, id: 3, ops: #"{"r":["patch",{"meta":["patch",{"deep":["patch",{"z":["append","s",1]}]}]}]}"#)
        let duplicate = try await alice.answer(doc, id: 3)
        #expect(duplicate.string("action") == "discard")
        #expect(duplicate.string("reason") == "duplicate")
        #expect(duplicate.clock() == head)
        #expect(SyncRedis.head(cluster.redis, doc) == head)
        // Not only the last one: an earlier push id of the session is recognised too (a window of 64).
        alice.forgetAnswer(doc, id: .number(2))
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"flat":["put",99]}]}"#)
        #expect(try await alice.answer(doc, id: 2).string("reason") == "duplicate")
        alice.forgetAnswer(doc, id: .string("first"))
        alice.push(doc, id: .string("first"), ops: json(#"{"r":["put",{}]}"#))
        #expect(try await alice.answer(doc, id: .string("first")).string("reason") == "duplicate")
        #expect(SyncRedis.head(cluster.redis, doc) == head)

        try await cluster.waitConverged(doc)
        #expect(bob.view(doc).records["r"] == json(#"{"flat":3,"meta":{"deep":{"keep":true,"x":2,"y":null,"z":"s"}}}"#))
        for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }
}
