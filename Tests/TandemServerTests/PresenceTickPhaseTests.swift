import NIOCore
import NIOEmbedded
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

/// `--presence-stretch-lag-ms` (issue 14): a tick phase that starts late beyond the bound schedules the
/// next two intervals after its work, and counts it; one on time keeps the fixed rate. The embedded loop
/// runs every callback exactly at its deadline, so the lateness is made by hand: the phase is run with a
/// due time in the past.
@Suite struct PresenceTickStretchTests {
    static let ms: UInt64 = 1_000_000

    /// Runs a phase `lateMs` after it was due; returns when the next is due, in ms from now.
    func runPhase(_ shard: DocShard, lateMs: UInt64, on loop: EmbeddedEventLoop) -> Int64 {
        let now = loop.now.uptimeNanoseconds
        shard.confined.value.tickPace.restart(dueNanos: now - lateMs * Self.ms)
        shard.tickPhaseDue()
        return (Int64(shard.confined.value.tickPace.dueNanos) - Int64(now)) / Int64(Self.ms)
    }

    /// A started shard of 50 ms ticks in 5 phases, its loop's clock at 1 s.
    func started(stretchLagMs: Int) throws -> (ConnectionLayerTests.Fixture, DocShard) {
        let fixture = try ConnectionLayerTests.Fixture {
            $0.tickMs = 50
            $0.tickPhases = 5
            $0.presenceStretchLagMs = stretchLagMs
        }
        let shard = fixture.shards.all[0]
        shard.start()
        fixture.loop.advanceTime(by: .milliseconds(1_000))
        return (fixture, shard)
    }

    @Test func aLatePhaseStretchesTheNext() throws {
        let (fixture, shard) = try started(stretchLagMs: 25)
        // On time: the fixed rate (10 ms after the phase was due).
        #expect(runPhase(shard, lateMs: 0, on: fixture.loop) == 10)
        #expect(fixture.metrics.value(of: "tandem_presence_ticks_stretched_total") == 0)
        // 40 ms late: two phase intervals after the work (which took no time on the embedded clock).
        #expect(runPhase(shard, lateMs: 40, on: fixture.loop) == 20)
        #expect(fixture.metrics.value(of: "tandem_presence_ticks_stretched_total") == 1)
    }

    @Test func zeroNeverStretches() throws {
        let (fixture, shard) = try started(stretchLagMs: 0)
        // 40 ms late, not a whole tick: the fixed rate catches up (due 30 ms before now).
        #expect(runPhase(shard, lateMs: 40, on: fixture.loop) == -30)
        #expect(fixture.metrics.value(of: "tandem_presence_ticks_stretched_total") == 0)
    }
}
