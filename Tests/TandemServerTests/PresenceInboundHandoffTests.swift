import NIOCore
import NIOEmbedded
@testable import TandemServer
import Testing

/// Presence from connections on another loop than their doc's shard (issue 14, stop 26): the batches of
/// one round of the connections' loop reach the shard in one hop when that round ends, not one hop per
/// connection as each read burst ends. Real connections and a real shard on two embedded loops (the shard
/// told of both, as a node's are), each loop run by hand so that what is queued where can be seen.
@Suite struct PresenceInboundHandoffTests {
    typealias Client = ConnectionLayerTests.Client

    @Test func batchesOfOneRoundReachTheShardTogetherWhenTheRoundEnds() throws {
        let connectionsLoop = EmbeddedEventLoop()
        let fixture = try ConnectionLayerTests.Fixture(peerLoops: [connectionsLoop]) { $0.tickPhases = 1 }
        defer { try? connectionsLoop.syncShutdownGracefully() }
        let members = try Self.joinedMembers(3, firstID: 10, fixture: fixture, on: connectionsLoop)
        defer { for member in members { _ = try? member.channel.finish(acceptAlreadyClosed: true) } }
        let shard = fixture.shards.all[0]

        // One round of the connections' loop: each connection reads one update (its burst ends).
        Self.oneUpdateEach(members, from: 100)
        // The round has not ended: nothing is on the shard's loop yet (one hop per burst put all three there).
        fixture.loop.run()
        shard.tick()
        connectionsLoop.run()  // ends the round: the gathered batches go over in one hop
        for member in members {
            #expect(try !member.frames().contains { $0.text.contains(#""k":10"#) }, "applied before the round ended")
        }
        fixture.loop.run()
        shard.tick()
        connectionsLoop.run()
        // Every update applied, once the round is over, and delivered with the next tick.
        let seen = try members.map { try $0.frames().map(\.text).joined() }
        for index in 0..<3 {
            #expect(seen.filter { $0.contains(#""k":\#(100 + index)"#) }.count >= 2, "k=\(100 + index): \(seen)")
        }
    }

    /// `--presence-handoff-batches` (stop 27): once that many connections' batches are gathered they go to
    /// the shard at once, without waiting for the rest of the round; the round's end takes the remainder.
    /// Fails if the batches wait for the round's end whatever their number (stop 26's hand-over): the shard
    /// had applied none of them before the round ended.
    @Test func aFullHandoffGoesBeforeTheRoundEnds() throws {
        let connectionsLoop = EmbeddedEventLoop()
        let fixture = try ConnectionLayerTests.Fixture(peerLoops: [connectionsLoop]) {
            $0.tickPhases = 1
            $0.presenceHandoffBatches = 2
        }
        defer { try? connectionsLoop.syncShutdownGracefully() }
        let members = try Self.joinedMembers(3, firstID: 20, fixture: fixture, on: connectionsLoop)
        defer { for member in members { _ = try? member.channel.finish(acceptAlreadyClosed: true) } }
        let shard = fixture.shards.all[0]
        let accepted = { shard.docs["d"]?.presence.acceptedUpdates ?? 0 }
        let before = accepted()

        // One round of the connections' loop: three read bursts, one update each; the round has not ended.
        Self.oneUpdateEach(members, from: 200)
        fixture.loop.run()
        #expect(accepted() - before == 2, "the first two batches reach the shard before the round ends")
        #expect(fixture.metrics.value(of: #"tandem_presence_inbound_handoffs_total{reason="batches"}"#) == 1)
        connectionsLoop.run()  // the round ends: the third goes over
        fixture.loop.run()
        #expect(accepted() - before == 3)
        #expect(fixture.metrics.value(of: #"tandem_presence_inbound_handoffs_total{reason="round_end"}"#) == 1)
    }

    /// `count` clients on `loop` (ids from `firstID`) joined to doc "d", with the join's tick done and
    /// everything they were sent read.
    static func joinedMembers(_ count: Int, firstID: UInt64, fixture: ConnectionLayerTests.Fixture, on loop: EmbeddedEventLoop) throws -> [Client] {
        let members = try (0..<count).map {
            try Client(id: firstID + UInt64($0), user: "u\(firstID + UInt64($0))", loop: loop, dependencies: fixture.dependencies)
        }
        for member in members { member.receive(#"{"t":"join","doc":"d"}"#) }
        fixture.loop.run()
        fixture.shards.all[0].tick()
        loop.run()
        for member in members { _ = try member.frames() }
        return members
    }

    /// One round of the members' loop, not ended: each member reads one update (`k` = `first` + its index)
    /// and its read burst ends.
    static func oneUpdateEach(_ members: [Client], from first: Int) {
        for (index, member) in members.enumerated() {
            var frame = member.channel.allocator.buffer(capacity: 64)
            frame.writeString(#"{"t":"presence","doc":"d","state":{"k":\#(first + index)}}"#)
            member.connection.receivedText(frame)
            member.connection.readComplete()
        }
    }
}
