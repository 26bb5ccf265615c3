import Testing
@testable import TandemCore

@Suite struct PresenceDocTests {
    var settings = PresenceSettings(nodeID: "n1")

    func entry(_ sid: String, node: String = "n1", role: Role = .editor, v: UInt64 = 1, x: Int = 0) -> PresenceEntry {
        PresenceEntry(sid: sid, user: "u-\(sid)", name: sid, role: role, node: node, version: v, state: .object(["x": .number(x)]))
    }

    @Test func coalescesChangesWithinATick() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        #expect(doc.offerUpdate(sid: "a", state: .object(["x": .number(1)]), nowMs: 0) == .accepted)
        #expect(doc.offerUpdate(sid: "a", state: .object(["x": .number(2)]), nowMs: 1) == .accepted)
        let tick = doc.tick(nowMs: 50)
        #expect(tick.delta?.joined.map(\.sid) == ["a"])
        #expect(tick.delta?.joined.first?.state == .object(["x": .number(2)]))
        #expect(tick.delta?.updated.isEmpty == true)
        // Written to Redis in full the first time, with a refresh and a publish.
        #expect(tick.write?.full == true)
        #expect(tick.write?.refresh == true)
        #expect(tick.write?.upserts.map(\.sid) == ["a"])

        _ = doc.offerUpdate(sid: "a", state: .object(["x": .number(3)]), nowMs: 60)
        let second = doc.tick(nowMs: 100)
        #expect(second.delta?.updated.map(\.sid) == ["a"])
        #expect(second.write?.full == false)
        #expect(second.write?.refresh == false)
        #expect(doc.tick(nowMs: 150).delta == nil)
    }

    @Test func joinThenLeaveInOneTickIsInvisible() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.join(entry("b"))
        doc.leave(sid: "b")
        let tick = doc.tick(nowMs: 50)
        #expect(tick.delta == nil)
        #expect(tick.write?.deletes == ["b"])
    }

    @Test func refreshesOnSchedule() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        #expect(doc.tick(nowMs: 100).write == nil)
        #expect(doc.tick(nowMs: 500).write?.refresh == true)
        #expect(doc.tick(nowMs: 500).write == nil)
    }

    @Test func rateLimitDefersTheLatestState() {
        var settings = settings
        settings.rate = 20
        settings.burst = 1
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        var outcomes: [PresenceUpdateOutcome: Int] = [:]
        for i in 0..<100 {
            outcomes[doc.offerUpdate(sid: "a", state: .object(["x": .number(i)]), nowMs: 1000 + UInt64(i)), default: 0] += 1
        }
        // One from the burst, one more as the bucket refills over the 100 ms; the rest wait.
        #expect(outcomes[.accepted] == 2)
        #expect(outcomes[.rateLimited] == 98)
        // The last state arrives once the rate allows it.
        let tick = doc.tick(nowMs: 1150)
        #expect(tick.delta?.updated.first?.state == .object(["x": .number(99)]))
    }

    @Test func updatesOfUnknownSessionsAreRefused() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        #expect(doc.offerUpdate(sid: "zz", state: .object([:]), nowMs: 0) == .notJoined)
    }

    @Test func detachedSessionsExpireAfterTTLUnlessResumed() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        doc.join(entry("b"))
        _ = doc.tick(nowMs: 0)
        doc.detach(sid: "a", nowMs: 100)
        doc.detach(sid: "b", nowMs: 100)
        #expect(doc.tick(nowMs: 1000).delta == nil)
        // b resumes: same sid, next version, nobody sees a leave or a join.
        doc.join(entry("b", v: 2, x: 5))
        let tick = doc.tick(nowMs: 2100)
        #expect(tick.expired == 1)
        #expect(tick.delta?.left == ["a"])
        #expect(tick.delta?.joined.isEmpty == true)
        #expect(tick.delta?.updated.map(\.sid) == ["b"])
    }

    @Test func mergesOtherNodesAndIgnoresItsOwnEcho() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.apply(.presence(node: "n1", upserts: [entry("a", v: 9)], removals: [], full: false))
        doc.apply(.presence(node: "n2", upserts: [entry("r", node: "n2")], removals: [], full: false))
        var tick = doc.tick(nowMs: 50)
        #expect(tick.delta?.joined.map(\.sid) == ["r"])
        #expect(doc.view["a"]?.version == 1)
        // Stale versions are ignored; removals only apply to the sender's own sessions.
        doc.apply(.presence(node: "n2", upserts: [entry("r", node: "n2", v: 0)], removals: ["a"], full: false))
        #expect(doc.tick(nowMs: 100).delta == nil)
        doc.apply(.presence(node: "n2", upserts: [], removals: ["r"], full: false))
        tick = doc.tick(nowMs: 150)
        #expect(tick.delta?.left == ["r"])
        // Nothing of another node's is ever written by this one.
        #expect(tick.write == nil)
    }

    @Test func goneNodesLoseAllTheirSessions() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.apply(.presence(node: "n2", upserts: [entry("r1", node: "n2"), entry("r2", node: "n2")], removals: [], full: false))
        doc.apply(.presence(node: "n3", upserts: [entry("s", node: "n3")], removals: [], full: false))
        _ = doc.tick(nowMs: 0)
        let effect = doc.apply(.nodesGone(nodes: ["n2"]))
        #expect(effect.expired == 2)
        #expect(Set(doc.tick(nowMs: 50).delta?.left ?? []) == ["r1", "r2"])
    }

    @Test func ownExpiryOrFullFlagForcesReRegistration() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.apply(.nodesGone(nodes: ["n1"]))
        let tick = doc.tick(nowMs: 50)
        #expect(tick.write?.full == true)
        #expect(tick.write?.publish == .presence(node: "n1", upserts: [doc.view["a"]!], removals: [], full: true))
        #expect(tick.delta == nil)
    }

    @Test func fullMessageDropsEntriesTheNodeNoLongerHas() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.apply(.presence(node: "n2", upserts: [entry("r1", node: "n2"), entry("r2", node: "n2")], removals: [], full: false))
        _ = doc.tick(nowMs: 0)
        doc.apply(.presence(node: "n2", upserts: [entry("r2", node: "n2")], removals: [], full: true))
        #expect(doc.tick(nowMs: 50).delta?.left == ["r1"])
    }

    @Test func resumeOnAnotherNodeHandsOverWithoutALeave() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.detach(sid: "a", nowMs: 10)
        let effect = doc.apply(.presence(node: "n2", upserts: [entry("a", node: "n2", v: 2)], removals: [], full: false))
        #expect(effect.takenOver == ["a"])
        let tick = doc.tick(nowMs: 50)
        #expect(tick.delta?.updated.map(\.node) == ["n2"])
        #expect(tick.delta?.left.isEmpty == true)
        // n1 deletes its copy without telling the others to remove the session.
        #expect(tick.write?.deletes == ["a"])
        #expect(tick.write?.publish == nil)
        #expect(doc.tick(nowMs: 3000).expired == 0)
    }

    @Test func reconcileAddsMissingRemovesGhostsAndRespectsNewerNews() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        doc.apply(.presence(node: "n2", upserts: [entry("ghost", node: "n2")], removals: [], full: false))
        _ = doc.tick(nowMs: 0)
        let seq = doc.currentEventSeq
        // News after the snapshot was requested: must survive the (older) snapshot.
        doc.apply(.presence(node: "n3", upserts: [entry("fresh", node: "n3")], removals: [], full: false))
        let corrections = doc.reconcile(snapshot: [entry("a"), entry("missed", node: "n2")], requestedAtSeq: seq)
        #expect(corrections == 2)
        let tick = doc.tick(nowMs: 50)
        #expect(Set(tick.delta?.joined.map(\.sid) ?? []) == ["missed", "fresh"])
        #expect(tick.delta?.left == ["ghost"])
        #expect(tick.write == nil)
    }

    @Test func reconcileRewritesOwnSessionsMissingFromRedis() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.reconcile(snapshot: [], requestedAtSeq: doc.currentEventSeq)
        #expect(doc.tick(nowMs: 50).write?.full == true)
    }

    @Test func largeDocsGiveViewersMembershipOnlyOncePerSecond() {
        var settings = settings
        settings.largeDocViewers = 2
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("e"))
        for i in 0..<3 { doc.join(entry("v\(i)", role: .viewer)) }
        var tick = doc.tick(nowMs: 0)
        #expect(doc.isLarge)
        // The tick that makes the doc large still reaches viewers; later ones do not.
        #expect(tick.viewersGetDelta)
        #expect(tick.delta?.joined.count == 4)
        // Viewers' own states are not broadcast; editors' are.
        #expect(doc.offerUpdate(sid: "v0", state: .object(["x": .number(1)]), nowMs: 10) == .suppressed)
        #expect(doc.offerUpdate(sid: "e", state: .object(["x": .number(1)]), nowMs: 10) == .accepted)
        doc.join(entry("v3", role: .viewer))
        tick = doc.tick(nowMs: 50)
        #expect(tick.viewersGetDelta == false)
        #expect(tick.delta?.updated.map(\.sid) == ["e"])
        #expect(tick.delta?.joined.map(\.sid) == ["v3"])
        #expect(tick.viewerDelta == nil)
        doc.leave(sid: "v1")
        tick = doc.tick(nowMs: 1000)
        #expect(tick.viewerDelta?.joined.map(\.sid) == ["v3"])
        #expect(tick.viewerDelta?.left == ["v1"])
        #expect(tick.viewerDelta?.updated.isEmpty == true)
        // Back to small: viewers get a catch-up and then the full deltas again.
        doc.leave(sid: "v2")
        doc.leave(sid: "v3")
        tick = doc.tick(nowMs: 1100)
        #expect(!doc.isLarge)
        #expect(tick.viewersGetDelta)
        #expect(Set(tick.viewerDelta?.updated.map(\.sid) ?? []) == ["e", "v0"])
        #expect(Set(tick.viewerDelta?.left ?? []) == ["v2", "v3"])
    }

    @Test func sessionsListedToAJoinerAndGoneBeforeTheTickAreReportedLeft() {
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("a"))
        _ = doc.tick(nowMs: 0)
        doc.join(entry("b"))
        #expect(Set(doc.presenceList().map(\.sid)) == ["a", "b"])
        doc.leave(sid: "b")
        #expect(doc.tick(nowMs: 50).delta?.left == ["b"])
    }

    @Test func pendingPresenceMergesForSlowConsumers() {
        var pending = PendingPresence()
        pending.merge(PresenceDelta(doc: "d", joined: [entry("a")], updated: [entry("b", v: 2)], left: ["c"]))
        pending.merge(PresenceDelta(doc: "d", joined: [entry("c", v: 3)], updated: [entry("a", v: 2), entry("b", v: 3)], left: []))
        pending.merge(PresenceDelta(doc: "d", joined: [entry("x")], updated: [], left: ["b"]))
        pending.merge(PresenceDelta(doc: "d", joined: [], updated: [], left: ["x"]))
        let merged = pending.drain(doc: "d")
        #expect(merged?.joined.map(\.sid) == ["a"])
        #expect(merged?.joined.first?.version == 2)
        #expect(merged?.updated.map(\.sid) == ["c"])
        // x joined and left while pending: still sent as left (the client may know it from a `joined` list).
        #expect(merged?.left == ["b", "x"])
        #expect(pending.isEmpty)
    }

    @Test func nodeMessagesRoundTrip() {
        let messages: [NodeMessage] = [
            .presence(node: "n1", upserts: [entry("a"), entry("b", role: .viewer)], removals: ["c"], full: false),
            .presence(node: "n1", upserts: [], removals: [], full: true),
            .nodesGone(nodes: ["n2", "n3"]),
            .commit(CommitNotice(clock: 7, ops: .object(["r": .array([.string("remove")])]), by: "s", node: "n1", pushID: .number("3"), committedAtMs: 99)),
        ]
        for message in messages { #expect(NodeMessage.decode(message.encode()) == message) }
        #expect(NodeMessage.decode(Array("{}".utf8)) == nil)
    }

    /// A Redis write splices each upsert from the node message it publishes (issue 14): the ranges must
    /// hold exactly each entry's encoding, in order, whatever the entries, removals and `full`.
    @Test func aPresenceMessageLocatesEachUpsertsEncoding() {
        let upserts = [
            entry("a"), entry("b", role: .viewer, v: 12_345), entry("c", x: -7),
            PresenceEntry(sid: "q\"s", user: "ü", name: "N\n", role: .editor, node: "n1", version: 1, state: .object(["k": .string("\u{1}")])),
        ]
        for (removals, full) in [([], false), (["gone", "x\"y"], false), ([], true)] {
            let message = NodeMessage.presence(node: "n1", upserts: upserts, removals: removals, full: full)
            var ranges: [Range<Int>]?
            let bytes = message.encode(upsertRanges: &ranges)
            #expect(bytes == message.encode())
            #expect(ranges?.count == upserts.count)
            for (entry, range) in zip(upserts, ranges ?? []) { #expect(Array(bytes[range]) == entry.encoded) }
        }
        var ranges: [Range<Int>]?
        _ = NodeMessage.nodesGone(nodes: ["n2"]).encode(upsertRanges: &ranges)
        #expect(ranges == nil)
    }
}

@Suite struct NodeMessagePrefixTests {
    @Test func ownPresenceMessagesStartWithTheNodePrefix() {
        let entry = PresenceEntry(sid: "s", user: "u", name: "n", role: .editor, node: "n1", version: 1, state: .object([:]))
        for full in [false, true] {
            let bytes = NodeMessage.presence(node: "n1", upserts: [entry], removals: [], full: full).encode()
            #expect(bytes.starts(with: NodeMessage.presencePrefix(node: "n1")))
            #expect(!bytes.starts(with: NodeMessage.presencePrefix(node: "n10")))
        }
        #expect(!NodeMessage.nodesGone(nodes: ["n1"]).encode().starts(with: NodeMessage.presencePrefix(node: "n1")))
    }
}

@Suite struct PresenceHoldTests {
    @Test func heldDetachedSessionsOutliveTheTTLAndLiveOnesAreUntouched() {
        var doc = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n1"))
        for sid in ["a", "b"] {
            doc.join(PresenceEntry(sid: sid, user: sid, name: sid, role: .editor, node: "n1", version: 1, state: .object([:])))
        }
        _ = doc.tick(nowMs: 0)
        doc.detach(sid: "a", nowMs: 100)
        #expect(doc.holdDetached(untilMs: 30_000) == 1)
        #expect(doc.tick(nowMs: 5_000).expired == 0)
        #expect(doc.isLocal("b") && !doc.isDetached("b"))
        #expect(doc.tick(nowMs: 30_000).expired == 1)
        // A longer grace given at detach time works the same way.
        doc.detach(sid: "b", nowMs: 30_000, graceMs: 10_000)
        #expect(doc.tick(nowMs: 35_000).expired == 0)
        #expect(doc.tick(nowMs: 40_000).expired == 1)
    }
}
