import Foundation
import NIOCore
import NIOPosix
import TandemCore
import TandemRedis
@testable import TandemServer
import TandemTestSupport
import Testing

/// Commit rounds (`GroupCommitScript.commitRound`, issue 8 stop 30) against real redis-servers: a round
/// of several docs gives each doc the reply, and leaves the keys, log and messages, that one
/// `GroupCommitScript.commit` call per doc gives and leaves — byte for byte, deadlines included.
extension GroupCommitScriptTests {
    /// Everything stored for the doc (`Fixture.dump`) and each key's deadline (PEXPIRETIME).
    func dumpWithDeadlines(_ fixture: Fixture, _ doc: String) -> [String] {
        fixture.dump(doc) + GroupCommitScript.keys(doc).map { "\($0) expires \(fixture.redis("PEXPIRETIME", $0))" }
    }

    /// One `commit` call for the batch, at the fixed time `nowMs` (what `SyncStore.commitReturningSums`
    /// sends, with the commits' `at` fixed so two servers can be compared).
    func commitAlone(
        _ fixture: Fixture, _ store: SyncStore, doc: String, _ batch: CommitBatch, checkLegacy: Bool, nowMs: UInt64
    ) async throws -> SyncStore.CommitReply {
        let command = SyncStore.command(
            GroupCommitScript.commit, doc: doc, batch, node: store.nodeID, retention: store.retention,
            maxDocRecords: store.maxDocRecords, docTTLMs: Int(store.docTTLMs), logMode: store.logMode, checkLegacy: checkLegacy,
            nowMs: nowMs, ownSubscribers: -1)
        return try SyncStore.reply(of: try await fixture.client.send(command, on: fixture.loop).get())
    }

