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
        let members = try (0..<3).map { try Client(id: UInt64(20 + $0), user: "n\($0)", loop: connectionsLoop, dependencies: fixture.dependencies) }
        defer { for member in members { _ = try? member.channel.finish(acceptAlreadyClosed: true) } }
        for member in members { member.receive(#"{"t":"join","doc":"d"}"#) }
        fixture.loop.run()
        let shard = fixture.shards.all[0]
        shard.tick()
        connectionsLoop.run()
        for member in members { _ = try member.frames() }
        let accepted = { shard.docs["d"]?.presence.acceptedUpdates ?? 0 }
        let before = accepted()

        // One round of the connections' loop: three read bursts, one update each; the round has not ended.
        for (index, member) in members.enumerated() {
            var frame = member.channel.allocator.buffer(capacity: 64)
            frame.writeString(#"{"t":"presence","doc":"d","state":{"k":\#(200 + index)}}"#)
            member.connection.receivedText(frame)
            member.connection.readComplete()
        }
        fixture.loop.run()
        #expect(accepted() - before == 2, "the first two batches reach the shard before the round ends")
        #expect(Self.value(fixture.metrics, #"tandem_presence_inbound_handoffs_total{reason="batches"}"#) == 1)
        connectionsLoop.run()  // the round ends: the third goes over
        fixture.loop.run()
        #expect(accepted() - before == 3)
        #expect(Self.value(fixture.metrics, #"tandem_presence_inbound_handoffs_total{reason="round_end"}"#) == 1)
    }

    /// The value of one metric line of the exposition (`name{labels}`), 0 if absent.
    static func value(_ metrics: TandemMetrics, _ line: String) -> Double {
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        for row in text.split(separator: "\n") where row.hasPrefix(line + " ") {
            return Double(row.dropFirst(line.count + 1)) ?? 0
        }
        return 0
    }
}
