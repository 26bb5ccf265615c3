import FuzzSupport
import TandemCore

// PresenceDoc (node "A") over a random sequence of events decoded from the fuzzer's bytes: local joins,
// updates, leaves, detaches and storm holds; other nodes' messages (upserts with any version, removals,
// full re-registrations, takeovers of local sessions, nodes gone); Redis reconciles (with current and
// stale sequence numbers); failed writes; ticks with time advancing (time is passed in); subscribers
// joining at any moment (from `presenceList()`), as editors, viewers, or slow consumers that merge
// deltas in PendingPresence and drain later; other nodes' deltas forwarded between ticks (`receive`). Small large-doc thresholds so docs flip between large
// and normal.
//
// Invariants, checked after every event or tick:
// - no entry outlives its TTL: after tick(now), no detached session has a deadline ≤ now (its deadline
//   is `detach` time + grace, extended by `holdDetached`; the documented slack is one tick);
// - replaying the emitted deltas reproduces the view: a subscriber that started empty, and every
//   subscriber that started from `presenceList()`, holds exactly the doc's view (sid → encoded entry)
//   after each tick — viewers of a large doc hold its membership after each viewer flush, and exactly
//   the view whenever the doc is not large; a slow consumer does after draining;
// - rate limits hold: per user, accepted state changes (immediate or deferred) within any window of
//   T ms number at most burst + rate·T/1000;
// - bookkeeping: this node's entries in the view are exactly its local sessions; viewerCount is the
//   number of viewers in the view; a delta names each session once, with its current entry; what the
//   node writes belongs to it; every node message survives encode → decode.

#if canImport(Glibc)
import Glibc
#endif

/// `FUZZ_TRACE=1 fuzz-presence CRASH_FILE` prints the decoded events, to read a crash.
private let tracing = getenv("FUZZ_TRACE") != nil
private func trace(_ line: @autoclosure () -> String) { if tracing { fputs(line() + "\n", stderr) } }

private let nodeID = "A"
private let localSids = ["L0", "L1", "L2", "L3", "S0"]
private let remoteSids = ["R0", "R1", "R2", "S0"]
private let users = ["u0", "u1", "u2"]
private let otherNodes = ["B", "C"]

private final class Subscriber {
    enum Kind { case editor, viewer, slow }
    let kind: Kind
    var view: [String: [UInt8]]
    var pending = PendingPresence()
    var backedUp = false
    init(kind: Kind, view: [String: [UInt8]]) {
        self.kind = kind
        self.view = view
    }

    func apply(_ delta: PresenceDelta) {
        for entry in delta.joined + delta.updated { view[entry.sid] = entry.encoded }
        for sid in delta.left { view.removeValue(forKey: sid) }
    }

    func receive(_ delta: PresenceDelta) {
        if kind == .slow && backedUp { pending.merge(delta) } else { apply(delta) }
    }

    func drain(doc: String) {
        if let merged = pending.drain(doc: doc) { apply(merged) }
        backedUp = false
    }
}

private struct Harness {
    var input: FuzzInput
    var doc: PresenceDoc
    var now: UInt64
    var subscribers: [Subscriber] = []
    /// Deadline of each detached local session, as the harness computes it.
    var deadlines: [String: UInt64] = [:]
    /// Accepted state changes per user (times in ms).
    var accepted: [String: [UInt64]] = [:]
    var savedSeq: UInt64 = 0
    var lastViewerFlush: UInt64 = 0
    var remoteVersions: [String: UInt64] = [:]

    init(input: FuzzInput) {
        self.input = input
        var settings = PresenceSettings(nodeID: nodeID)
        settings.ttlMs = self.input.pick([2000, 50, 1])
        settings.refreshIntervalMs = settings.ttlMs / 4
        (settings.rate, settings.burst) = self.input.pick([(20, 5), (1, 1), (1000, 2), (0.5, 0)])
        settings.largeDocViewers = self.input.pick([0, 1, 2, 100])
        settings.viewerFlushIntervalMs = self.input.pick([1000, 0, 70])
        doc = PresenceDoc(doc: "fuzz", settings: settings)
        now = UInt64(self.input.uint16()) << UInt64(self.input.int(in: 0...24))
        subscribers.append(Subscriber(kind: .editor, view: [:]))
        subscribers.append(Subscriber(kind: .viewer, view: [:]))
    }

    mutating func state() -> PresenceState {
        switch input.int(in: 0...3) {
        case 0: return .object([:])
        case 1: return .object(["c": .array([.number(Int(input.byte())), .number(Int(input.byte()))])])
        case 2: return .object(["s": .string(String(repeating: "😀", count: input.int(in: 0...40)))])
        default: return .object(["n": .number(input.pick(["0", "-1", "1e999", "18446744073709551616"]))])
        }
    }

