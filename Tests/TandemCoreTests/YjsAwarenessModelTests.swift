import Testing
import TandemYjs

@testable import TandemCore

/// `YjsAwareness` alone (pure): ownership, y-protocols' clock rules, removals, what each drain hands out.
@Suite struct YjsAwarenessModelTests {
    final class Member {}
    // Kept alive: an ObjectIdentifier of a freed object may be reused for the next one.
    let members = [Member(), Member()]
    var alice: ObjectIdentifier { ObjectIdentifier(members[0]) }
    var bob: ObjectIdentifier { ObjectIdentifier(members[1]) }

    private func entry(_ clientID: UInt64, _ clock: UInt64, _ json: String = #"{"a":1}"#) -> YAwarenessUpdate.Entry {
        .init(clientID: clientID, clock: clock, stateJSON: json)
    }

    @Test func changesOfSeveralClientsGoOutAsOneUpdateAndOwnChangesSeparately() {
        var model = YjsAwareness()
        #expect(model.receive([entry(1, 0)], from: alice) == 0)
        #expect(model.receive([entry(2, 3)], from: bob) == 0)
        model.receive([entry(3, 1)], fromNode: "other", nowMs: 0)
        let (broadcast, own) = model.drain()
        #expect(broadcast?.entries.map(\.clientID) == [1, 2, 3])
        #expect(own.map(\.clientID) == [1, 2])
        #expect(model.drain().broadcast == nil)
        #expect(model.localCount == 2)
        #expect(model.states().entries.count == 3)
    }

    @Test func onlyNewerClocksApplyAndOnlyTheOwnerMayChangeAnEntry() {
        var model = YjsAwareness()
        _ = model.receive([entry(1, 5)], from: alice)
        _ = model.drain()
        // Older or equal clock: ignored (y-protocols). Someone else: refused.
        #expect(model.receive([entry(1, 4, #"{"old":1}"#), entry(1, 5, #"{"same":1}"#)], from: alice) == 0)
        #expect(model.drain().broadcast == nil)
        // An echo (y-websocket's provider sends back what it hears) is dropped silently; a newer clock from
        // someone else is a takeover, refused.
        #expect(model.receive([entry(1, 5)], from: bob) == 0)
        #expect(model.receive([entry(1, 9, #"{"mallory":1}"#)], from: bob) == 1)
        #expect(model.drain().broadcast == nil)
        // A removal at the same clock applies.
        _ = model.receive([entry(1, 5, "null")], from: alice)
        #expect(model.drain().broadcast?.entries == [entry(1, 5, "null")])
        #expect(model.states().entries.isEmpty)
        // Another node cannot take over a local entry either.
        _ = model.receive([entry(4, 1)], from: alice)
        model.receive([entry(4, 7)], fromNode: "other", nowMs: 0)
        #expect(model.drain().broadcast?.entries == [entry(4, 1)])
    }

    @Test func aConnectionAnnouncesAtMostALimitedNumberOfClients() {
        var model = YjsAwareness()
        let many = (0..<UInt64(YjsAwareness.maxClientsPerConnection + 3)).map { entry(100 + $0, 0) }
        #expect(model.receive(many, from: alice) == 3)
        #expect(model.localCount == YjsAwareness.maxClientsPerConnection)
    }

    @Test func aLeavingMemberOrASilentNodeIsRemovedWithClockPlusOne() {
        var model = YjsAwareness()
        _ = model.receive([entry(1, 2), entry(2, 0)], from: alice)
        model.receive([entry(3, 6)], fromNode: "n2", nowMs: 1_000)
        _ = model.drain()
        model.memberLeft(alice)
        let left = model.drain()
        #expect(left.broadcast?.entries == [entry(1, 3, "null"), entry(2, 1, "null")])
        #expect(left.own == left.broadcast?.entries)
        #expect(model.localCount == 0)

        #expect(model.silentNodes(nowMs: 2_000, ttlMs: 2_000).isEmpty)
        model.receive([], fromNode: "n2", nowMs: 2_500)  // heartbeat
        #expect(model.silentNodes(nowMs: 4_000, ttlMs: 2_000).isEmpty)
        #expect(model.silentNodes(nowMs: 4_600, ttlMs: 2_000) == ["n2"])
        model.nodesGone(["n2"])
        let gone = model.drain()
        #expect(gone.broadcast?.entries == [entry(3, 7, "null")])
        // Another node's removal is not this node's to publish.
        #expect(gone.own.isEmpty)
        #expect(!model.hasRemote)
    }
}
