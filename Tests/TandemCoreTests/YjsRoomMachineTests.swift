import Testing
import TandemYjs

@testable import TandemCore

/// `YjsRoomMachine` alone (pure): sequencing, gaps, compaction, lifetime and awareness decisions, with the
/// replies Redis would give fed in by hand.
@Suite struct YjsRoomMachineTests {
    final class Member {}
    // Kept alive: an ObjectIdentifier of a freed object may be reused for the next one.
    let objects = [Member(), Member(), Member()]
    var alice: ObjectIdentifier { ObjectIdentifier(objects[0]) }
    var bob: ObjectIdentifier { ObjectIdentifier(objects[1]) }

    /// One Yjs update: `text` typed by `client` at `clock` into the root Y.Text "t", after its own previous
    /// character (as y-websocket clients send them).
    static func typing(client: UInt64, clock: Int, _ text: String) -> [UInt8] {
        var bytes: [UInt8] = [1, 1]
        var encoder = Lib0Encoder()
        encoder.writeVarUInt(client)
        encoder.writeVarUInt(UInt64(clock))
        bytes += encoder.bytes
        if clock == 0 {
            bytes += [0x04, 0x01, 0x01, UInt8(ascii: "t")]
        } else {
            var origin = Lib0Encoder()
            origin.writeVarUInt(client)
            origin.writeVarUInt(UInt64(clock - 1))
            bytes += [0x84] + origin.bytes
        }
        var content = Lib0Encoder()
        content.writeVarString(text)
        return bytes + content.bytes + [0]
    }

    static func published(_ seq: Int64, _ bytes: [UInt8]) -> YjsPublishedUpdate {
        YjsPublishedUpdate(seq: seq, appendedAtMs: 1000 + UInt64(seq), update: bytes)
    }

