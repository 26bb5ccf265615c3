import Testing
@testable import TandemCore

/// Issue 11 item 4: another node's delta goes to members at once (`PresenceDoc.receive`), within a budget
/// of two forwards per node per tick (burst 4), and never to viewers of a large doc.
@Suite struct PresenceForwardingTests {
    var settings: PresenceSettings = {
        var settings = PresenceSettings(nodeID: "n1")
        settings.tickMs = 50
        return settings
    }()

    func entry(_ sid: String, node: String = "n1", role: Role = .editor, v: UInt64 = 1, x: Int = 0) -> PresenceEntry {
        PresenceEntry(sid: sid, user: "u-\(sid)", name: sid, role: role, node: node, version: v, state: .object(["x": .number(x)]))
    }

    func update(_ node: String, _ upserts: [PresenceEntry], removals: [String] = [], full: Bool = false) -> NodeMessage {
        .presence(node: node, upserts: upserts, removals: removals, full: full)
    }

    @Test func anotherNodesChangesGoOutAtOnceAndOnlyThey() throws {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.receive(update("n2", [entry("r", node: "n2")]), nowMs: 0)
        _ = doc.tick(nowMs: 0)
        // A local change waits for the tick; the remote one is forwarded without it.
        #expect(doc.offerUpdate(sid: "a", state: .object(["x": .number(1)]), nowMs: 10) == .accepted)
        let effect = doc.receive(update("n2", [entry("r", node: "n2", v: 2, x: 7)]), nowMs: 60)
        let forward = try #require(effect.forward)
        #expect(forward.delta?.updated.map(\.sid) == ["r"])
        #expect(forward.delta?.updated.first?.state == .object(["x": .number(7)]))
        #expect(forward.delta?.joined.isEmpty == true)
        #expect(forward.write == nil && forward.viewerDelta == nil && forward.viewersGetDelta)
        #expect(!effect.forwardDeferred)
        // The tick does not repeat it, and still carries the local change.
        let tick = doc.tick(nowMs: 100)
        #expect(tick.delta?.updated.map(\.sid) == ["a"])
        #expect(tick.delta?.joined.isEmpty == true)
    }

    @Test func joinsAndLeavesAreForwardedToo() throws {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        #expect(try #require(doc.receive(update("n2", [entry("r", node: "n2")]), nowMs: 10).forward).delta?.joined.map(\.sid) == ["r"])
        #expect(try #require(doc.receive(update("n2", [], removals: ["r"]), nowMs: 100).forward).delta?.left == ["r"])
        // A full message's implicit removals as well.
        _ = doc.receive(update("n3", [entry("s1", node: "n3"), entry("s2", node: "n3")]), nowMs: 200)
        let full = try #require(doc.receive(update("n3", [entry("s2", node: "n3")], full: true), nowMs: 300).forward)
        #expect(full.delta?.left == ["s1"])
        #expect(full.delta?.updated.isEmpty == true)
        #expect(doc.tick(nowMs: 350).delta == nil)
    }

    @Test func aSessionListedToAJoinerAndRemovedByAnotherNodeIsForwardedAsLeft() throws {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        // Only over the budget: the message stays for the tick.
        for sid in ["r", "q", "o", "n"] { _ = doc.receive(update("n2", [entry(sid, node: "n2")]), nowMs: 10) }
        let deferred = doc.receive(update("n2", [entry("p", node: "n2")]), nowMs: 10)
        #expect(deferred.forward == nil && deferred.forwardDeferred)
        // A joiner is listed p before anyone was told of it; p leaves: the forward must say so.
        #expect(doc.presenceList().map(\.sid).contains("p"))
        let removal = try #require(doc.receive(update("n2", [], removals: ["p"]), nowMs: 200).forward)
        #expect(removal.delta?.left == ["p"])
        #expect(doc.tick(nowMs: 250).delta == nil)
    }