    mutating func remoteEntry(node: String) -> PresenceEntry {
        let sid = input.pick(remoteSids + localSids.prefix(2))
        let version: UInt64
        switch input.int(in: 0...3) {
        case 0: version = (remoteVersions[sid] ?? 0) &+ 1
        case 1: version = remoteVersions[sid] ?? 0
        case 2: version = UInt64(input.byte())
        default: version = input.pick([0, UInt64.max, UInt64.max - 1, UInt64(Int64.max), 1 << 53])
        }
        remoteVersions[sid] = max(remoteVersions[sid] ?? 0, version)
        return PresenceEntry(
            sid: sid, user: input.pick(users), name: "remote", role: input.bool() ? .editor : .viewer, node: node,
            version: version, state: state())
    }

    mutating func step() {
        defer { trace("  view: \(doc.view.values.map { "\($0.sid)@\($0.node) v\($0.version) \($0.role)" }.sorted()), large \(doc.isLarge)") }
        switch input.int(in: 0...15) {
        case 0, 1:
            let sid = input.pick(localSids)
            let previous = doc.view[sid]
            let entry = PresenceEntry(
                sid: sid, user: previous?.user ?? input.pick(users), name: "local", role: input.bool() ? .editor : .viewer,
                node: nodeID, version: (previous?.version ?? 0) &+ 1, state: input.bool() ? state() : previous?.stateBytes ?? .empty)
            trace("join \(sid) \(entry.user) \(entry.role) v\(entry.version) \(entry.state.serializedString)")
            doc.join(entry)
            deadlines.removeValue(forKey: sid)
            takeWrite()
        case 2, 3:
            let sid = input.pick(localSids)
            let before = doc.view[sid]
            let outcome = doc.offerUpdate(sid: sid, state: state(), nowMs: now)
            trace("update \(sid) at \(now): \(outcome)")
            if outcome == .accepted, let user = before?.user {
                require(doc.view[sid]!.version == before!.version + 1, "an accepted update did not bump the version")
                accepted[user, default: []].append(now)
            }
            if outcome == .notJoined { require(!doc.isLocal(sid) || doc.isDetached(sid), "update of a live session refused") }
        case 4:
            let sid = input.pick(localSids)
            trace("leave \(sid)")
            doc.leave(sid: sid)
            deadlines.removeValue(forKey: sid)
            require(!doc.isLocal(sid), "left session still local")
        case 5:
            let sid = input.pick(localSids)
            guard doc.isLocal(sid) else { return }
            let grace: UInt64? = input.bool() ? nil : UInt64(input.uint16())
            trace("detach \(sid) at \(now), grace \(String(describing: grace))")
            doc.detach(sid: sid, nowMs: now, graceMs: grace)
            // Detaching again restarts the grace from now (the server detaches once per connection).
            deadlines[sid] = now + (grace ?? doc.settings.ttlMs)
        case 6:
            let until = now + UInt64(input.uint16())
            trace("hold detached until \(until)")
            doc.holdDetached(untilMs: until)
            for (sid, deadline) in deadlines where deadline < until { deadlines[sid] = until }
        case 7, 8:
            let node = input.pick(otherNodes + [nodeID])
            let upserts = (0..<input.int(in: 0...3)).map { _ in remoteEntry(node: node) }
            let removals = (0..<input.int(in: 0...2)).map { _ in input.pick(remoteSids + localSids.prefix(1)) }
            let message = NodeMessage.presence(node: node, upserts: upserts, removals: removals, full: input.byte() < 40)
            // What arrives over pub/sub: entries with versions above maxVersion are refused at decoding.
            trace("node message \(message)")
            guard let received = received(message) else { return }
            // As the shard does: another node's changes forwarded at once (within the per-node budget),
            // or, while the doc loads, left to the tick (issue 11).
            let forwarding = input.byte() < 200
            let effect = doc.receive(received, nowMs: now, forwarding: forwarding)
            for sid in effect.takenOver {
                require(!doc.isLocal(sid), "taken-over session still local")
                deadlines.removeValue(forKey: sid)
            }
            if let forward = effect.forward {
                require(forwarding, "forwarded while the owner could not deliver")
                require(forward.write == nil && forward.viewerDelta == nil, "a forward carries a write or a viewer delta")
                require(forward.viewersGetDelta == !doc.isLarge, "a forward reached viewers of a large doc")
                trace("forward: \(forward.delta.map(describe) ?? "-"), viewers get it \(forward.viewersGetDelta)")
                if let delta = forward.delta {
                    checkDelta(delta, current: true)
                    for subscriber in subscribers where subscriber.kind != .viewer || forward.viewersGetDelta {
                        subscriber.receive(delta)
                    }
                }
            }
        case 9:
            let gone = input.bool() ? [input.pick(otherNodes)] : [input.pick(otherNodes), nodeID]
            requireRoundTrip(.nodesGone(nodes: gone))
            trace("nodes gone \(gone)")
            doc.apply(.nodesGone(nodes: gone))
        case 10:
            // A Redis snapshot: part of the view, perhaps with stale or extra entries of other nodes.
            var snapshot = doc.view.values.filter { _ in input.byte() < 200 }
            for _ in 0..<input.int(in: 0...2) {
                // Read back from the Redis hash: decoded like any entry.
                if let entry = PresenceEntry(encoded: remoteEntry(node: input.pick(otherNodes)).encoded) { snapshot.append(entry) }
            }
            let seq = input.bool() ? doc.currentEventSeq : savedSeq
            let removeMissing = input.byte() < 200
            trace("reconcile seq \(seq) (now \(doc.currentEventSeq)) removeMissing \(removeMissing): \(snapshot.map { "\($0.sid)@\($0.node) v\($0.version)" })")
            doc.reconcile(snapshot: snapshot, requestedAtSeq: seq, removeMissing: removeMissing)
        case 11:
            savedSeq = doc.currentEventSeq
            trace("save seq \(savedSeq)")
        case 12:
            trace("write failed")
            doc.writeFailed()
        case 13:
            let kind: Subscriber.Kind = input.pick([.editor, .viewer, .slow])
            var view: [String: [UInt8]] = [:]
            for entry in doc.presenceList() { view[entry.sid] = entry.encoded }
            subscribers.append(Subscriber(kind: kind, view: view))
            trace("subscriber #\(subscribers.count - 1) \(kind) from \(view.keys.sorted())")
            if subscribers.count > 8 { subscribers.remove(at: 2) }
        case 14:
            for subscriber in subscribers where subscriber.kind == .slow {
                if subscriber.backedUp { subscriber.drain(doc: doc.doc) } else { subscriber.backedUp = input.bool() }
                trace("slow subscriber backed up: \(subscriber.backedUp)")
            }
        default:
            now += UInt64(input.pick([0, 1, 49, 50, 51, 500, 999, 1000, 1001, 2000, 2001, 5000]))
            tick()
        }
        checkBookkeeping()
    }