    /// The same batches, as one round on server A and one call per doc on server B: the same replies,
    /// the same keys, log entries, deadlines and messages. The round holds docs that commit (a patch, a
    /// batch of three pushes from two sessions, a new doc's first commit), one whose batch conflicts, a
    /// re-push (duplicate) and one over --max-doc-records (too_large): none of them changes the others.
    @Test func aRoundOfDocsRepliesAndWritesExactlyAsOneCallPerDoc() async throws {
        let a = try await Fixture.start()
        let b = try await Fixture.start()
        let (nodeID, now): (String, UInt64) = ("node-a", 1_800_000_000_000)
        func store(_ fixture: Fixture) -> SyncStore {
            SyncStore(redis: fixture.client, nodeID: nodeID, retention: 10_000, maxDocRecords: 4, docTTLMs: 86_400_000)
        }
        let (storeA, storeB) = (store(a), store(b))
        // Replicas are read with TTL 0 (the read then drops deadlines, the same on both servers); the
        // commits set them from their fixed `at`.
        func replica(_ fixture: Fixture, _ doc: String) async throws -> DocReplica {
            try await SyncStore(redis: fixture.client, nodeID: nodeID, retention: 10_000, maxDocRecords: 4)
                .load(doc: doc, on: fixture.loop).get().replica
        }
        func onBoth(_ doc: String, _ batch: CommitBatch, at: UInt64) async throws {
            let replies = [
                try await commitAlone(a, storeA, doc: doc, batch, checkLegacy: false, nowMs: at),
                try await commitAlone(b, storeB, doc: doc, batch, checkLegacy: false, nowMs: at),
            ]
            for reply in replies {
                guard case .committed = reply.outcome else { throw TestFailure("setup of \(doc): \(reply.outcome)") }
            }
        }

        // The docs' history, the same on both servers.
        let docs = ["rd:ok", "rd:conflict", "rd:dup", "rd:big", "rd:multi", "rd:new"]
        for (k, doc) in docs.enumerated() where doc != "rd:new" {
            let ops = doc == "rd:big" ? #"{"a":["put",{}],"b":["put",{}],"c":["put",{}],"d":["put",{}]}"# : #"{"a":["put",{"n":0}]}"#
            try await onBoth(doc, try decide([Push(sid: Self.sessionA, id: .number(1), ops: ops)], against: DocReplica()), at: now + UInt64(k))
        }
        // Decided against clock 1, then someone changes `a` first: it conflicts.
        let stale = try decide(
            [Push(sid: Self.sessionB, id: .number(1), ops: #"{"a":["patch",{"n":["put",5]}]}"#)], against: try await replica(a, "rd:conflict"))
        try await onBoth(
            "rd:conflict",
            try decide(
                [Push(sid: Self.sessionA, id: .number(2), ops: #"{"a":["patch",{"n":["put",1]}]}"#)],
                against: try await replica(a, "rd:conflict")),
            at: now + 10)
        for doc in docs { _ = try await (replica(a, doc), replica(b, doc)) }
        for doc in docs { #expect(dumpWithDeadlines(a, doc) == dumpWithDeadlines(b, doc), "\(doc) before the round") }

        let batches: [(doc: String, batch: CommitBatch, checkLegacy: Bool)] = [
            ("rd:ok", try decide([Push(sid: Self.sessionB, id: .number(1), ops: #"{"a":["patch",{"m":["put",2]}]}"#)],
                against: try await replica(a, "rd:ok")), true),
            ("rd:conflict", stale, false),
            ("rd:dup", try decide([Push(sid: Self.sessionA, id: .number(1), ops: #"{"z":["put",{}]}"#)],
                against: try await replica(a, "rd:dup")), true),
            ("rd:big", try decide([Push(sid: Self.sessionB, id: .number(1), ops: #"{"e":["put",{}]}"#)],
                against: try await replica(a, "rd:big")), false),
            ("rd:multi", try decide([
                Push(sid: Self.sessionA, id: .number(2), ops: #"{"a":["patch",{"x":["put",1]}]}"#),
                Push(sid: Self.sessionB, id: .string("b-1"), ops: #"{"b":["put",{"y":2}]}"#),
                Push(sid: Self.sessionA, id: .number(3), ops: #"{"a":["patch",{"x":["put",3]}]}"#),
            ], against: try await replica(a, "rd:multi")), false),
            ("rd:new", try decide([Push(sid: Self.sessionB, id: .number(7), ops: #"{"q":["put",{"v":[1,2]}]}"#)],
                against: try await replica(a, "rd:new")), true),
        ]
        #expect(batches.map(\.doc) == docs)

        // Every message of the docs' channels, on each server, in the order heard.
        func listen(_ fixture: Fixture) async throws -> (RedisSubscriber, Locked<[[UInt8]]>) {
            let messages = Locked<[[UInt8]]>([])
            let subscriber = RedisSubscriber(
                configuration: RedisSubscriber.Configuration(endpoint: try RedisEndpoint(url: fixture.server.url)) { _, payload in
                    messages.withLock { $0.append(payload) }
                })
            subscriber.start()
            for doc in docs { subscriber.subscribe(RedisKeys.channel(doc)) }
            try await waitUntil("subscribed") { Set(docs.map(RedisKeys.channel)).isSubset(of: subscriber.subscribedChannels) }
            return (subscriber, messages)
        }
        let (subscriberA, heardA) = try await listen(a)
        defer { subscriberA.shutdown() }
        let (subscriberB, heardB) = try await listen(b)
        defer { subscriberB.shutdown() }

        _ = a.redis("CONFIG", "RESETSTAT")
        let entries = batches.map { SyncStore.RoundEntry(doc: $0.doc, batch: $0.batch, checkLegacy: $0.checkLegacy, ownSubscribers: -1) }
        let round = try await storeA.commitRound(entries, nowMs: now + 100, on: a.loop).get()
        #expect(a.calls("evalsha") + a.calls("eval") == 1, "the round is one script call")
        var alone: [SyncStore.CommitReply] = []
        for entry in batches {
            alone.append(try await commitAlone(b, storeB, doc: entry.doc, entry.batch, checkLegacy: entry.checkLegacy, nowMs: now + 100))
        }

        #expect(round.count == docs.count)
        for k in docs.indices {
            guard case .success(let reply) = round[k] else {
                Issue.record("\(docs[k]): \(round[k])")
                continue
            }
            #expect(reply.outcome == alone[k].outcome, "\(docs[k])")
            #expect(reply.sums == alone[k].sums, "\(docs[k])")
            #expect(reply.published == alone[k].published, "\(docs[k])")
            #expect(dumpWithDeadlines(a, docs[k]) == dumpWithDeadlines(b, docs[k]), "\(docs[k])")
        }
        // The shapes the round was built for.
        #expect(alone[0].outcome == .committed(firstClock: 2, atMs: now + 100))
        #expect(alone[1].outcome == .conflict(head: 2))
        #expect(alone[2].outcome == .duplicate(head: 1, clocks: [0: 1]))
        #expect(alone[3].outcome == .tooLarge(head: 1, records: 5))
        #expect(alone[4].outcome == .committed(firstClock: 2, atMs: now + 100))
        #expect(alone[5].outcome == .committed(firstClock: 1, atMs: now + 100))
        #expect(alone.filter { $0.outcome.isCommitted }.allSatisfy { !$0.sums.isEmpty }, "the checksums are known")
        #expect(a.redis("PEXPIRETIME", "tandem:{rd:new}:clock") == "\(now + 100 + 86_400_000)")

        // Three messages each (the three commits), the same bytes in the same order.
        try await waitUntil("the round's messages") { heardA.value.count == 3 && heardB.value.count == 3 }
        #expect(heardA.value == heardB.value)
    }

    /// A failed call fails every doc of the round (the caller then treats each as a failed commit).
    @Test func aRoundWhoseCallFailsFailsEveryDoc() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let batch = try decide([Push(sid: Self.sessionA, id: .number(1), ops: #"{"a":["put",{}]}"#)], against: DocReplica())
        // A doc key of the wrong type stops the script with an error at that doc's first write to it.
        #expect(fixture.redis("SET", "tandem:{rf:2}:records", "not a hash") == "OK")
        let entries = ["rf:1", "rf:2", "rf:3"].map { SyncStore.RoundEntry(doc: $0, batch: batch, checkLegacy: false, ownSubscribers: -1) }
        await #expect(throws: (any Error).self) { try await store.commitRound(entries, on: fixture.loop).get() }
    }

    /// `--redis-wait-replicas` with commit rounds: one WAIT after the round covers every doc in it. With the
    /// one replica it asks for, every doc's commit is answered and is on the replica when it is; asking for
    /// a replica that does not exist, every doc that committed fails (`notReplicated`: its pusher is told
    /// it may not be durable) while a doc that did not commit keeps its own reply.
    @Test func oneWaitAfterARoundCoversEveryDocInIt() async throws {
        let primary = try RedisServerProcess()
        let replica = try RedisServerProcess(extraArguments: ["--replicaof", "127.0.0.1", "\(primary.port)"])
        try await waitUntil("replica linked") { replica.command("INFO", "replication").contains("master_link_status:up") }
        let client = try RedisClient(url: primary.url)
        client.start()
        defer { client.shutdown() }
        try await waitUntil("connected to Redis") { client.isConnected }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let metrics = TandemMetrics(nodeID: "node-a")
        func store(replicas: Int, timeoutMs: Int) -> SyncStore {
            SyncStore(
                redis: client, nodeID: "node-a", retention: 10_000, maxDocRecords: 100_000,
                replicaAcknowledgement: ReplicaAcknowledgement(replicas: replicas, timeoutMs: timeoutMs, metrics: metrics))
        }
        let batch = try decide([Push(sid: Self.sessionA, id: .number(1), ops: #"{"a":["put",{}]}"#)], against: DocReplica())

        let docs = ["rw:1", "rw:2", "rw:3"]
        let acknowledged = try await store(replicas: 1, timeoutMs: 10_000)
            .commitRound(docs.map { SyncStore.RoundEntry(doc: $0, batch: batch, checkLegacy: false, ownSubscribers: -1) }, on: loop).get()
        #expect(acknowledged.count == docs.count)
        for (doc, result) in zip(docs, acknowledged) {
            guard case .success(let reply) = result, case .committed(let first, _) = reply.outcome else {
                throw TestFailure("\(doc): \(result)")
            }
            // WAIT counted the replica: it has applied everything the connection wrote before it.
            #expect(replica.command("GET", GroupCommitScript.keys(doc)[0]) == "\(first)", "\(doc) on the replica")
        }

        // Two replicas asked for, one exists: the WAIT times out. The docs that committed fail; a new push to
        // "rw:1" decided against the empty doc conflicts (its record exists now: nothing written, nothing to
        // acknowledge) and keeps its reply.
        let more = ["rw:4", "rw:5"]
        let stale = try decide([Push(sid: Self.sessionA, id: .number(2), ops: #"{"a":["put",{}]}"#)], against: DocReplica())
        let entries =
            [SyncStore.RoundEntry(doc: "rw:1", batch: stale, checkLegacy: false, ownSubscribers: -1)]
            + more.map { SyncStore.RoundEntry(doc: $0, batch: batch, checkLegacy: false, ownSubscribers: -1) }
        let timedOut = try await store(replicas: 2, timeoutMs: 100).commitRound(entries, on: loop).get()
        #expect(timedOut.count == 3)
        guard case .success(let reply) = timedOut[0], case .conflict(let head) = reply.outcome else {
            throw TestFailure("rw:1 should keep its own reply, a conflict: \(timedOut[0])")
        }
        #expect(head == 1)
        for (doc, result) in zip(more, timedOut.dropFirst()) {
            guard case .failure(let error) = result, case SyncStoreError.notReplicated(let got, let wanted, _) = error else {
                throw TestFailure("\(doc) should fail as not replicated: \(result)")
            }
            #expect(got == 1 && wanted == 2)
            // Committed all the same (it is in Redis and on the one replica): the pusher is told it may not be.
            try await waitUntil("\(doc) on the replica") { replica.command("GET", GroupCommitScript.keys(doc)[0]) == "1" }
        }
        try await group.shutdownGracefully()
    }
}

