import Testing
@testable import TandemCore

/// Issue 14: inside a doc, sessions are integer handles into one table, and a handle goes to another
/// session once nothing refers to the old one. These pin down that a reused handle starts clean: nothing
/// of the session that held it (entry, what subscribers were told, its version, its deferred state, its
/// pending write, its marks) reaches the new one.
@Suite struct PresenceHandleTests {
    let settings = PresenceSettings(nodeID: "n1")

    func entry(_ sid: String, node: String = "n1", role: Role = .editor, v: UInt64 = 1, x: Int = 0) -> PresenceEntry {
        PresenceEntry(sid: sid, user: "u-\(sid)", name: sid, role: role, node: node, version: v, state: .object(["x": .number(x)]))
    }

    /// Reconciles against a snapshot of exactly what the doc holds, requested now: it changes nothing but
    /// closes the window in which pub/sub news could be newer than a snapshot (the last thing that keeps
    /// a departed session's handle).
    func settle(_ doc: inout PresenceDoc) {
        let seq = doc.currentEventSeq
        doc.reconcile(snapshot: Array(doc.view.values), requestedAtSeq: seq)
    }

    @Test func aLocalSessionsHandleGoesToTheNextSessionWithNothingOfItsOwn() throws {
        var settings = settings
        settings.rate = 20
        settings.burst = 3
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        doc.join(entry("b"))
        _ = doc.tick(nowMs: 0)
        let handle = try #require(doc.handle(of: "b"))
        // b is at version 4 and has a state over the rate waiting when it leaves.
        for x in 1...4 { _ = doc.offerUpdate(sid: "b", state: .object(["x": .number(x)]), nowMs: 10) }
        #expect(doc.entry(of: "b")?.version == 4)
        doc.leave(sid: "b")
        var tick = doc.tick(nowMs: 50)
        #expect(tick.delta?.left == ["b"])
        #expect(tick.write?.deletes == ["b"])
        // Not freed while a snapshot requested before the leave could still name it.
        #expect(doc.handle(of: "b") == handle)
        settle(&doc)
        _ = doc.tick(nowMs: 100)
        #expect(doc.handle(of: "b") == nil)

        let capacity = doc.handleCapacity
        doc.join(entry("c", x: 7))
        #expect(doc.handle(of: "c") == handle, "the free handle is reused")
        #expect(doc.handleCapacity == capacity)
        // c starts at its own version (not above b's departed one) with its own state, and b's deferred
        // state is not applied to it at the tick.
        #expect(doc.entry(of: "c")?.version == 1)
        tick = doc.tick(nowMs: 150)
        #expect(tick.delta?.joined.map(\.sid) == ["c"], "joined, not updated: b's announcement is gone")
        #expect(tick.delta?.joined.first?.version == 1)
        #expect(tick.delta?.joined.first?.state == .object(["x": .number(7)]))
        #expect(tick.delta?.updated.isEmpty == true)
        #expect(tick.delta?.left.isEmpty == true)
        #expect(tick.write?.upserts.map(\.sid) == ["c"])
        #expect(tick.write?.deletes.isEmpty == true, "b's delete is not written again")
        #expect(doc.entry(of: "b") == nil)
        #expect(!doc.isLocal("b"))
        #expect(Set(doc.presenceList().map(\.sid)) == ["a", "c"])
        // c has its own user's bucket: b's spent one is not c's.
        for x in 1...3 { #expect(doc.offerUpdate(sid: "c", state: .object(["x": .number(x)]), nowMs: 150) == .accepted) }
        #expect(doc.offerUpdate(sid: "b", state: .object(["x": .number(9)]), nowMs: 150) == .notJoined)
        #expect(doc.tick(nowMs: 200).delta?.updated.map(\.sid) == ["c"])
    }

    /// A handle held outside the doc (a member's `DocTicket`) may outlive its session: once the handle
    /// went to another session, an update by it must reach the session it names, or none.
    @Test func anUpdateByAHeldHandleReachesOnlyTheSessionItNames() throws {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        doc.join(entry("b"))
        _ = doc.tick(nowMs: 0)
        let heldByB = try #require(doc.localHandle(of: "b"))
        #expect(doc.localHandle(of: "zz") == nil)
        #expect(doc.offerUpdate(handle: heldByB, sid: "b", state: .object(["x": .number(1)]), nowMs: 10) == .accepted)
        #expect(doc.tick(nowMs: 50).delta?.updated.map(\.sid) == ["b"])

        // b leaves; its handle is freed and goes to c.
        doc.leave(sid: "b")
        _ = doc.tick(nowMs: 100)
        settle(&doc)
        _ = doc.tick(nowMs: 150)
        doc.join(entry("c"))
        #expect(doc.handle(of: "c") == heldByB)
        _ = doc.tick(nowMs: 200)
        #expect(doc.offerUpdate(handle: heldByB, sid: "b", state: .object(["x": .number(2)]), nowMs: 210) == .notJoined)
        #expect(doc.entry(of: "c")?.version == 1, "c is untouched")
        // A handle out of range, or another session's, falls back to the session id.
        #expect(doc.offerUpdate(handle: 99, sid: "a", state: .object(["x": .number(3)]), nowMs: 210) == .accepted)
        #expect(doc.offerUpdate(handle: heldByB, sid: "a", state: .object(["x": .number(4)]), nowMs: 210) == .accepted)
        #expect(doc.entry(of: "a")?.version == 3)
        #expect(doc.entry(of: "c")?.version == 1)
        #expect(doc.tick(nowMs: 250).delta?.updated.map(\.sid) == ["a"])
    }

    @Test func anotherNodesSessionsHandleGoesToALocalSessionCleanly() throws {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.apply(.presence(node: "n2", upserts: [entry("r", node: "n2", v: 5)], removals: [], full: false))
        _ = doc.tick(nowMs: 0)
        let handle = try #require(doc.handle(of: "r"))
        doc.apply(.presence(node: "n2", upserts: [], removals: ["r"], full: false))
        #expect(doc.tick(nowMs: 50).delta?.left == ["r"])
        settle(&doc)
        _ = doc.tick(nowMs: 100)
        #expect(doc.handle(of: "r") == nil)

        doc.join(entry("l"))
        #expect(doc.handle(of: "l") == handle)
        let tick = doc.tick(nowMs: 150)
        #expect(tick.delta?.joined.map(\.sid) == ["l"])
        #expect(tick.delta?.left.isEmpty == true)
        // n2's next full message (without r) removes only n2's sessions, and its late removal of r reaches
        // nothing.
        doc.apply(.presence(node: "n2", upserts: [entry("r2", node: "n2")], removals: ["r"], full: true))
        #expect(doc.tick(nowMs: 200).delta?.joined.map(\.sid) == ["r2"])
        #expect(doc.isLocal("l") && doc.entry(of: "l")?.node == "n1")
    }

    @Test func aSessionListedToAJoinerKeepsItsHandleUntilSubscribersHearItLeft() throws {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        // b joins, a subscriber is listed b, b leaves: all before a tick. The tick must still say "left b".
        doc.join(entry("b"))
        let handle = try #require(doc.handle(of: "b"))
        #expect(Set(doc.presenceList().map(\.sid)) == ["a", "b"])
        doc.leave(sid: "b")
        settle(&doc)
        // A join between the leave and the tick may not take b's handle (the tick has yet to report b).
        doc.join(entry("c"))
        #expect(doc.handle(of: "c") != handle)
        let tick = doc.tick(nowMs: 50)
        #expect(tick.delta?.left == ["b"])
        #expect(tick.delta?.joined.map(\.sid) == ["c"])
    }

    @Test func churnReusesHandlesInsteadOfGrowing() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        var now: UInt64 = 0
        for round in 0..<50 {
            for i in 0..<10 { doc.join(entry("s\(round)-\(i)")) }
            _ = doc.tick(nowMs: now)
            now += 50
            for i in 0..<10 { doc.leave(sid: "s\(round)-\(i)") }
            #expect(doc.tick(nowMs: now).delta?.left.count == 10)
            now += 50
            settle(&doc)
        }
        _ = doc.tick(nowMs: now)
        #expect(doc.handleCapacity <= 20, "500 sessions passed through at most 20 handles")
        #expect(doc.view.isEmpty && doc.isIdle)
    }

    @Test func aUserWhoLeavesAndJoinsAgainKeepsTheirSpentBucket() {
        var settings = settings
        settings.rate = 1
        settings.burst = 2
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        for x in 1...2 { #expect(doc.offerUpdate(sid: "a", state: .object(["x": .number(x)]), nowMs: 10) == .accepted) }
        doc.leave(sid: "a")
        _ = doc.tick(nowMs: 50)
        settle(&doc)
        _ = doc.tick(nowMs: 100)
        // The same user on a new session: the rate is per user and doc, not per session or handle.
        doc.join(PresenceEntry(sid: "a2", user: "u-a", name: "a", role: .editor, node: "n1", version: 1, state: .empty))
        #expect(doc.offerUpdate(sid: "a2", state: .object(["x": .number(3)]), nowMs: 110) == .rateLimited)
    }
}