    mutating func takeWrite() {
        if let write = doc.takeWrite(nowMs: now) { checkWrite(write) }
    }

    mutating func tick() {
        var versionsBefore: [String: (user: String, version: UInt64)] = [:]
        for sid in localSids where doc.isLocal(sid) && !doc.isDetached(sid) {
            versionsBefore[sid] = (doc.view[sid]!.user, doc.view[sid]!.version)
        }
        let wasLarge = doc.isLarge
        let tick = doc.tick(nowMs: now)
        trace("tick at \(now): delta \(tick.delta.map(describe) ?? "-"), viewer delta \(tick.viewerDelta.map(describe) ?? "-"), viewers get delta \(tick.viewersGetDelta)")
        if let write = tick.write { checkWrite(write) }

        // Deferred updates applied by the tick count against the rate too.
        for (sid, before) in versionsBefore {
            if let entry = doc.view[sid], entry.node == nodeID, doc.isLocal(sid), entry.version != before.version {
                require(entry.version == before.version + 1, "a tick changed \(sid) by more than one version")
                accepted[before.user, default: []].append(now)
            }
        }

        // TTL: nothing detached is still here past its deadline.
        for (sid, deadline) in deadlines {
            if doc.isLocal(sid) && doc.isDetached(sid) {
                require(deadline > now, "\(sid) outlived its deadline \(deadline) at \(now)")
            } else {
                deadlines.removeValue(forKey: sid)
            }
        }

        if let delta = tick.delta { checkDelta(delta, current: true) }
        if let viewerDelta = tick.viewerDelta { checkDelta(viewerDelta, current: false) }
        for subscriber in subscribers {
            switch subscriber.kind {
            case .editor, .slow:
                if let delta = tick.delta { subscriber.receive(delta) }
            case .viewer:
                if let viewerDelta = tick.viewerDelta { subscriber.receive(viewerDelta) }
                if tick.viewersGetDelta, let delta = tick.delta { subscriber.receive(delta) }
            }
        }

        // The doc's own rule for viewer flushes of a large doc (at most one per interval).
        var flushed = false
        if doc.isLarge && !wasLarge {
            lastViewerFlush = now
        } else if doc.isLarge && now >= lastViewerFlush + doc.settings.viewerFlushIntervalMs {
            lastViewerFlush = now
            flushed = true
        }

        let expected = doc.view.mapValues(\.encoded)
        for (index, subscriber) in subscribers.enumerated() {
            switch subscriber.kind {
            case .editor:
                require(subscriber.view == expected, "editor subscriber #\(index) diverged: \(describe(subscriber.view, expected))")
            case .slow:
                if !subscriber.backedUp {
                    require(subscriber.view == expected, "slow subscriber #\(index) diverged: \(describe(subscriber.view, expected))")
                }
            case .viewer:
                if !doc.isLarge {
                    require(subscriber.view == expected, "viewer subscriber #\(index) diverged: \(describe(subscriber.view, expected))")
                } else if flushed {
                    require(
                        Set(subscriber.view.keys) == Set(expected.keys),
                        "viewer subscriber #\(index) membership diverged: \(describe(subscriber.view, expected))")
                }
            }
        }
        checkRates()
    }

