import TandemCore
import Testing

@testable import TandemKit

/// The record store and push queue without I/O: what each server message does to the confirmed records, the
/// optimistic view and the pushes, under the rules of docs/protocol.md.
@Suite struct DocSyncTests {
    let me: Set<String> = ["S1"]

    func ops(_ json: String) -> Ops { try! Ops(json: try! JSONParser.parse(json)) }
    func record(_ json: String) -> JSONValue { try! JSONParser.parse(json) }

    /// A doc in sync at clock 0 (empty snapshot).
    func synced() -> DocSync {
        var sync = DocSync()
        _ = sync.snapshot(clock: 0, records: [:], more: false)
        return sync
    }

    func sends(_ actions: [DocSync.Action]) -> [(id: Int, base: UInt64, ops: Ops)] {
        actions.compactMap { if case .send(let id, let base, let ops) = $0 { (id, base, ops) } else { nil } }
    }

    func settled(_ actions: [DocSync.Action]) -> [([Int], Result<PushOutcome, TandemError>)] {
        actions.compactMap { if case .settle(let tickets, let result) = $0 { (tickets, result) } else { nil } }
    }

    @Test func editsBeforeTheFirstSyncWaitAndAreSentAfterIt() {
        var sync = DocSync()
        #expect(sends(sync.edit(ops(#"{"a":["put",{"x":1}]}"#), ticket: 1, newID: 10)).isEmpty)
        #expect(sync.view["a"] == record(#"{"x":1}"#))
        let actions = sync.snapshot(clock: 4, records: ["b": record("{}")], more: false)
        #expect(sends(actions).map(\.id) == [10])
        #expect(sends(actions).first?.base == 4)
        #expect(Set(sync.view.keys) == ["a", "b"])
    }

    @Test func oneInFlightAndEditsMadeMeanwhileAreFoldedIntoTheNext() {
        var sync = synced()
        #expect(sends(sync.edit(ops(#"{"a":["put",{"n":1}]}"#), ticket: 1, newID: 10)).map(\.id) == [10])
        #expect(sends(sync.edit(ops(#"{"a":["patch",{"n":["put",2]}]}"#), ticket: 2, newID: 11)).isEmpty)
        #expect(sends(sync.edit(ops(#"{"b":["put",{}]}"#), ticket: 3, newID: 12)).isEmpty)
        #expect(sync.pending.count == 2)
        #expect(sync.view["a"] == record(#"{"n":2}"#))
        let actions = sync.result(id: 10, action: "commit", clock: 1, ops: nil, reason: nil)
        #expect(settled(actions).map(\.0) == [[1]])
        let next = sends(actions)
        #expect(next.map(\.id) == [11], "the folded push keeps the id of the first edit folded in")
        #expect(next.first?.base == 1, "based on the clock the previous answer produced")
        #expect(next.first?.ops == ops(#"{"a":["patch",{"n":["put",2]}],"b":["put",{}]}"#))
        let last = sync.result(id: 11, action: "commit", clock: 2, ops: nil, reason: nil)
        #expect(settled(last).map(\.0) == [[2, 3]])
        #expect(sync.records == ["a": record(#"{"n":2}"#), "b": record("{}")])
        #expect(sync.pending.isEmpty)
    }