    @Test func eachNodeGetsTwoForwardsPerTickWithABurstOfFour() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        var forwarded = 0
        for i in 0..<7 {
            let effect = doc.receive(update("n2", [entry("r\(i)", node: "n2")]), nowMs: 10)
            if effect.forward != nil { forwarded += 1 } else { #expect(effect.forwardDeferred) }
        }
        #expect(forwarded == 4)
        // Another node has its own budget.
        #expect(doc.receive(update("n3", [entry("s", node: "n3")]), nowMs: 10).forward != nil)
        // What was over the budget goes out, coalesced, at the tick.
        #expect(Set(doc.tick(nowMs: 50).delta?.joined.map(\.sid) ?? []) == ["r4", "r5", "r6"])
        // One tick later the node may forward two again.
        #expect(doc.receive(update("n2", [entry("r0", node: "n2", v: 2)]), nowMs: 60).forward != nil)
        #expect(doc.receive(update("n2", [entry("r0", node: "n2", v: 3)]), nowMs: 60).forward != nil)
        #expect(doc.receive(update("n2", [entry("r0", node: "n2", v: 4)]), nowMs: 61).forward == nil)
    }

    /// Another node's tick messages come one per tick on average but not evenly: a late tick is followed by
    /// an on-time one, and when this node's loop stalls, the messages pub/sub brought meanwhile are read
    /// together. None of them may wait for this node's tick (with a budget of one per tick, the third of a
    /// bunch did).
    @Test func anotherNodesTicksAreAllForwardedThoughTheyArriveBunched() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        // Arrival times: regular ticks with jitter, then a 150 ms stall whose three messages are read at
        // once, twice in a row, then regular again.
        var arrivals: [UInt64] = []
        var t: UInt64 = 0
        for i in 0..<40 {
            t += i % 2 == 0 ? 20 : 80
            arrivals.append(t)
        }
        for _ in 0..<2 {
            t += 150
            arrivals += [t, t, t]
        }
        for _ in 0..<20 {
            t += 50
            arrivals.append(t)
        }
        for (version, now) in arrivals.enumerated() {
            let effect = doc.receive(update("n2", [entry("r", node: "n2", v: UInt64(version + 1), x: version)]), nowMs: now)
            #expect(effect.forward != nil && !effect.forwardDeferred, "message \(version) at \(now) ms waited for the tick")
        }
    }

    @Test func viewersOfALargeDocGetNoForwards() throws {
        var settings = settings
        settings.largeDocViewers = 2
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("e"))
        for i in 0..<3 { doc.join(entry("v\(i)", role: .viewer)) }
        _ = doc.tick(nowMs: 0)
        #expect(doc.isLarge)
        let forward = try #require(doc.receive(update("n2", [entry("r", node: "n2")]), nowMs: 10).forward)
        #expect(!forward.viewersGetDelta)
        #expect(forward.delta?.joined.map(\.sid) == ["r"])
        // Viewers learn of r at their next membership flush, as before.
        #expect(doc.tick(nowMs: 50).viewerDelta == nil)
        #expect(doc.tick(nowMs: 1000).viewerDelta?.joined.map(\.sid) == ["r"])
    }

    @Test func nothingIsForwardedWhileTheOwnerCannotDeliverOrForItsOwnEcho() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        #expect(doc.receive(update("n1", [entry("a", v: 9)]), nowMs: 10).forward == nil)
        let loading = doc.receive(update("n2", [entry("r", node: "n2")]), nowMs: 10, forwarding: false)
        #expect(loading.forward == nil)
        // `apply` keeps everything for the tick.
        doc.apply(update("n2", [entry("q", node: "n2")]))
        #expect(Set(doc.tick(nowMs: 50).delta?.joined.map(\.sid) ?? []) == ["r", "q"])
        // A stale message changes nothing and forwards nothing.
        #expect(doc.receive(update("n2", [entry("r", node: "n2", v: 0)]), nowMs: 100).forward == nil)
        // Sessions gone with their node wait for the tick (the sweep is this node's own news).
        #expect(doc.receive(.nodesGone(nodes: ["n2"]), nowMs: 110).forward == nil)
        #expect(Set(doc.tick(nowMs: 150).delta?.left ?? []) == ["r", "q"])
    }
}