    func describe(_ delta: PresenceDelta) -> String {
        "joined \(delta.joined.map { "\($0.sid) v\($0.version)" }) updated \(delta.updated.map { "\($0.sid) v\($0.version)" }) left \(delta.left)"
    }

    func checkDelta(_ delta: PresenceDelta, current: Bool) {
        let sids = delta.joined.map(\.sid) + delta.updated.map(\.sid) + delta.left
        require(Set(sids).count == sids.count, "a delta names a session twice: \(sids)")
        for entry in delta.joined + delta.updated {
            require(doc.view[entry.sid] != nil, "delta lists \(entry.sid), which is not in the view")
            if current { require(doc.view[entry.sid] == entry, "delta entry of \(entry.sid) is not its latest state") }
        }
        for sid in delta.left { require(doc.view[sid] == nil, "delta says \(sid) left, but it is in the view") }
        require((try? JSONParser.parse(delta.encoded)) != nil, "delta does not encode to JSON")
    }

    func checkWrite(_ write: PresenceWrite) {
        for entry in write.upserts {
            require(entry.node == nodeID, "node writes another node's entry")
            require(doc.isLocal(entry.sid), "node writes \(entry.sid), which is not local")
        }
        if let publish = write.publish { requireRoundTrip(publish) }
    }

    func checkRates() {
        let rate = doc.settings.rate
        let burst = max(1, doc.settings.burst)
        for (user, times) in accepted {
            for i in times.indices {
                for j in i..<times.count {
                    let allowed = burst + rate * Double(times[j] - times[i]) / 1000
                    require(Double(j - i + 1) <= allowed + 1e-6, "\(user): \(j - i + 1) updates in \(times[j] - times[i]) ms")
                }
            }
        }
    }

    func checkBookkeeping() {
        for sid in Set(localSids + remoteSids) {
            require(doc.isLocal(sid) == (doc.view[sid]?.node == nodeID), "\(sid): local \(doc.isLocal(sid)) but view \(String(describing: doc.view[sid]?.node))")
        }
        require(doc.viewerCount == doc.view.values.filter { $0.role == .viewer }.count, "viewerCount \(doc.viewerCount) is wrong")
    }

    func describe(_ seen: [String: [UInt8]], _ expected: [String: [UInt8]]) -> String {
        let missing = Set(expected.keys).subtracting(seen.keys).sorted()
        let extra = Set(seen.keys).subtracting(expected.keys).sorted()
        let stale = expected.keys.filter { seen[$0] != nil && seen[$0] != expected[$0] }.sorted()
        return "missing \(missing), extra \(extra), stale \(stale)"
    }
}

/// The message as another node receives it (encoded, decoded); nil when decoding refuses it, which it
/// must exactly when an entry's version is above `PresenceEntry.maxVersion`.
private func received(_ message: NodeMessage) -> NodeMessage? {
    let decoded = NodeMessage.decode(message.encode())
    if case .presence(_, let upserts, _, _) = message, upserts.contains(where: { $0.version > PresenceEntry.maxVersion }) {
        require(decoded == nil, "an entry above maxVersion was accepted")
        return nil
    }
    require(decoded == message, "node message does not survive encode → decode")
    return decoded
}

private func requireRoundTrip(_ message: NodeMessage) {
    require(NodeMessage.decode(message.encode()) == message, "node message does not survive encode → decode")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPresence(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var harness = Harness(input: FuzzInput(data, size))
    for _ in 0..<200 where !harness.input.isExhausted { harness.step() }
    // However the sequence ended, time passing expires every detached session and subscribers converge.
    harness.now += 10 * max(harness.doc.settings.ttlMs, 70_000)
    harness.tick()
    harness.tick()
    return 0
}