    @Test func aRebaseReplacesTheOptimisticChangeWithWhatTheServerApplied() {
        var sync = synced()
        _ = sync.patch(clock: 1, ops: ops(#"{"t":["put",{"s":"ab"}]}"#), by: "S2", id: 1, sessions: me)
        _ = sync.edit(ops(#"{"t":["patch",{"s":["append","X",0]}]}"#), ticket: 1, newID: 10)
        let actions = sync.result(id: 10, action: "rebase", clock: 2, ops: ops(#"{"t":["patch",{"s":["put","abX"]}]}"#), reason: nil)
        #expect(sync.records["t"] == record(#"{"s":"abX"}"#))
        #expect(sync.view == sync.records)
        guard case .success(.rebase(let clock, _))? = settled(actions).first?.1 else {
            Issue.record("expected a rebase outcome, got \(settled(actions))")
            return
        }
        #expect(clock == 2)
    }

    @Test func aDiscardDropsTheOptimisticChangeAndKeepsTheClock() {
        var sync = synced()
        _ = sync.patch(clock: 1, ops: ops(#"{"t":["put",{"s":1}]}"#), by: "S2", id: 1, sessions: me)
        _ = sync.patch(clock: 2, ops: ops(#"{"t":["remove"]}"#), by: "S2", id: 2, sessions: me)
        _ = sync.edit(ops(#"{"t":["patch",{"s":["put",5]}]}"#), ticket: 1, newID: 10)
        let actions = sync.result(id: 10, action: "discard", clock: 2, ops: nil, reason: "void")
        #expect(sync.view["t"] == nil)
        #expect(sync.clock == 2)
        #expect(settled(actions).first?.1 == .success(.discard(reason: "void")))
    }

    @Test func othersCommitsStayUnderPendingEdits() {
        var sync = synced()
        _ = sync.edit(ops(#"{"a":["patch",{"mine":["put",1]}]}"#), ticket: 1, newID: 10)
        _ = sync.patch(clock: 1, ops: ops(#"{"a":["put",{"theirs":2}]}"#), by: "S2", id: 7, sessions: me)
        #expect(sync.records["a"] == record(#"{"theirs":2}"#))
        #expect(sync.view["a"] == record(#"{"mine":1,"theirs":2}"#))
    }

    @Test func unavailableIsRetriedAfterTheHintWithTheSameIDAndEditsMeanwhileAreFolded() {
        var sync = synced()
        _ = sync.edit(ops(#"{"a":["put",{}]}"#), ticket: 1, newID: 10)
        let refused = sync.pushError(ServerError(code: "unavailable", message: "busy", doc: "d", pushID: 10, retryAfterMs: 380), id: 10)
        #expect(refused == [.retry(after: .milliseconds(380))])
        #expect(sends(sync.edit(ops(#"{"b":["put",{}]}"#), ticket: 2, newID: 11)).isEmpty)
        #expect(sends(sync.edit(ops(#"{"c":["put",{}]}"#), ticket: 3, newID: 12)).isEmpty)
        let retried = sends(sync.retryDue())
        #expect(retried.map(\.id) == [10])
        #expect(retried.first?.ops == ops(#"{"a":["put",{}]}"#), "a push that was sent never changes (its id may be committed)")
        let next = sends(sync.result(id: 10, action: "commit", clock: 1, ops: nil, reason: nil))
        #expect(next.first?.ops == ops(#"{"b":["put",{}],"c":["put",{}]}"#))
        #expect(DocSync.retryDelay(retryAfterMs: nil) == .seconds(1))
        #expect(DocSync.retryDelay(retryAfterMs: 999_999) == .seconds(60))
    }

    @Test func otherRefusalsFailThePushAndTheNextOneGoes() {
        var sync = synced()
        _ = sync.edit(ops(#"{"a":["put",{}]}"#), ticket: 1, newID: 10)
        _ = sync.edit(ops(#"{"b":["put",{}]}"#), ticket: 2, newID: 11)
        let error = ServerError(code: "too_large", message: "record over 65536 bytes", doc: "d", pushID: 10)
        let actions = sync.pushError(error, id: 10)
        #expect(settled(actions).first?.1 == .failure(.server(error)))
        #expect(sends(actions).map(\.id) == [11])
        #expect(sync.view["a"] == nil)
    }

    @Test func aPushWhoseAnswerWasLostIsRecognisedInTheCatchUpBySessionAndID() {
        var sync = synced()
        _ = sync.edit(ops(#"{"a":["put",{"v":1}]}"#), ticket: 1, newID: 10)
        sync.disconnected()
        // Offline edits queue up.
        _ = sync.edit(ops(#"{"b":["put",{"v":2}]}"#), ticket: 2, newID: 11)
        #expect(sync.since == 0)
        _ = sync.joined(clock: 2)
        let actions = sync.log(
            entries: [
                (1, ops(#"{"x":["put",{}]}"#), "S9", 1),
                (2, ops(#"{"a":["put",{"v":1}]}"#), "S1", 10),
            ], more: false, sessions: me)
        #expect(settled(actions).first?.1 == .success(.commit(clock: 2, recovered: true)))
        #expect(sends(actions).map(\.id) == [11], "only the offline edit is sent; the committed one is not re-sent")
        #expect(sends(actions).first?.base == 2)
    }

    @Test func aPushNotFoundInTheCatchUpIsSentAgainUnderItsID() {
        var sync = synced()
        _ = sync.edit(ops(#"{"a":["put",{"v":1}]}"#), ticket: 1, newID: 10)
        sync.disconnected()
        _ = sync.joined(clock: 1)
        let actions = sync.log(entries: [(1, ops(#"{"x":["put",{}]}"#), "S9", 10)], more: false, sessions: me)
        #expect(settled(actions).isEmpty, "same push id from another session is not ours")
        #expect(sends(actions).map(\.id) == [10])
    }

    @Test func aSnapshotReplacesEveryRecordAndChunksAreStaged() {
        var sync = synced()
        _ = sync.patch(clock: 1, ops: ops(#"{"old":["put",{}]}"#), by: "S2", id: 1, sessions: me)
        sync.disconnected()
        _ = sync.joined(clock: 9)
        #expect(sync.snapshot(clock: 9, records: ["a": record("{}")], more: true).isEmpty)
        #expect(sync.records["old"] != nil, "nothing replaced before the last chunk")
        _ = sync.snapshot(clock: 9, records: ["b": record("{}")], more: false)
        #expect(Set(sync.records.keys) == ["a", "b"])
        #expect(sync.clock == 9)
    }

    @Test func aRejoinAtTheHeadIsInSyncAtOnce() {
        var sync = synced()
        sync.disconnected()
        #expect(sync.joined(clock: 0).contains(.synced(clock: 0)))
    }

    @Test func commitsAtOrBelowTheClockAreIgnored() {
        var sync = synced()
        _ = sync.patch(clock: 1, ops: ops(#"{"a":["put",{"v":1}]}"#), by: "S2", id: 1, sessions: me)
        _ = sync.patch(clock: 1, ops: ops(#"{"a":["put",{"v":2}]}"#), by: "S2", id: 1, sessions: me)
        #expect(sync.records["a"] == record(#"{"v":1}"#))
    }

    @Test func foldingStopsAtTheLimits() {
        var sync = DocSync(limits: .init(maxOpsPerPush: 2, maxBytesPerPush: 1 << 20))
        _ = sync.snapshot(clock: 0, records: [:], more: false)
        _ = sync.edit(ops(#"{"a":["put",{}]}"#), ticket: 1, newID: 10)
        _ = sync.edit(ops(#"{"b":["put",{}]}"#), ticket: 2, newID: 11)
        _ = sync.edit(ops(#"{"c":["put",{}]}"#), ticket: 3, newID: 12)
        _ = sync.edit(ops(#"{"d":["put",{}]}"#), ticket: 4, newID: 13)
        #expect(sync.pending.map(\.id) == [10, 11, 13])
        #expect(sync.pending.map(\.tickets) == [[1], [2, 3], [4]])
    }

    @Test func leavingFailsEveryPendingEdit() {
        var sync = synced()
        _ = sync.edit(ops(#"{"a":["put",{}]}"#), ticket: 1, newID: 10)
        _ = sync.edit(ops(#"{"b":["put",{}]}"#), ticket: 2, newID: 11)
        #expect(settled(sync.left(doc: "d")).map(\.0) == [[1, 2]])
        #expect(sync.view.isEmpty)
    }

    // MARK: Checksums (issue 13)

    func diverged(_ actions: [DocSync.Action]) -> [UInt64] {
        actions.compactMap { if case .diverged(let clock, _, _) = $0 { clock } else { nil } }
    }

    /// Commits whose `sum` matches the confirmed records pass; one that does not is reported and answered
    /// by a re-join without `since` (patches meanwhile are ignored) until the snapshot replaces everything.
    @Test func aChecksumMismatchIsReportedAndResyncedFromASnapshot() {
        var sync = synced()
        let a = record(#"{"x":1}"#)
        let right = DocChecksum.record(id: "a", value: a)
        #expect(diverged(sync.patch(clock: 1, ops: ops(#"{"a":["put",{"x":1}]}"#), by: "S2", id: 1, sessions: me, sum: right)).isEmpty)
        #expect(sync.since == 1)
        // A result of our own push, checked the same way.
        _ = sync.edit(ops(#"{"b":["put",{}]}"#), ticket: 1, newID: 10)
        let both = right + DocChecksum.record(id: "b", value: record("{}"))
        #expect(diverged(sync.result(id: 10, action: "commit", clock: 2, ops: nil, reason: nil, sum: both)).isEmpty)
        // A commit after which the server's state is not ours.
        let wrong = DocChecksum(lane0: 1, lane1: 2)
        let actions = sync.patch(clock: 3, ops: ops(#"{"c":["put",{}]}"#), by: "S2", id: 2, sessions: me, sum: wrong)
        #expect(diverged(actions) == [3])
        #expect(sync.since == nil, "the re-join asks for a snapshot")
        #expect(!sync.synced)
        #expect(sync.patch(clock: 4, ops: ops(#"{"d":["put",{}]}"#), by: "S2", id: 3, sessions: me).isEmpty, "ignored while resyncing")
        // The snapshot replaces everything; from then on commits are checked again.
        let records = ["a": a, "z": record("{}")]
        let snapshot = sync.snapshot(clock: 4, records: records, more: false, sum: DocChecksum.of(records))
        #expect(diverged(snapshot).isEmpty)
        #expect(sync.synced && sync.since == 4 && sync.records == records)
        #expect(diverged(sync.patch(clock: 5, ops: ops(#"{"z":["remove"]}"#), by: "S2", id: 4, sessions: me, sum: right)).isEmpty)
        #expect(diverged(sync.patch(clock: 6, ops: ops(#"{"a":["remove"]}"#), by: "S2", id: 5, sessions: me, sum: right)) == [6])
    }
}