    /// A live room with `alice` (and `bob`) in it, loaded empty.
    func liveRoom(members: [ObjectIdentifier]? = nil) -> YjsRoomMachine {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5)
        for member in members ?? [alice, bob] { _ = room.join(member) }
        _ = room.loaded(.success(YjsLoadedRoom(seq: 0, base: 0, snapshot: nil, entries: [])))
        return room
    }

    private func relayed(_ actions: [YjsRoomAction]) -> [[UInt8]] {
        actions.compactMap { if case .relay(.update(let bytes), _) = $0 { bytes } else { nil } }
    }

    @Test func workWaitsForTheLoadThenRunsInOrderAgainstTheLoadedDocument() throws {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5)
        let stored = Self.typing(client: 7, clock: 0, "hello")
        #expect(room.join(alice).isEmpty)
        #expect(room.step1(alice, stateVector: YStateVector()).isEmpty)
        #expect(room.update(alice, update: try YUpdate(decoding: stored), bytes: stored).isEmpty)
        #expect(!room.isLive)

        let actions = room.loaded(.success(YjsLoadedRoom(seq: 3, base: 2, snapshot: nil, entries: [stored])))
        let vector = YStateVector(fromUpdate: try YUpdate(decoding: stored))
        #expect(actions == [
            .send(member: alice, .syncStep1(stateVector: vector.encoded())),
            // Exactly what a peer with nothing lacks: the stored update.
            .send(member: alice, .syncStep2(update: try YUpdate(decoding: stored).encoded())),
            // The update it sent is the one the room has: not appended again.
        ])
        #expect(room.seq == 3 && room.base == 2 && room.isLive)
    }

    @Test func anUpdateIsAppendedWithTheSeqItArrivedAtAndCountsConcurrentWhenAnotherGotInFirst() throws {
        var room = liveRoom()
        let first = Self.typing(client: 1, clock: 0, "a")
        let second = Self.typing(client: 2, clock: 0, "b")
        let actions = room.update(alice, update: try YUpdate(decoding: first), bytes: first)
        let token = YjsRoomMachine.AppendToken(member: alice, seqOnArrival: 0)
        #expect(actions == [.count(.appendStarted), .append(bytes: first, token: token)])
        #expect(room.appendsInFlight == 1)

        // Bob's update arrives before Alice's is published; Bob's is stored second.
        let bobActions = room.update(bob, update: try YUpdate(decoding: second), bytes: second)
        let bobToken = YjsRoomMachine.AppendToken(member: bob, seqOnArrival: 0)
        #expect(bobActions == [.count(.appendStarted), .append(bytes: second, token: bobToken)])
        #expect(room.appendCompleted(token: token, outcome: .appended(seq: 1, logLength: 1))
            == [.count(.appendFinished), .count(.pushCommitted(concurrent: false))])
        #expect(room.appendCompleted(token: bobToken, outcome: .appended(seq: 2, logLength: 2))
            == [.count(.appendFinished), .count(.pushCommitted(concurrent: true))])

        // Relayed in the room's order, to everyone (the sender too), once published.
        #expect(relayed(room.published(Self.published(1, first))) == [first])
        #expect(relayed(room.published(Self.published(2, second))) == [second])
        // An update the room already has is not stored again (a reconnecting client's step 2).
        #expect(room.update(bob, update: try YUpdate(decoding: first), bytes: first).isEmpty)
        #expect(room.published(Self.published(2, second)).isEmpty, "an old seq is skipped")
    }

    @Test func aFullRoomOrAFailedAppendClosesTheSender() throws {
        var room = liveRoom()
        let bytes = Self.typing(client: 1, clock: 0, "a")
        _ = room.update(alice, update: try YUpdate(decoding: bytes), bytes: bytes)
        let token = YjsRoomMachine.AppendToken(member: alice, seqOnArrival: 0)
        #expect(room.appendCompleted(token: token, outcome: .roomFull)
            == [.count(.appendFinished), .count(.pushFailed), .count(.roomFull), .close(member: alice, .roomFull)])
        _ = room.update(bob, update: try YUpdate(decoding: bytes), bytes: bytes)
        let bobToken = YjsRoomMachine.AppendToken(member: bob, seqOnArrival: 0)
        #expect(room.appendCompleted(token: bobToken, outcome: .failed("down")) == [
            .count(.appendFinished), .count(.pushFailed), .log(.updateNotStored("down")), .close(member: bob, .storageUnavailable),
        ])
    }

    @Test func aGapReloadsThenRelaysWhatWasMissedAndWhatWaitedInSeqOrder() {
        var room = liveRoom()
        let updates = (0..<4).map { Self.typing(client: 9, clock: $0, "x") }
        #expect(relayed(room.published(Self.published(1, updates[0]))) == [updates[0]])
        // Seq 2 was lost on pub/sub: 3 and 4 wait for the reload.
        #expect(room.published(Self.published(3, updates[2])) == [.count(.reload), .reload])
        #expect(room.reloading)
        #expect(room.published(Self.published(4, updates[3])).isEmpty)
        let actions = room.reloaded(.success(YjsLoadedRoom(seq: 3, base: 0, snapshot: nil, entries: Array(updates[0..<3]))))
        #expect(relayed(actions) == [updates[1], updates[2], updates[3]])
        #expect(room.seq == 4 && !room.reloading)
    }

    @Test func aReloadPastACompactionRelaysOnlyWhatTheMembersLack() throws {
        var room = liveRoom()
        let updates = (0..<3).map { Self.typing(client: 9, clock: $0, "x") }
        _ = room.published(Self.published(1, updates[0]))
        _ = room.published(Self.published(3, updates[2]))  // a gap
        let snapshot = Yjs.mergeUpdates(try updates.map { try YUpdate(decoding: $0) })
        let actions = room.reloaded(.success(YjsLoadedRoom(seq: 3, base: 3, snapshot: snapshot.encoded(), entries: [])))
        let diff = Yjs.diffUpdate(snapshot, stateVector: YStateVector(fromUpdate: try YUpdate(decoding: updates[0])))
        #expect(relayed(actions) == [diff.encoded()])
        #expect(room.seq == 3 && room.base == 3)
    }

    @Test func theCheckReloadsBehindRedisAndClosesEveryoneWhenRedisLostTheRoom() {
        var room = liveRoom()
        _ = room.published(Self.published(1, Self.typing(client: 9, clock: 0, "x")))
        #expect(room.check() == [.readHead(seqAtRead: 1)])
        #expect(room.headRead(1, seqAtRead: 1).isEmpty)
        #expect(room.headRead(2, seqAtRead: 1) == [.count(.reload), .reload])
        #expect(room.check().isEmpty, "no check while reloading")
        _ = room.reloaded(.failure(YjsStorageFailure("down")))
        #expect(room.headRead(0, seqAtRead: 1) == [.log(.lostInRedis(seq: 1, redisSeq: 0)), .closeAll(.storageUnavailable), .drop])
        #expect(room.dropped && room.members.isEmpty)
        #expect(room.join(alice).isEmpty, "a dropped room accepts nothing")
    }

    @Test func theNodeWhoseAppendCrossedTheThresholdCompactsOnceItHasAppliedThatFar() throws {
        var room = liveRoom()
        let n = YjsRoomMachine.compactionEntries
        let updates = (0..<n + 1).map { Self.typing(client: 5, clock: $0, "y") }
        for (i, bytes) in updates.prefix(n - 1).enumerated() {
            #expect(room.published(Self.published(Int64(i + 1), bytes)).count == 1, "relayed, no compaction yet")
        }
        // This node's append reached the threshold; the reply comes before the update itself.
        let last = updates[n - 1]
        _ = room.update(alice, update: try YUpdate(decoding: last), bytes: last)
        let token = YjsRoomMachine.AppendToken(member: alice, seqOnArrival: Int64(n - 1))
        #expect(room.appendCompleted(token: token, outcome: .appended(seq: Int64(n), logLength: n)).count == 2, "not applied yet")
        let actions = room.published(Self.published(Int64(n), last))
        guard case .compact(let base, let upto, let snapshot) = actions.last else {
            Issue.record("no compaction: \(actions)")
            return
        }
        #expect(base == 0 && upto == Int64(n))
        let merged = Yjs.mergeUpdates(try updates.prefix(n).map { try YUpdate(decoding: $0) })
        #expect(try YUpdate(decoding: snapshot) == merged, "the snapshot is the whole document")
        #expect(room.compacting)
        // One at a time; the result moves the base.
        #expect(room.published(Self.published(Int64(n + 1), updates[n])).count == 1)
        #expect(room.compacted(.success((compacted: true, base: Int64(n)))) == [.count(.compaction)])
        #expect(room.base == Int64(n) && !room.compacting)
    }

    @Test func aSmallerThresholdCompactsSooner() throws {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5, compactionThreshold: 2)
        _ = room.join(alice)
        _ = room.loaded(.success(YjsLoadedRoom(seq: 0, base: 0, snapshot: nil, entries: [])))
        let updates = (0..<2).map { Self.typing(client: 3, clock: $0, "q") }
        _ = room.update(alice, update: try YUpdate(decoding: updates[1]), bytes: updates[1])
        let token = YjsRoomMachine.AppendToken(member: alice, seqOnArrival: 0)
        _ = room.appendCompleted(token: token, outcome: .appended(seq: 2, logLength: 2))
        #expect(room.published(Self.published(1, updates[0])).count == 1)
        guard case .compact(0, 2, _)? = room.published(Self.published(2, updates[1])).last else {
            Issue.record("no compaction at the threshold")
            return
        }
    }

    @Test func anUndecodableLogEntryIsNotRelayedAndTheRoomIsNeverCompacted() throws {
        var room = liveRoom()
        #expect(room.published(Self.published(1, [0xFF, 0xFF])) == [.log(.undecodableEntry(seq: 1))])
        #expect(room.seq == 1)
        let n = YjsRoomMachine.compactionEntries
        let bytes = Self.typing(client: 1, clock: 0, "z")
        _ = room.update(alice, update: try YUpdate(decoding: bytes), bytes: bytes)
        let token = YjsRoomMachine.AppendToken(member: alice, seqOnArrival: 1)
        _ = room.appendCompleted(token: token, outcome: .appended(seq: Int64(n + 1), logLength: n + 1))
        var seq: Int64 = 2
        for clock in 1..<n {
            let actions = room.published(Self.published(seq, Self.typing(client: 1, clock: clock, "z")))
            #expect(!actions.contains { if case .compact = $0 { true } else { false } })
            seq += 1
        }
    }

    @Test func theRoomIsDroppedOnceIdleAndNotWhileAnAppendIsInFlight() throws {
        var room = liveRoom()
        let bytes = Self.typing(client: 1, clock: 0, "a")
        _ = room.update(alice, update: try YUpdate(decoding: bytes), bytes: bytes)
        #expect(room.leave(bob).isEmpty)
        #expect(room.leave(alice).isEmpty, "an append is in flight")
        let token = YjsRoomMachine.AppendToken(member: alice, seqOnArrival: 0)
        #expect(room.appendCompleted(token: token, outcome: .appended(seq: 1, logLength: 1)).last == .drop)
        #expect(room.dropped)
    }

    @Test func aFailedLoadClosesTheMembersAndDropsTheRoom() {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5)
        _ = room.join(alice)
        #expect(room.loaded(.failure(YjsStorageFailure("down"))) == [.log(.loadFailed("down")), .closeAll(.storageUnavailable), .drop])
        var unreadable = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5)
        _ = unreadable.join(alice)
        let actions = unreadable.loaded(.success(YjsLoadedRoom(seq: 1, base: 0, snapshot: nil, entries: [[0xFF]])))
        #expect(actions.suffix(2) == [.closeAll(.storageUnavailable), .drop])
    }

    @Test func awarenessOverTheRateIsHeldUntilATickAndGoesOutOnceWithItsRedisWrite() {
        var room = YjsRoomMachine(awarenessRate: 1, awarenessBurst: 1)
        _ = room.join(alice)
        _ = room.join(bob)
        _ = room.loaded(.success(YjsLoadedRoom(seq: 0, base: 0, snapshot: nil, entries: [])))
        let first = YAwarenessUpdate.Entry(clientID: 11, clock: 1, stateJSON: #"{"x":1}"#)
        let second = YAwarenessUpdate.Entry(clientID: 11, clock: 2, stateJSON: #"{"x":2}"#)
        #expect(room.awareness(alice, user: "a", entries: [first], nowMs: 0) == [.count(.awarenessAccepted)])
        #expect(room.needsTick)
        #expect(room.awarenessTick(nowMs: 0) == [
            .count(.localAwareness(delta: 1)), .relayAwareness(YAwarenessUpdate(entries: [first])),
            .writeAwareness([first], refresh: true),
        ])
        // No token left: held, not lost; the next tick with a token applies it.
        #expect(room.awareness(alice, user: "a", entries: [second], nowMs: 10) == [.count(.awarenessRateLimited)])
        #expect(room.awarenessTick(nowMs: 20).isEmpty && room.needsTick)
        #expect(room.awarenessTick(nowMs: 1100) == [
            .count(.awarenessAccepted), .relayAwareness(YAwarenessUpdate(entries: [second])),
            .writeAwareness([second], refresh: false),
        ])
        // Bob cannot take over Alice's clientID; an echo of her state costs nothing.
        #expect(room.awareness(bob, user: "b", entries: [YAwarenessUpdate.Entry(clientID: 11, clock: 3, stateJSON: "{}")], nowMs: 1200)
            == [.count(.awarenessClientsRefused)])
        #expect(room.awareness(bob, user: "b", entries: [second], nowMs: 1200).isEmpty)
        let answer = room.queryAwareness(bob)
        #expect(answer == [.send(member: bob, .awareness(YAwarenessUpdate(entries: [second])))])
        // Alice leaves: her entry is removed (clock + 1, null) at once, for everyone and for Redis.
        let removal = YAwarenessUpdate.Entry(clientID: 11, clock: 3, stateJSON: "null")
        #expect(room.leave(alice) == [
            .count(.localAwareness(delta: -1)), .relayAwareness(YAwarenessUpdate(entries: [removal])),
            .writeAwareness([removal], refresh: false),
        ])
    }

    @Test func aNewMemberGetsTheRoomsStepOneThenWhoIsThere() {
        var room = liveRoom(members: [alice])
        let entry = YAwarenessUpdate.Entry(clientID: 3, clock: 1, stateJSON: "{}")
        room.remoteAwareness([entry], fromNode: "n2", nowMs: 0)
        #expect(room.join(bob) == [
            .send(member: bob, .syncStep1(stateVector: YStateVector().encoded())),
            .send(member: bob, .awareness(YAwarenessUpdate(entries: [entry]))),
        ])
        // A node not heard of for the TTL is gone: its entries are removed at the next tick.
        #expect(room.sweepAwareness(nowMs: 5000, ttlMs: 2000) == [.sweepAwareness])
        #expect(room.awarenessTick(nowMs: 5000)
            == [.relayAwareness(YAwarenessUpdate(entries: [.init(clientID: 3, clock: 2, stateJSON: "null")]))])
    }

    /// A client sending updates whose structs the room cannot place (client 9's clocks 0–9 never came) gets
    /// them stored while the room holds fewer than `maxPendingUpdates`; the next is refused and its sender
    /// closed. Others keep being served, an update filling the gap always gets in, and the state vector
    /// then reaches past what waited.
    @Test func updatesWithMissingDependenciesAreBoundedPerRoomAndTheGapStillFills() throws {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5, maxPendingUpdates: 3)
        for member in [alice, bob] { _ = room.join(member) }
        _ = room.loaded(.success(YjsLoadedRoom(seq: 0, base: 0, snapshot: nil, entries: [])))
        var seq: Int64 = 0
        /// Sends `bytes` from `member`; if the room appends it, Redis stores and publishes it.
        func send(_ member: ObjectIdentifier, _ bytes: [UInt8]) throws -> [YjsRoomAction] {
            let actions = room.update(member, update: try YUpdate(decoding: bytes), bytes: bytes)
            guard actions.contains(where: { if case .append = $0 { true } else { false } }) else { return actions }
            let token = YjsRoomMachine.AppendToken(member: member, seqOnArrival: seq)
            seq += 1
            _ = room.appendCompleted(token: token, outcome: .appended(seq: seq, logLength: Int(seq)))
            #expect(relayed(room.published(Self.published(seq, bytes))) == [bytes])
            return actions
        }
        for k in 1...3 {
            let actions = try send(alice, Self.typing(client: 9, clock: 10 * k, "g"))
            #expect(actions.contains(.count(.appendStarted)))
        }
        // The same waiting structs again add nothing that waits: stored (Yjs would too), not refused.
        #expect(try send(alice, Self.typing(client: 9, clock: 20, "g")).contains(.count(.appendStarted)))
        #expect(room.document.pendingUpdates == 3)
        // One more gap: refused, not stored, its sender closed.
        let refused = try send(alice, Self.typing(client: 9, clock: 40, "g"))
        #expect(refused == [.count(.pendingRefused), .close(member: alice, .tooManyPending)])
        #expect(seq == 4)
        // Bob's updates, which follow on from what the room has, are served as before.
        #expect(try send(bob, Self.typing(client: 5, clock: 0, "b")).contains(.count(.appendStarted)))
        // Client 9's missing clocks arrive (its step 2 after a reconnect): stored though the room is at its
        // limit, and the state vector reaches past everything that waited.
        let fill = Yjs.mergeUpdates([
            try YUpdate(decoding: Self.typing(client: 9, clock: 0, String(repeating: "f", count: 10))),
            try YUpdate(decoding: Self.typing(client: 9, clock: 11, String(repeating: "f", count: 9))),
            try YUpdate(decoding: Self.typing(client: 9, clock: 21, String(repeating: "f", count: 9))),
        ]).encoded()
        #expect(try send(bob, fill).contains(.count(.appendStarted)))
        #expect(room.document.pendingUpdates == 0)
        #expect(room.document.stateVector().clocks == [5: 1, 9: 31])
        #expect(room.document.stateVector() == YStateVector(fromUpdate: room.document.whole()))
        // With nothing waiting, the next gap is accepted again.
        #expect(try send(alice, Self.typing(client: 9, clock: 40, "g")).contains(.count(.appendStarted)))
    }

    /// The node's `tandem_yjs_pending_updates` gauge is the sum of the rooms' reported changes: it follows
    /// the updates waiting for missing dependencies as they arrive, fill, come with a reload's snapshot,
    /// and leave with the room.
    @Test func pendingUpdatesAreReportedAsTheyChangeAndWithdrawnWhenTheRoomIsDropped() throws {
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5)
        var gauge = 0
        func count(_ actions: [YjsRoomAction]) -> [YjsRoomAction] {
            for case .count(.pendingUpdates(let delta)) in actions { gauge += delta }
            return actions
        }
        // Loaded from a snapshot that already holds a gap (client 9 at clock 10, clocks 0–9 missing).
        let gapped = Self.typing(client: 9, clock: 10, "g")
        _ = count(room.join(alice))
        _ = count(room.loaded(.success(YjsLoadedRoom(seq: 1, base: 1, snapshot: gapped, entries: []))))
        #expect(gauge == 1 && room.document.pendingUpdates == 1)
        // Two more gaps arrive on the channel; an update that follows on waits for nothing.
        _ = count(room.published(Self.published(2, Self.typing(client: 9, clock: 20, "g"))))
        _ = count(room.published(Self.published(3, Self.typing(client: 9, clock: 30, "g"))))
        _ = count(room.published(Self.published(4, Self.typing(client: 5, clock: 0, "b"))))
        #expect(gauge == 3)
        // The first gap fills (clocks 0–9): the range at 10 joins, the two later ones still wait.
        _ = count(room.published(Self.published(5, Self.typing(client: 9, clock: 0, String(repeating: "f", count: 10)))))
        #expect(gauge == 2 && room.document.pendingUpdates == 2)
        // A reload past a compaction replaces the document: the gauge follows the new one.
        _ = count(room.published(Self.published(7, Self.typing(client: 5, clock: 1, "c"))))  // seq 6 lost: reload
        let compacted = Yjs.mergeUpdates(
            [gapped, Self.typing(client: 9, clock: 20, "g"), Self.typing(client: 5, clock: 0, "b")].map { try! YUpdate(decoding: $0) })
        _ = count(room.reloaded(.success(YjsLoadedRoom(seq: 7, base: 7, snapshot: compacted.encoded(), entries: []))))
        #expect(gauge == room.document.pendingUpdates && gauge == 2, "\(room.document.pendingUpdates)")
        // The last member leaves: the room goes, and so do its waiting updates from the gauge.
        let left = count(room.leave(alice))
        #expect(left.contains(.drop))
        #expect(gauge == 0)
    }

    /// Deletion-only updates (a user deleting characters one at a time, here every other one so that no
    /// two ranges join: the largest delete set they can make) at scale through a room with relay coalescing
    /// on, as the server runs it: no step merges the whole document per update. Counted in operations,
    /// not time: whole-document merges (`YjsDocument.folds`) stay at one per `maxUnfolded` updates plus one
    /// per compaction, every update is relayed in exactly one merged batch, and checking an update or
    /// reading the state vector merges nothing.
    @Test func manyDeletionOnlyUpdatesMergeTheDocumentOncePerBatchNotPerUpdate() throws {
        let count = 3_000
        let text = Self.typing(client: 1, clock: 0, String(repeating: "x", count: 2 * count))
        var room = YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5, coalesceRelays: true)
        _ = room.join(alice)
        _ = room.loaded(.success(YjsLoadedRoom(seq: 1, base: 1, snapshot: text, entries: [])))
        let vector = room.document.stateVector()
        var seq: Int64 = 1
        var relayedUpdates = 0
        var relays = 0
        var compactions = 0
        func handle(_ actions: [YjsRoomAction]) {
            for action in actions {
                switch action {
                case .relay: relays += 1
                case .count(.relayCoalesced(let updates)): relayedUpdates += updates - 1  // the relay counted one
                case .compact(_, let upto, _):
                    compactions += 1
                    handle(room.compacted(.success((compacted: true, base: upto))))
                default: break
                }
            }
        }
        for k in 0..<count {
            var encoder = Lib0Encoder()
            for value in [0, 1, 1, 1, 2 * k, 1] { encoder.writeVarUInt(value) }  // no structs; client 1: [2k, 2k+1)
            let deletion = encoder.bytes
            let update = try YUpdate(decoding: deletion)
            #expect(update.sections.isEmpty && !room.document.isKnown(update))
            let actions = room.update(alice, update: update, bytes: deletion)
            guard case .append(let bytes, let token)? = actions.last else {
                Issue.record("deletion \(k) not appended: \(actions)")
                return
            }
            seq += 1
            handle(room.appendCompleted(token: token, outcome: .appended(seq: seq, logLength: Int(seq - room.base))))
            handle(room.published(Self.published(seq, bytes)))
            #expect(room.document.stateVector() == vector)
            if k % 10 == 9 { handle(room.flushRelay()) }  // the coalescing window ends every 10 updates
        }
        handle(room.flushRelay())
        relayedUpdates += relays
        #expect(relayedUpdates == count, "every deletion relayed once")
        #expect(relays == count / 10)
        #expect(compactions == count / YjsRoomMachine.compactionEntries)
        #expect(room.document.folds <= count / YjsDocument.maxUnfolded + compactions + 1, "folds: \(room.document.folds)")
        // The document holds every deletion: one range per deleted character, none joined.
        let whole = room.document.whole()
        #expect(whole.deleteSet.clients.map(\.client) == [1])
        #expect(whole.deleteSet.clients.first?.ranges == (0..<count).map { YDeleteRange(clock: 2 * $0, length: 1) })
        #expect(YStateVector(fromUpdate: whole) == vector)
    }
}
