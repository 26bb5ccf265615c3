import Testing
@testable import TandemCore

/// One test per bug the libFuzzer harnesses in Fuzz/ found in TandemCore (the crashing input is also
/// kept in the harness's seed corpus, Fuzz/Corpus/<target>/regression-*, so the fuzzer replays it).
@Suite struct FuzzRegressionTests {
    private func entry(_ sid: String, node: String = "n1", role: Role = .editor, v: UInt64 = 1, x: Int = 0) -> PresenceEntry {
        PresenceEntry(sid: sid, user: "u-\(sid)", name: sid, role: role, node: node, version: v, state: .object(["x": .number(x)]))
    }

    // fuzz-doc-replica: `apply` computed `head + 1` and trapped at a head of UInt64.max (a clock key in
    // Redis set by hand; INCR stops at Int64.max).
    @Test func applyAtTheLargestHeadRefusesInsteadOfTrapping() {
        var replica = DocReplica(head: .max, records: ["r": .object([:])], versions: ["r": .max])
        let before = replica
        let wrapped = replica.apply(clock: 0, ops: Ops(["r": .remove]))
        let sameClock = replica.apply(clock: .max, ops: Ops(["r": .remove]))
        #expect(!wrapped && !sameClock)
        #expect(replica == before)
    }

    // fuzz-presence: a session that left and re-joined within one tick came back at version 1 (the shard
    // numbers a join from the view, where it no longer was). Subscribers had been told of version 1, so
    // the tick saw no change and they kept the old state; other nodes still held the old version and
    // ignored the new entry as older.
    @Test func rejoinWithinOneTickReachesSubscribersAndOtherNodes() throws {
        var doc = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n1"))
        var other = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n2"))
        doc.join(entry("a", x: 0))
        let first = doc.tick(nowMs: 0)
        other.apply(try #require(first.write?.publish))

        doc.leave(sid: "a")
        doc.join(entry("a", v: 1, x: 5))
        let second = doc.tick(nowMs: 50)
        let announced = try #require(second.delta?.updated.first ?? second.delta?.joined.first)
        #expect(announced.state == .object(["x": .number(5)]))
        #expect(announced.version == 2)
        other.apply(try #require(second.write?.publish))
        #expect(other.view["a"]?.state == .object(["x": .number(5)]))
    }

    // fuzz-presence: an entry replaced by another node's entry with the same version (a resume elsewhere
    // numbered from a stale view) was not announced: the tick compared versions only.
    @Test func sameVersionFromAnotherNodeIsAnnounced() {
        var doc = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n1"))
        doc.apply(.presence(node: "n2", upserts: [entry("r", node: "n2", v: 5, x: 1)], removals: [], full: false))
        #expect(doc.tick(nowMs: 0).delta?.joined.map(\.sid) == ["r"])
        doc.apply(.presence(node: "n3", upserts: [entry("r", node: "n3", v: 5, x: 2)], removals: [], full: false))
        let delta = doc.tick(nowMs: 50).delta
        #expect(delta?.updated.map(\.node) == ["n3"])
    }

    // fuzz-presence: a subscriber that joined while a session was gone for a moment (removed, and back
    // unchanged before the next tick) never heard of it: the list lacked it and the tick saw no change.
    @Test func sessionMissingFromAListIsSentAgainWhenItIsBack() {
        var doc = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n1"))
        let remote = entry("r", node: "n2", v: 5)
        doc.apply(.presence(node: "n2", upserts: [remote], removals: [], full: false))
        _ = doc.tick(nowMs: 0)
        doc.apply(.presence(node: "n2", upserts: [], removals: ["r"], full: false))
        #expect(doc.presenceList().isEmpty)
        doc.apply(.presence(node: "n2", upserts: [remote], removals: [], full: false))
        #expect(doc.tick(nowMs: 50).delta?.joined == [remote])
    }

    // fuzz-presence: the same for viewers of a large doc, who only get membership flushes.
    @Test func sessionMissingFromAViewersListIsInTheNextFlush() {
        var settings = PresenceSettings(nodeID: "n1")
        settings.largeDocViewers = 0
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("v", role: .viewer))
        _ = doc.tick(nowMs: 0)
        #expect(doc.isLarge)
        doc.leave(sid: "v")
        #expect(doc.presenceList().isEmpty)
        doc.join(entry("v", role: .viewer))
        let flush = doc.tick(nowMs: settings.viewerFlushIntervalMs)
        #expect(flush.viewerDelta?.joined.map(\.sid) == ["v"])
    }

    // fuzz-presence: versions from other nodes were taken up to UInt64.max, where the next local update
    // (`version + 1`) traps. They are capped at 2^53 − 1, the largest integer a JavaScript client reads.
    @Test func entriesAboveTheLargestVersionAreRefused() throws {
        let ok = entry("s", node: "n2", v: PresenceEntry.maxVersion)
        #expect(PresenceEntry(encoded: ok.encoded) == ok)
        let tooBig = entry("s", node: "n2", v: PresenceEntry.maxVersion + 1)
        #expect(PresenceEntry(encoded: tooBig.encoded) == nil)
        let message = NodeMessage.presence(node: "n2", upserts: [tooBig], removals: [], full: false)
        #expect(NodeMessage.decode(message.encode()) == nil)
    }

    // fuzz-client-message: error replies quoted client input without bound — a duplicate key, a field
    // name in an ops path, an op name of one letter with thousands of combining marks (`prefix` counts
    // Characters) — so a 1 MB message could get a 1 MB error back.
    @Test func errorMessagesQuoteClientInputShortly() throws {
        let long = String(repeating: "k", count: 3000)
        var limits = ProtocolLimits()
        limits.maxStateBytes = 1024
        let duplicate = Array("{\"\(long)\":1,\"\(long)\":2}".utf8)
        #expect(throws: ProtocolError.self) { try ClientMessage.decode(duplicate, limits: limits) }
        do {
            _ = try ClientMessage.decode(duplicate, limits: limits)
        } catch {
            #expect(error.message.utf8.count < 400)
        }

        let field = try JSONParser.parse("{\"r\":[\"patch\",{\"\(long)\":[\"bogus\"]}]}")
        #expect(throws: ProtocolError.self) { try Ops(json: field) }
        do { _ = try Ops(json: field) } catch { #expect(error.message.utf8.count < 512) }

        let combining = try JSONParser.parse("{\"r\":[\"x\(String(repeating: "\u{301}", count: 3000))\"]}")
        do { _ = try Ops(json: combining) } catch { #expect(error.message.utf8.count < 512) }
    }

    // fuzz-presence: a slow consumer's pending presence cancelled a `joined` followed by a `left`, but the
    // client knew the session already from its `joined` list (deltas' `joined` are upserts): it kept a
    // ghost of a session that had left.
    @Test func slowConsumerGetsTheLeaveOfASessionFromItsJoinedList() throws {
        var doc = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n1"))
        doc.join(entry("s"))
        let list = doc.presenceList()
        #expect(list.map(\.sid) == ["s"])
        var pending = PendingPresence()
        pending.merge(try #require(doc.tick(nowMs: 0).delta))
        doc.leave(sid: "s")
        pending.merge(try #require(doc.tick(nowMs: 50).delta))
        #expect(pending.drain(doc: "d")?.left == ["s"])
    }

    // fuzz-presence: a subscriber listed while a session's entry was replaced for a moment (a Redis
    // snapshot naming another node) kept that entry once it went back to the announced one before the
    // tick: the tick saw no change.
    @Test func entryListedDifferentlyFromTheAnnouncedOneIsSentAgain() {
        var doc = PresenceDoc(doc: "d", settings: PresenceSettings(nodeID: "n1"))
        let onB = entry("s", node: "n2", v: 3)
        doc.apply(.presence(node: "n2", upserts: [onB], removals: [], full: false))
        _ = doc.tick(nowMs: 0)
        doc.reconcile(snapshot: [entry("s", node: "n3", v: 3)], requestedAtSeq: doc.currentEventSeq, removeMissing: false)
        #expect(doc.presenceList().map(\.node) == ["n3"])
        doc.apply(.presence(node: "n2", upserts: [onB], removals: [], full: false))
        #expect(doc.tick(nowMs: 50).delta?.joined == [onB])
    }

    // fuzz-presence: a viewer that joined a large doc was listed a session its flushes had not announced
    // yet; when that session left and the doc stopped being large before the next flush, the catch-up
    // for viewers did not say so, and the viewer kept a ghost.
    @Test func viewerCatchUpAfterALargeDocSaysWhoLeftSinceItsList() throws {
        var settings = PresenceSettings(nodeID: "n1")
        settings.largeDocViewers = 0
        var doc = PresenceDoc(doc: "d", settings: settings)
        doc.join(entry("v", role: .viewer))
        _ = doc.tick(nowMs: 0)
        #expect(doc.isLarge)
        doc.apply(.presence(node: "n2", upserts: [entry("r", node: "n2")], removals: [], full: false))
        _ = doc.tick(nowMs: 50)
        #expect(Set(doc.presenceList().map(\.sid)) == ["v", "r"])
        doc.apply(.presence(node: "n2", upserts: [], removals: ["r"], full: false))
        _ = doc.tick(nowMs: 100)
        doc.leave(sid: "v")
        let tick = doc.tick(nowMs: 150)
        #expect(!doc.isLarge)
        #expect(tick.viewerDelta?.left.contains("r") == true)
    }
}
