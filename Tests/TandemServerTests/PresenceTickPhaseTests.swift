import NIOCore
@testable import TandemServer
import Testing

/// `--tick-phases` (issue 14): a shard's docs are ticked in groups spread over `--tick-ms`, each doc still
/// once per tick, so their deltas do not all go out in one burst. On the embedded loop, whose clock the
/// test moves phase by phase.
@Suite struct PresenceTickPhaseTests {
    @Test func eachDocIsTickedOncePerTickInItsOwnPhase() throws {
        let phases = 5
        let fixture = try ConnectionLayerTests.Fixture {
            $0.tickMs = 50
            $0.tickPhases = phases
        }
        let clients = [fixture.client] + (try (2...phases).map { try fixture.addClient(id: UInt64($0), user: "u\($0)") })
        for (index, client) in clients.enumerated() { client.receive(#"{"t":"join","doc":"doc\#(index)"}"#) }
        let shard = fixture.shards.all[0]
        shard.start()
        let step = TimeAmount.milliseconds(50 / Int64(phases))
        // The first tick gives every doc its phase (round robin) and sends the joins' deltas.
        fixture.loop.advanceTime(by: .milliseconds(50))
        for client in clients { _ = try client.frames() }
        var phaseOf: [Int: Int] = [:]  // client → the step of the tick its delta came in
        for round in 0..<3 {
            for (index, client) in clients.enumerated() {
                client.receive(#"{"t":"presence","doc":"doc\#(index)","state":{"n":\#(round)}}"#)
            }
            var delivered: [Int] = []
            for stepIndex in 0..<phases {
                fixture.loop.advanceTime(by: step)
                let got = try clients.indices.filter { index in
                    try clients[index].frames().contains { $0.text.contains(#""t":"presence""#) && $0.text.contains(#""n":\#(round)"#) }
                }
                // One doc per phase: the tick's deltas come in `phases` groups, not at once.
                #expect(got.count == 1, "round \(round), step \(stepIndex): deltas for \(got)")
                for index in got {
                    delivered.append(index)
                    if round == 0 { phaseOf[index] = stepIndex }
                    // Each doc keeps its phase from tick to tick.
                    #expect(phaseOf[index] == stepIndex, "doc\(index) moved from step \(phaseOf[index] ?? -1) to \(stepIndex)")
                }
            }
            // Every doc once per tick.
            #expect(delivered.sorted() == Array(clients.indices), "round \(round): \(delivered)")
        }
    }

    @Test func onePhaseTicksEveryDocAtOnce() throws {
        let fixture = try ConnectionLayerTests.Fixture {
            $0.tickMs = 50
            $0.tickPhases = 1
        }
        let clients = [fixture.client] + (try (2...4).map { try fixture.addClient(id: UInt64($0), user: "u\($0)") })
        for (index, client) in clients.enumerated() { client.receive(#"{"t":"join","doc":"doc\#(index)"}"#) }
        fixture.shards.all[0].start()
        fixture.loop.advanceTime(by: .milliseconds(50))
        for client in clients { _ = try client.frames() }
        for (index, client) in clients.enumerated() { client.receive(#"{"t":"presence","doc":"doc\#(index)","state":{"n":7}}"#) }
        fixture.loop.advanceTime(by: .milliseconds(49))
        for client in clients { #expect(try !client.frames().contains { $0.text.contains(#""n":7"#) }) }
        fixture.loop.advanceTime(by: .milliseconds(1))
        for client in clients { #expect(try client.frames().contains { $0.text.contains(#""n":7"#) }) }
    }

    @Test func moreTickPhasesThanMillisecondsAreRefused() {
        let rule = ServerConfiguration.rules.first { $0.summary.contains("--tick-phases") }
        var config = ServerConfiguration(nodeID: "n", redisURL: "redis://127.0.0.1:1")
        config.tickMs = 10
        config.tickPhases = 11
        #expect(rule?.holds(config) == false)
        config.tickPhases = 10
        #expect(rule?.holds(config) == true)
    }
}
