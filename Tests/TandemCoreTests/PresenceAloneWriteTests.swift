import Testing
@testable import TandemCore

/// Issue 14, stop 25: while no other node serves a doc, changed presence states are written to Redis at
/// most every `aloneWriteIntervalMs`, the latest one always; deltas to local members are not delayed.
@Suite struct PresenceAloneWriteTests {
    func entry(_ sid: String, x: Int = 0) -> PresenceEntry {
        PresenceEntry(sid: sid, user: "u-\(sid)", name: sid, role: .editor, node: "n1", version: 1, state: .object(["x": .number(x)]))
    }

    func doc(intervalMs: UInt64 = 250) -> PresenceDoc {
        var settings = PresenceSettings(nodeID: "n1")
        settings.aloneWriteIntervalMs = intervalMs
        settings.refreshIntervalMs = 500
        settings.burst = 100
        settings.rate = 1000
        return PresenceDoc(doc: "d", settings: settings)
    }

    @Test func aloneTheStatesAreWrittenAtMostEveryIntervalAndTheLatestWins() {
        var doc = doc()
        doc.join(entry("a"))
        #expect(doc.tick(nowMs: 0).write?.full == true)
        doc.alone = true
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(1)]), nowMs: 10)
        let first = doc.tick(nowMs: 50)
        // The local delta goes out at once; the write waits.
        #expect(first.delta?.updated.first?.state == .object(["x": .number(1)]))
        #expect(first.write == nil)
        #expect(first.writeDeferred)
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(2)]), nowMs: 60)
        let second = doc.tick(nowMs: 100)
        #expect(second.delta?.updated.first?.state == .object(["x": .number(2)]))
        #expect(second.write == nil)
        // 250 ms after the last write: the latest state, published too (a listener may have come).
        let due = doc.tick(nowMs: 250)
        #expect(due.write?.upserts.map(\.state) == [.object(["x": .number(2)])])
        #expect(due.write?.publish != nil)
        #expect(!due.writeDeferred)
        #expect(doc.tick(nowMs: 300).write == nil)
    }

    @Test func notAloneEveryTickWrites() {
        var doc = doc()
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        for step in 1...5 {
            _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(step)]), nowMs: UInt64(step * 50 - 10))
            let tick = doc.tick(nowMs: UInt64(step * 50))
            #expect(tick.write?.upserts.map(\.state) == [.object(["x": .number(step)])])
            #expect(!tick.writeDeferred)
        }
    }

    @Test func joinsLeavesAndRefreshesAreNotDeferred() {
        var doc = doc()
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.alone = true
        // A leave (with a changed state beside it) is written at the next tick.
        doc.join(entry("b"))
        _ = doc.takeWrite(nowMs: 10)  // a join is written at once (`DocShard.completeJoin`)
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(1)]), nowMs: 20)
        doc.leave(sid: "b")
        let leave = doc.tick(nowMs: 50)
        #expect(leave.write?.deletes == ["b"])
        #expect(leave.write?.upserts.map(\.sid) == ["a"])
        // Within the interval after it: deferred.
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(2)]), nowMs: 60)
        #expect(doc.tick(nowMs: 100).write == nil)
        // Past it: written.
        #expect(doc.tick(nowMs: 300).write?.upserts.map(\.state) == [.object(["x": .number(2)])])
        // The refresh is due 500 ms after the last one (at 0), within the interval after the write at 300:
        // written at once with the changed state.
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(3)]), nowMs: 310)
        #expect(doc.tick(nowMs: 450).write == nil)
        let refresh = doc.tick(nowMs: 500)
        #expect(refresh.write?.refresh == true)
        #expect(refresh.write?.upserts.map(\.state) == [.object(["x": .number(3)])])
        // After a failed write everything is rewritten at once.
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(4)]), nowMs: 510)
        doc.writeFailed()
        #expect(doc.tick(nowMs: 550).write?.full == true)
    }

    @Test func zeroIntervalWritesEveryTickEvenAlone() {
        var doc = doc(intervalMs: 0)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.alone = true
        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(1)]), nowMs: 10)
        #expect(doc.tick(nowMs: 50).write?.upserts.count == 1)
    }
}
