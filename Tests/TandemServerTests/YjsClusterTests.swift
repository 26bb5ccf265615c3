import Foundation
import TandemServer
import TandemTestSupport
import TandemYjs
import Testing

/// `/yjs/{room}` on a real Redis Cluster (issues 10 and 11): two nodes sync rooms owned by every primary and
/// relay awareness between them, through sharded pub/sub only; a room's keys live on the shard of its name.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct YjsClusterTests {
    private func latestAwareness(_ client: YjsTestClient, _ clientID: UInt64) -> YAwarenessUpdate.Entry? {
        client.messages.flatMap { message -> [YAwarenessUpdate.Entry] in
            if case .awareness(let update) = message { return update.entries } else { return [] }
        }.last { $0.clientID == clientID }
    }

    @Test func twoNodesSyncRoomsAndAwarenessOnEveryShardWithShardedPubSub() async throws {
        let serving = try await ClusterServing.start(nodes: 2)
        let primaries = await serving.primaryPorts()
        #expect(primaries.count == 3)
        // A room's keys are hash-tagged by its name (`tandem:yjs:{room}:…`), as a doc's are by its id.
        let rooms = await serving.docsOnEveryPrimary(prefix: "yjs-shard-")

        for (index, room) in rooms.enumerated() {
            let alice = try await YjsTestClient.connect(
                YjsTestClient.url(port: serving.nodes[0].port, room: room, user: "alice\(index)"), name: "alice")
            let bob = try await YjsTestClient.connect(
                YjsTestClient.url(port: serving.nodes[1].port, room: room, user: "bob\(index)"), name: "bob")
            _ = try await alice.serverStep1()
            _ = try await bob.serverStep1()

            // Each edits; both get both updates (the sender too), in the same order.
            let fromAlice = YjsUpdates.text(client: 100, clock: 0, "hello")
            let fromBob = YjsUpdates.text(client: 200, clock: 0, "world")
            alice.send(.update(fromAlice))
            bob.send(.update(fromBob))
            try await waitUntil("both clients got both updates in \(room)") { alice.updates.count == 2 && bob.updates.count == 2 }
            #expect(alice.updates == bob.updates, "one order per room across nodes")
            #expect(Set(alice.updates) == Set([fromAlice, fromBob]))

            // A late joiner on either node gets the whole room in its step 2.
            let carol = try await YjsTestClient.connect(
                YjsTestClient.url(port: serving.nodes[index % 2].port, room: room, user: "carol\(index)"), name: "carol")
            _ = try await carol.serverStep1()
            let whole = try await carol.step2(for: YStateVector())
            let clocks = Dictionary(uniqueKeysWithValues: YStateVector(fromUpdate: whole).entries.map { ($0.client, $0.clock) })
            #expect(clocks == [100: 5, 200: 5], "the late joiner's step 2 holds both edits")

            // Awareness crosses nodes, and its removal when the socket dies.
            alice.send(.awareness(YAwarenessUpdate(entries: [.init(clientID: 100, clock: 1, stateJSON: #"{"cursor":\#(index)}"#)])))
            try await waitUntil("bob sees alice's awareness in \(room)") { self.latestAwareness(bob, 100)?.clock == 1 }
            alice.socket.abort()
            try await waitUntil("bob sees alice removed in \(room)") {
                self.latestAwareness(bob, 100).map { $0.clock == 2 && $0.isRemoval } ?? false
            }
            #expect(alice.undecodableCount == 0 && bob.undecodableCount == 0)
            await bob.close()
            await carol.close()

            // The room's log and awareness live on the shard that owns its name.
            let owner = try #require(await serving.owner(of: room))
            let length = await offPool { owner.command("LLEN", "tandem:yjs:{\(room)}:log") }
            #expect(length == "2", "the room's log is on its shard: \(length)")
        }

        // Sharded pub/sub only: every primary ran SPUBLISH (the append and awareness scripts), none PUBLISH.
        try await serving.expectShardedPublishingOnly(primaries)
        serving.finish()
    }
}
