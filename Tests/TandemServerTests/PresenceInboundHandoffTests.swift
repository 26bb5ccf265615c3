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
        let members = try (0..<3).map { try Client(id: UInt64(10 + $0), user: "m\($0)", loop: connectionsLoop, dependencies: fixture.dependencies) }
        defer { for member in members { _ = try? member.channel.finish(acceptAlreadyClosed: true) } }
        for member in members { member.receive(#"{"t":"join","doc":"d"}"#) }
        fixture.loop.run()
        let shard = fixture.shards.all[0]
        shard.tick()
        connectionsLoop.run()
        for member in members { _ = try member.frames() }

        // One round of the connections' loop: each connection reads one update (its burst ends).
        for (index, member) in members.enumerated() {
            var frame = member.channel.allocator.buffer(capacity: 64)
            frame.writeString(#"{"t":"presence","doc":"d","state":{"k":\#(100 + index)}}"#)
            member.connection.receivedText(frame)
            member.connection.readComplete()
        }
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
}
