import NIOCore
import NIOEmbedded
@testable import TandemServer
import Testing

/// How a tick's deltas reach the members (issue 14, stop 26): members on the shard's own loop are written
/// to during the tick, without a task; members on another loop get one hop per tick phase with every doc's
/// delta for that loop, not one hop per doc. Real connections and a real shard on embedded loops (no Redis:
/// unreachable), the tick called directly so that what is still queued on a loop can be seen.
@Suite struct PresenceDeliveryHopTests {
    typealias Client = ConnectionLayerTests.Client

    /// The frames written to `client` so far, without running its loop (what a queued task would write
    /// is not there yet).
    static func written(_ client: Client, pending: inout [UInt8]) throws -> [ConnectionLayerTests.Frame] {
        while let buffer = try client.channel.readOutbound(as: ByteBuffer.self) { pending += buffer.readableBytesView }
        return Client.takeFrames(from: &pending)
    }

    /// How many times `tandem_presence_delivery_seconds` was recorded: once per hop (or same-loop write) of
    /// a tick's deltas.
    static func deliveryRecords(_ metrics: TandemMetrics) -> Int {
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("tandem_presence_delivery_seconds_count") {
            return Int(line.split(separator: " ").last ?? "") ?? -1
        }
        return 0
    }

    @Test func membersOnTheShardsLoopAreWrittenDuringTheTick() throws {
        let fixture = try ConnectionLayerTests.Fixture { $0.tickPhases = 1 }
        let alice = fixture.client
        let bob = try fixture.addClient(id: 2, user: "u2")
        for client in [alice, bob] { client.receive(#"{"t":"join","doc":"d"}"#) }
        let shard = fixture.shards.all[0]
        shard.tick()  // the joins' deltas
        for client in [alice, bob] { _ = try client.frames() }
        alice.receive(#"{"t":"presence","doc":"d","state":{"x":41}}"#)
        shard.tick()
        // Not `bob.frames()`, which runs the loop first: the delta must be on bob's channel already.
        var pending: [UInt8] = []
        let frames = try Self.written(bob, pending: &pending)
        #expect(frames.contains { $0.text.contains(#""t":"presence""#) && $0.text.contains(#""x":41"#) }, "\(frames.map(\.text))")
    }

    @Test func anotherLoopGetsOneHopForAllOfThePhasesDocs() throws {
        let fixture = try ConnectionLayerTests.Fixture { $0.tickPhases = 1 }
        let otherLoop = EmbeddedEventLoop()
        defer { try? otherLoop.syncShutdownGracefully() }
        // Two docs, two members each, every member on the other loop (the shard's loop has none).
        let members = try (0..<4).map { try Client(id: UInt64(10 + $0), user: "m\($0)", loop: otherLoop, dependencies: fixture.dependencies) }
        defer { for member in members { _ = try? member.channel.finish(acceptAlreadyClosed: true) } }
        for (index, member) in members.enumerated() { member.receive(#"{"t":"join","doc":"doc\#(index % 2)"}"#) }
        fixture.loop.run()
        let shard = fixture.shards.all[0]
        shard.tick()
        otherLoop.run()
        for member in members { _ = try member.frames() }
        members[0].receive(#"{"t":"presence","doc":"doc0","state":{"x":1}}"#)
        members[1].receive(#"{"t":"presence","doc":"doc1","state":{"x":2}}"#)
        fixture.loop.run()
        let before = Self.deliveryRecords(fixture.metrics)
        shard.tick()
        otherLoop.run()
        // One hop to the other loop with both docs' deltas (one hop per doc made this 2).
        #expect(Self.deliveryRecords(fixture.metrics) - before == 1)
        // And every member got its doc's delta.
        #expect(try members[2].frames().contains { $0.text.contains(#""x":1"#) })
        #expect(try members[3].frames().contains { $0.text.contains(#""x":2"#) })
    }
}
