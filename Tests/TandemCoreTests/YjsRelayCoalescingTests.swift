import Testing
import TandemYjs

@testable import TandemCore

/// `YjsRoomMachine` with `coalesceRelays` (`--yjs-relay-ms` > 0): updates applied while a relay is pending go
/// out as one merged update, in the room's order, and never after a message to one member that assumes them.
@Suite struct YjsRelayCoalescingTests {
    final class Member {}
    let objects = [Member(), Member()]
    var alice: ObjectIdentifier { ObjectIdentifier(objects[0]) }
    var bob: ObjectIdentifier { ObjectIdentifier(objects[1]) }

    func liveRoom() -> YjsRoomMachine {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5, coalesceRelays: true)
        _ = room.join(alice)
        _ = room.loaded(.success(YjsLoadedRoom(seq: 0, base: 0, snapshot: nil, entries: [])))
        return room
    }

    static func typing(_ client: UInt64, _ clock: Int, _ text: String) -> [UInt8] {
        YjsRoomMachineTests.typing(client: client, clock: clock, text)
    }

    @Test func updatesAppliedBeforeTheFlushGoOutAsOneMergedUpdateWithTheOldestAppendTime() throws {
        var room = liveRoom()
        let updates = [Self.typing(1, 0, "a"), Self.typing(2, 0, "b"), Self.typing(1, 1, "c")]
        // The first asks for a flush; the others join its batch.
        let result1 = room.published(YjsPublishedUpdate(seq: 1, appendedAtMs: 500, update: updates[0]))
        #expect(result1 == [.scheduleRelay])
        let result2 = room.published(YjsPublishedUpdate(seq: 2, appendedAtMs: 400, update: updates[1]))
        #expect(result2.isEmpty)
        let result3 = room.published(YjsPublishedUpdate(seq: 3, appendedAtMs: nil, update: updates[2]))
        #expect(result3.isEmpty)
        let merged = Yjs.mergeUpdates(try updates.map { try YUpdate(decoding: $0) })
        let result4 = room.flushRelay()
        #expect(result4 == [.relay(.update(merged.encoded()), appendedAtMs: 400), .count(.relayCoalesced(updates: 3))])
        // Everything once: nothing left, and the merged update holds every struct of the three.
        let result5 = room.flushRelay()
        #expect(result5.isEmpty)
        #expect(YStateVector(fromUpdate: merged).clocks == [1: 2, 2: 1])
        // A batch of one goes out as it came (not re-encoded).
        let result6 = room.published(YjsPublishedUpdate(seq: 4, appendedAtMs: 9, update: Self.typing(2, 1, "d")))
        #expect(result6 == [.scheduleRelay])
        let result7 = room.flushRelay()
        #expect(result7 == [.relay(.update(Self.typing(2, 1, "d")), appendedAtMs: 9)])
    }

    @Test func aStep2OrStep1ToOneMemberFirstFlushesTheBatchSoItNeverPrecedesAnUpdateItHolds() throws {
        var room = liveRoom()
        let update = Self.typing(5, 0, "x")
        let result8 = room.published(YjsPublishedUpdate(seq: 1, appendedAtMs: 1, update: update))
        #expect(result8 == [.scheduleRelay])
        // Alice's step 2 is computed from a document that has the update: she gets the update first.
        let answer = room.step1(alice, stateVector: YStateVector())
        #expect(answer.first == .relay(.update(update), appendedAtMs: 1))
        #expect(answer.count == 2)
        // Bob joins while another update waits: the relay goes first, then his step 1 that counts it.
        _ = room.published(YjsPublishedUpdate(seq: 2, appendedAtMs: 2, update: Self.typing(5, 1, "y")))
        let greeting = room.join(bob)
        #expect(greeting == [
            .relay(.update(Self.typing(5, 1, "y")), appendedAtMs: 2),
            .send(member: bob, .syncStep1(stateVector: YStateVector(entries: [.init(client: 5, clock: 2)]).encoded())),
        ])
        // The flush scheduled for it finds nothing left.
        let result9 = room.flushRelay()
        #expect(result9.isEmpty)
    }

    @Test func aFullBatchFlushesAtOnce() throws {
        var room = liveRoom()
        var actions: [YjsRoomAction] = []
        for k in 0..<YjsRoomMachine.maxCoalescedUpdates {
            actions += room.published(YjsPublishedUpdate(seq: Int64(k + 1), appendedAtMs: nil, update: Self.typing(3, k, "k")))
        }
        let relays = actions.filter { if case .relay = $0 { true } else { false } }
        #expect(relays.count == 1)
        #expect(actions.contains(.count(.relayCoalesced(updates: YjsRoomMachine.maxCoalescedUpdates))))
        let result10 = room.flushRelay()
        #expect(result10.isEmpty)
    }

    @Test func withoutCoalescingEachUpdateIsRelayedAsItIsApplied() {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5)
        _ = room.join(alice)
        _ = room.loaded(.success(YjsLoadedRoom(seq: 0, base: 0, snapshot: nil, entries: [])))
        let update = Self.typing(1, 0, "a")
        let result11 = room.published(YjsPublishedUpdate(seq: 1, appendedAtMs: 3, update: update))
        #expect(result11 == [.relay(.update(update), appendedAtMs: 3)])
    }
}
