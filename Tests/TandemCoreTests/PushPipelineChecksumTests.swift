import Testing
@testable import TandemCore

/// Issue 13 in the pure pipeline: each commit of a group commit carries what it adds to the doc's checksum
/// (the script adds it to the stored one), a put or remove names the version its delta assumed, commits
/// delivered with Redis's checksum are compared with the replica's, and a resync replaces the replica at
/// the same head and restarts every member from a snapshot.
@Suite struct PushPipelineChecksumTests {
    typealias P = PushPipelineTests

    static let base = DocReplica(
        head: 3, records: ["a": P.json(#"{"t":"x"}"#), "b": P.json(#"{"n":1}"#), "r": P.json("{}")],
        versions: ["a": 1, "b": 2, "r": 3])

    @Test func eachCommitsDeltaIsWhatItAddsToTheChecksum() throws {
        var pipeline = P.pipeline(replica: Self.base)
        // The first push goes alone; the next ones wait and form one batch behind it.
        guard let first = P.batch(P.push(&pipeline, 1, 1, #"{"z":["put",{}]}"#)) else { Issue.record("no batch"); return }
        let queued = [
            #"{"a":["patch",{"t":["append","y",1]}],"c":["put",{"k":[1]}]}"#,
            #"{"a":["patch",{"t":["append","z",2]}],"b":["remove"]}"#,
            #"{"b":["put",{"n":2}],"r":["put",{"replaced":true}]}"#,
            #"{"c":["remove"],"a":["put",{"t":"new"}]}"#,
        ]
        for (k, ops) in queued.enumerated() { _ = P.push(&pipeline, 1 + k % 2, 10 + k, ops) }
        let replied = pipeline.commitReplied(batchID: first.id, .committed(firstClock: 4, atMs: 1), now: 1)
        guard let batch = P.batch(replied) else { Issue.record("no second batch: \(replied)"); return }
        #expect(batch.commits.count == queued.count)
        var state = pipeline.delivery.replica!
        #expect(state.head == 4)
        for (k, commit) in batch.commits.enumerated() {
            let before = state.sum
            state.apply(clock: state.head + 1, ops: try Ops(json: commit.ops))
            #expect(before + commit.sumDelta == state.sum, "commit \(k)")
        }
        // `r` is replaced by a put (first touch: it only has to exist): its delta subtracted the hash of
        // version 3, which the script checks. `b` is first touched by a remove — the same.
        #expect(batch.expectations["r"] == .exists && batch.assumedVersions["r"] == 3)
        #expect(batch.assumedVersions["b"] == 2)
        #expect(batch.assumedVersions["a"] == nil, "a patch pins its version already")
    }

    @Test func commitsDeliveredWithAnotherChecksumMarkTheReplicaDiverged() throws {
        var pipeline = P.pipeline(replica: Self.base)
        guard let batch = P.batch(P.push(&pipeline, 1, 1, #"{"a":["put",{"t":"y"}]}"#)) else { Issue.record("no batch"); return }
        let right = Self.base.sum + batch.commits[0].sumDelta
        _ = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 4, atMs: 1), now: 1, sums: [right])
        #expect(pipeline.delivery.divergence == nil)
        #expect(pipeline.delivery.replica!.sum == right)

        // Another node's commit whose checksum is not the replica's after it.
        let wrong = DocChecksum(lane0: 7, lane1: 7)
        var remote = P.remote(5, #"{"b":["remove"]}"#)
        remote.sum = wrong
        _ = pipeline.receive([remote], now: 2)
        #expect(pipeline.delivery.divergence == SyncDoc<Int>.Divergence(clock: 5, expected: wrong, actual: pipeline.delivery.replica!.sum))

        // Resync: read again, and the copy from Redis replaces the replica at the same head.
        let resync = pipeline.resync(now: 3)
        #expect(resync.contains(.reload))
        #expect(pipeline.reloadPending)
        let fromRedis = DocReplica(head: 5, records: ["a": P.json(#"{"t":"redis"}"#)], versions: ["a": 5])
        let loaded = pipeline.load(fromRedis, retainedFrom: 1, now: 4)
        #expect(pipeline.delivery.replica == fromRedis)
        #expect(pipeline.delivery.divergence == nil)
        let restarted = loaded.compactMap { action -> Int? in
            if case .catchUp(let member, .snapshot(5, let records)) = action, records == fromRedis.records { return member }
            return nil
        }
        #expect(Set(restarted) == [1, 2], "every member restarts from a snapshot of Redis's records")
        // A plain reload at the same head (not a resync) changes nothing.
        _ = pipeline.load(DocReplica(head: 5), retainedFrom: 1, now: 5)
        #expect(pipeline.delivery.replica == fromRedis)
    }
}
