import Foundation
import NIOCore
import NIOPosix
import TandemCore
import TandemRedis
@testable import TandemServer
import TandemTestSupport
import Testing

/// `GroupCommitScript` against a real redis-server: a batch of decided pushes is one atomic step —
/// consecutive clocks, final record values, one log entry, one message, idempotent re-push, trimming
/// and the doc TTL — and writes nothing at all when any of its checks fails.
@Suite(.serialized, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct GroupCommitScriptTests {
    /// One redis-server, one client, one store, per test.
    final class Fixture: @unchecked Sendable {
        let server: RedisServerProcess
        let client: RedisClient
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var loop: EventLoop { group.next() }

        private init(arguments: [String]) throws {
            server = try RedisServerProcess(extraArguments: arguments)
            client = try RedisClient(url: server.url)
            client.start()
        }

        static func start(arguments: [String] = []) async throws -> Fixture {
            let fixture = try Fixture(arguments: arguments)
            try await waitUntil("connected to Redis") { fixture.client.isConnected }
            return fixture
        }

        deinit {
            client.shutdown()
            try? group.syncShutdownGracefully()
        }

        func store(node: String = "node-a", retention: Int = 10_000, maxDocRecords: Int = 100_000) -> SyncStore {
            SyncStore(redis: client, nodeID: node, retention: retention, maxDocRecords: maxDocRecords)
        }

        func redis(_ arguments: String...) -> String { server.command(arguments: arguments) }

        /// `total_commands_processed`: every command, the ones Lua scripts run included.
        var commandsProcessed: Int {
            let info = redis("INFO", "stats")
            for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("total_commands_processed:") {
                return Int(line.dropFirst("total_commands_processed:".count).trimmingCharacters(in: .whitespaces)) ?? -1
            }
            return -1
        }

        /// Calls of one command since the last `CONFIG RESETSTAT`.
        func calls(_ command: String) -> Int {
            let info = redis("INFO", "commandstats")
            for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_\(command):") {
                for part in line.split(separator: ",") {
                    if let range = part.range(of: "calls=") { return Int(part[range.upperBound...]) ?? -1 }
                }
            }
            return 0
        }

        /// Everything stored for the doc, for "nothing was written" comparisons.
        func dump(_ doc: String) -> [String] {
            GroupCommitScript.keys(doc).map { key in
                let type = redis("TYPE", key)
                switch type {
                case "string": return "\(key)=\(redis("GET", key))"
                case "hash": return "\(key)=\(redis("HGETALL", key).split(whereSeparator: \.isNewline).sorted())"
                case "zset": return "\(key)=\(redis("ZRANGE", key, "0", "-1", "WITHSCORES"))"
                case "stream": return "\(key)=\(redis("XRANGE", key, "-", "+"))"
                default: return "\(key)=\(type)"
                }
            }
        }

        func pttl(_ key: String) -> Int { Int(redis("PTTL", key)) ?? -3 }
    }

    struct Push {
        var sid: String
        var id: JSONValue
        var ops: String
        var base: UInt64? = nil
    }

    static let sessionA = "AAAAAAAAAAAAAAAAAAAAAA"
    static let sessionB = "BBBBBBBBBBBBBBBBBBBBBB"

    /// Decides `pushes` as ONE batch with the real pipeline against `replica`: they are queued before the
    /// pipeline has a replica, so loading it decides them all together.
    func decide(_ pushes: [Push], against replica: DocReplica, limits: SyncLimits = SyncLimits()) throws -> CommitBatch {
        var settings = PushPipelineSettings(nodeID: "node-a")
        settings.limits = limits
        settings.maxBatchPushes = 10_000
        settings.maxBatchBytes = 1 << 30
        settings.maxQueuedPushes = 100_000
        var pipeline = PushPipeline<Int>(settings: settings, randomSeed: 1)
        for (i, push) in pushes.enumerated() {
            let ops = try Ops(json: try JSONParser.parse(push.ops))
            let refused = pipeline.push(
                from: i, sessionID: push.sid, pushID: push.id, base: push.base ?? replica.head, ops: ops, bytes: push.ops.utf8.count,
                readOnly: false, now: 0)
            #expect(refused.isEmpty, "\(refused)")
        }
        let actions = pipeline.load(replica, retainedFrom: 1, attaching: pushes.indices.map { ($0, replica.head) }, now: 0)
        for action in actions {
            if case .commit(let batch) = action { return batch }
        }
        throw TestFailure("the pushes formed no batch: \(actions); queued \(pipeline.queuedCount), head \(pipeline.head)")
    }

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func commit(_ store: SyncStore, _ fixture: Fixture, _ doc: String, _ pushes: [Push], docTTLMs: Int = 0,
        logMode: GroupCommitScript.LogMode = .batch) async throws -> CommitBatchOutcome
    {
        // Read the replica with the commit's TTL: a load also keeps the doc's TTL (see `SyncScripts.load`),
        // and a loader with another TTL would change it. The load costs one PTTL of its own.
        let loader = SyncStore(
            redis: store.redis, nodeID: store.nodeID, retention: store.retention, maxDocRecords: store.maxDocRecords,
            docTTLMs: Int64(docTTLMs))
        let (replica, _) = try await loader.load(doc: doc, on: fixture.loop).get()
        let batch = try decide(pushes, against: replica)
        return try await store.commit(doc: doc, batch: batch, docTTLMs: docTTLMs, logMode: logMode, on: fixture.loop).get()
    }

    func ops(_ text: String) -> JSONValue { try! JSONParser.parse(text) }

    @Test func aBatchGetsConsecutiveClocksFinalValuesOneLogEntryAndOneMessage() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:1"
        let messages = Locked<[[UInt8]]>([])
        var configuration = RedisSubscriber.Configuration(endpoint: try RedisEndpoint(url: fixture.server.url)) { _, payload in
            messages.withLock { $0.append(payload) }
        }
        let ready = Locked(false)
        configuration.onReady = { ready.withLock { $0 = true } }
        let subscriber = RedisSubscriber(configuration: configuration)
        subscriber.start()
        subscriber.subscribe(RedisKeys.channel(doc))
        try await waitUntil("subscribed") { subscriber.subscribedChannels.contains(RedisKeys.channel(doc)) }

        _ = fixture.redis("CONFIG", "RESETSTAT")
        let outcome = try await commit(store, fixture, doc, [
            Push(sid: Self.sessionA, id: .number(1), ops: #"{"a":["put",{"x":1}]}"#),
            Push(sid: Self.sessionB, id: .string("b-1"), ops: #"{"a":["patch",{"y":["put",2]}]}"#),
            Push(sid: Self.sessionA, id: .number(2), ops: #"{"b":["put",{}],"a":["patch",{"t":["append","!",0]}]}"#),
        ])
        guard case .committed(let first, let at) = outcome else { Issue.record("\(outcome)"); return }
        #expect(first == 1)
        #expect(at > 0)
        #expect(fixture.redis("GET", "tandem:{gc:1}:clock") == "3")
        #expect(fixture.redis("HGET", "tandem:{gc:1}:records", "a") == #"{"t":"!","x":1,"y":2}"#)
        #expect(fixture.redis("HGET", "tandem:{gc:1}:versions", "a") == "3")
        #expect(fixture.redis("HGET", "tandem:{gc:1}:versions", "b") == "3")
        // One stream entry, id = last clock, holding the three commits.
        #expect(fixture.redis("XLEN", "tandem:{gc:1}:log") == "1")
        #expect(fixture.redis("XRANGE", "tandem:{gc:1}:log", "-", "+").hasPrefix("3-0"))
        #expect(fixture.calls("xadd") == 1)
        #expect(fixture.calls("publish") == 1)

        let all = try await store.log(doc: doc, from: 1, count: 100, on: fixture.loop).get()
        #expect(all.map(\.clock) == [1, 2, 3])
        #expect(all.map(\.by) == [Self.sessionA, Self.sessionB, Self.sessionA])
        #expect(all.map(\.pushID) == [.number(1), .string("b-1"), .number(2)])
        #expect(all[1].ops == ops(#"{"a":["patch",{"y":["put",2]}]}"#))
        #expect(all.allSatisfy { $0.node == "node-a" && $0.committedAtMs == at })
        #expect(try await store.log(doc: doc, from: 2, count: 1, on: fixture.loop).get().map(\.clock) == [2])
        #expect(try await store.log(doc: doc, from: 3, count: 100, on: fixture.loop).get().map(\.clock) == [3])
        #expect(try await store.log(doc: doc, from: 4, count: 100, on: fixture.loop).get().isEmpty)
        let (replica, retainedFrom) = try await store.load(doc: doc, on: fixture.loop).get()
        #expect(replica.head == 3)
        #expect(retainedFrom == 1)
        #expect(replica.records["a"] == ops(#"{"t":"!","x":1,"y":2}"#))

        try await waitUntil("the batch message") { messages.value.count == 1 }
        guard case .commits(let notices)? = NodeMessage.decode(messages.value[0]) else {
            Issue.record("not a batch message: \(String(decoding: messages.value[0], as: UTF8.self))")
            return
        }
        #expect(notices == all)

        // A batch of one is written and published exactly as the single-commit script did.
        let single = try await commit(store, fixture, doc, [Push(sid: Self.sessionB, id: .number(9), ops: #"{"c":["put",{}]}"#)])
        guard case .committed(4, _) = single else { Issue.record("\(single)"); return }
        try await waitUntil("the single message") { messages.value.count == 2 }
        guard case .commit(let notice)? = NodeMessage.decode(messages.value[1]) else { Issue.record("not a commit message"); return }
        #expect(notice.clock == 4)
        let entries = (try await fixture.client.send(RedisCommand("XRANGE", "tandem:{gc:1}:log", "4-0", "+"))).array ?? []
        #expect(entries.count == 1)
        #expect(SyncStore.notice(fromStreamEntry: entries[0])?.clock == 4, "readable by nodes from before group commit")
        await subscriber.shutdown()
    }

    @Test func aBatchThatLostTheRaceOrExceedsTheDocOrRepeatsAPushWritesNothing() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store(maxDocRecords: 4)
        let doc = "gc:2"
        _ = try await commit(store, fixture, doc, [
            Push(sid: Self.sessionA, id: .number(1), ops: #"{"a":["put",{"t":""}],"b":["put",{}]}"#)
        ])
        let (replica, _) = try await store.load(doc: doc, on: fixture.loop).get()

        // Decided against clock 1; someone else changes `a` first.
        let stale = try decide([
            Push(sid: Self.sessionB, id: .number(1), ops: #"{"c":["put",{}]}"#),
            Push(sid: Self.sessionB, id: .number(2), ops: #"{"a":["patch",{"t":["append","x",0]}]}"#),
        ], against: replica)
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionA, id: .number(2), ops: #"{"a":["patch",{"t":["put","mine"]}]}"#)])
        var before = fixture.dump(doc)
        #expect(try await store.commit(doc: doc, batch: stale, docTTLMs: 0, on: fixture.loop).get() == .conflict(head: 2))
        #expect(fixture.dump(doc) == before)

        // Over --max-doc-records (4): the batch would create three records next to a and b.
        let big = try decide([
            Push(sid: Self.sessionB, id: .number(3), ops: #"{"c":["put",{}]}"#),
            Push(sid: Self.sessionB, id: .number(4), ops: #"{"d":["put",{}],"e":["put",{}]}"#),
        ], against: try await store.load(doc: doc, on: fixture.loop).get().0)
        before = fixture.dump(doc)
        #expect(try await store.commit(doc: doc, batch: big, docTTLMs: 0, on: fixture.loop).get() == .tooLarge(head: 2, records: 5))
        #expect(fixture.dump(doc) == before)

        // A re-push of a committed id (A's 1, at clock 1; A's 2 at clock 2) among new pushes.
        let again = try decide([
            Push(sid: Self.sessionB, id: .number(5), ops: #"{"c":["put",{}]}"#),
            Push(sid: Self.sessionA, id: .number(1), ops: #"{"z":["put",{}]}"#),
            Push(sid: Self.sessionA, id: .number(2), ops: #"{"z":["put",{}]}"#),
        ], against: try await store.load(doc: doc, on: fixture.loop).get().0)
        before = fixture.dump(doc)
        #expect(try await store.commit(doc: doc, batch: again, docTTLMs: 0, on: fixture.loop).get() == .duplicate(head: 2, clocks: [1: 1, 2: 2]))
        #expect(fixture.dump(doc) == before)
    }

    @Test func onlyARecordsFirstTouchInTheBatchIsCheckedAgainstRedis() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:3"
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionA, id: .number(1), ops: #"{"gone":["put",{}]}"#)])
        // `n` is created and then patched and removed; `gone` is removed and put back: later touches
        // depend on the batch's own writes, which Redis does not have yet.
        let outcome = try await commit(store, fixture, doc, [
            Push(sid: Self.sessionA, id: .number(2), ops: #"{"n":["put",{"v":1}],"gone":["remove"]}"#),
            Push(sid: Self.sessionB, id: .number(1), ops: #"{"n":["patch",{"v":["put",2]}]}"#),
            Push(sid: Self.sessionB, id: .number(2), ops: #"{"gone":["put",{"back":true}],"tmp":["put",{}]}"#),
            Push(sid: Self.sessionA, id: .number(3), ops: #"{"tmp":["remove"]}"#),
        ])
        #expect(outcome.isCommitted)
        #expect(fixture.redis("HGET", "tandem:{gc:3}:records", "n") == #"{"v":2}"#)
        #expect(fixture.redis("HGET", "tandem:{gc:3}:versions", "n") == "3")
        #expect(fixture.redis("HGET", "tandem:{gc:3}:records", "gone") == #"{"back":true}"#)
        #expect(fixture.redis("HGET", "tandem:{gc:3}:versions", "gone") == "4")
        // A tombstone only for what is removed at the end of the batch, at the clock that removed it.
        #expect(fixture.redis("ZRANGE", "tandem:{gc:3}:tombs", "0", "-1", "WITHSCORES") == "tmp\n5")
        #expect(fixture.redis("HEXISTS", "tandem:{gc:3}:records", "tmp") == "0")
        // The replica read back equals the one that applied the commits one by one.
        var expected = DocReplica()
        for notice in try await store.log(doc: doc, from: 1, count: 10, on: fixture.loop).get() {
            expected.apply(clock: notice.clock, ops: try Ops(json: notice.ops))
        }
        let (loaded, _) = try await store.load(doc: doc, on: fixture.loop).get()
        #expect(loaded == expected)
    }

    @Test func rePushesOfEachSessionsLast64PushIdsAreRecognised() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:4"
        // Session A commits ids 1…70 in batches of 1, 5, 50 (more than the ring holds within one batch is
        // covered below) and 14; B commits a few in between.
        var next = 1
        var clocks: [Int: UInt64] = [:]
        for size in [1, 5, 50, 14] {
            var pushes: [Push] = []
            for _ in 0..<size {
                pushes.append(Push(sid: Self.sessionA, id: .number(next), ops: #"{"a\#(next % 7)":["put",{"n":\#(next)}]}"#))
                next += 1
            }
            pushes.append(Push(sid: Self.sessionB, id: .string("b\(next)"), ops: #"{"b":["put",{}]}"#))
            guard case .committed(let first, _) = try await commit(store, fixture, doc, pushes) else {
                Issue.record("not committed"); return
            }
            for k in 0..<size { clocks[next - size + k] = first + UInt64(k) }
        }
        let (replica, _) = try await store.load(doc: doc, on: fixture.loop).get()
        for id in 7...70 {
            let batch = try decide([Push(sid: Self.sessionA, id: .number(id), ops: #"{"z":["put",{}]}"#)], against: replica)
            let outcome = try await store.commit(doc: doc, batch: batch, docTTLMs: 0, on: fixture.loop).get()
            #expect(outcome == .duplicate(head: replica.head, clocks: [0: clocks[id]!]), "id \(id)")
        }
        // Beyond the last 64, ids are forgotten (only the last 64 are promised): 1…6 would commit again.
        let forgotten = try decide([Push(sid: Self.sessionA, id: .number(6), ops: #"{"z":["put",{}]}"#)], against: replica)
        #expect(try await store.commit(doc: doc, batch: forgotten, docTTLMs: 0, on: fixture.loop).get().isCommitted)
        // The record stays bounded: a counter, 64 slots and 64 lookups per session.
        let fields = fixture.redis("HKEYS", "tandem:{gc:4}:pushids").split(whereSeparator: \.isNewline)
        #expect(fields.filter { $0.hasPrefix(Self.sessionA) }.count == 1 + 64 + 64)

        // One batch with more pushes of one session than the ring holds.
        let doc2 = "gc:4b"
        let many = (1...100).map { Push(sid: Self.sessionA, id: .number($0), ops: #"{"r\#($0)":["put",{}]}"#) }
        #expect(try await commit(store, fixture, doc2, many).isCommitted)
        let replica2 = try await store.load(doc: doc2, on: fixture.loop).get().0
        let repeated = try decide((37...100).map { Push(sid: Self.sessionA, id: .number($0), ops: #"{"z":["put",{}]}"#) }, against: replica2)
        guard case .duplicate(_, let dups) = try await store.commit(doc: doc2, batch: repeated, docTTLMs: 0, on: fixture.loop).get() else {
            Issue.record("expected duplicates"); return
        }
        #expect(dups.count == 64)
        #expect(dups[0] == 37 && dups[63] == 100)
        let fields2 = fixture.redis("HKEYS", "tandem:{gc:4b}:pushids").split(whereSeparator: \.isNewline)
        #expect(fields2.count == 1 + 64 + 64)
    }

    @Test func rePushesCommittedByTheSingleCommitScriptAreRecognisedToo() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:5"
        // What a node from before group commit wrote.
        for id in 1...3 {
            let replica = try await store.load(doc: doc, on: fixture.loop).get().0
            let decision = try replica.decide(ops: try Ops(json: ops(#"{"a":["put",{"v":\#(id)}]}"#)), base: replica.head, limits: SyncLimits())
            _ = try await store.commit(doc: doc, sessionID: Self.sessionA, pushID: .string("old-\(id)"), decision: decision, on: fixture.loop).get()
        }
        let replica = try await store.load(doc: doc, on: fixture.loop).get().0
        let batch = try decide([
            Push(sid: Self.sessionB, id: .number(1), ops: #"{"b":["put",{}]}"#),
            Push(sid: Self.sessionA, id: .string("old-2"), ops: #"{"a":["put",{"v":2}]}"#),
        ], against: replica)
        #expect(try await store.commit(doc: doc, batch: batch, docTTLMs: 0, on: fixture.loop).get() == .duplicate(head: 3, clocks: [1: 2]))
        // Both kinds of entry read back as one contiguous log.
        #expect(try await commit(store, fixture, doc, [
            Push(sid: Self.sessionB, id: .number(1), ops: #"{"b":["put",{}]}"#),
            Push(sid: Self.sessionB, id: .number(2), ops: #"{"c":["put",{}]}"#),
        ]).isCommitted)
        #expect(try await store.log(doc: doc, from: 2, count: 3, on: fixture.loop).get().map(\.clock) == [2, 3, 4])
    }

    @Test func theLogTombstonesAndIdleSessionsAreTrimmedByRetention() async throws {
        // Small stream nodes, so that approximate trimming (whole nodes) is visible at test sizes.
        let fixture = try await Fixture.start(arguments: ["--stream-node-max-entries", "4"])
        let retention = 100
        let store = fixture.store(retention: retention)
        let doc = "gc:6"
        // An early session that goes idle, a removal whose tombstone ages out.
        _ = try await commit(store, fixture, doc, [Push(sid: "IDLEIDLEIDLEIDLEIDLE00", id: .number(1), ops: #"{"x":["put",{}]}"#)])
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionA, id: .number(0), ops: #"{"x":["remove"]}"#)])
        var id = 1
        for round in 0..<60 {
            let size = [1, 3, 7, 12][round % 4]
            var pushes: [Push] = []
            for _ in 0..<size {
                pushes.append(Push(sid: round % 2 == 0 ? Self.sessionA : Self.sessionB, id: .number(id), ops: #"{"r\#(id % 9)":["put",{"i":\#(id)}]}"#))
                id += 1
            }
            #expect(try await commit(store, fixture, doc, pushes).isCommitted)
        }
        let head = UInt64(fixture.redis("GET", "tandem:{gc:6}:clock"))!
        #expect(head > 300)
        let (_, retainedFrom) = try await store.load(doc: doc, on: fixture.loop).get()
        // At least the retention is kept, and not much more (one stream node of slack).
        #expect(retainedFrom <= head - UInt64(retention) + 1)
        #expect(retainedFrom > head - UInt64(retention) - 5 * 12)
        let log = try await store.log(doc: doc, from: retainedFrom, count: 10_000, on: fixture.loop).get()
        #expect(log.map(\.clock) == Array(retainedFrom...head))
        #expect(fixture.redis("ZCARD", "tandem:{gc:6}:tombs") == "0")
        #expect(fixture.redis("ZSCORE", "tandem:{gc:6}:pushlast", "IDLEIDLEIDLEIDLEIDLE00").isEmpty)
        let fields = fixture.redis("HKEYS", "tandem:{gc:6}:pushids").split(whereSeparator: \.isNewline)
        #expect(!fields.contains { $0.hasPrefix("IDLEIDLEIDLEIDLEIDLE00") })
        #expect(fixture.redis("ZCARD", "tandem:{gc:6}:pushlast") == "2")
    }

    @Test func theDocTTLIsSetOnEveryKeyAndRefreshedOnlyWhenItRanDown() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:7"
        let ttl = 10 * 3_600_000
        let keys = GroupCommitScript.keys(doc)
        _ = try await commit(store, fixture, doc, [
            Push(sid: Self.sessionA, id: .number(1), ops: #"{"a":["put",{}]}"#),
            Push(sid: Self.sessionA, id: .number(2), ops: #"{"b":["put",{}]}"#),
        ], docTTLMs: ttl)
        for key in keys.prefix(7) where key != keys[3] {
            #expect(fixture.pttl(key) > ttl - 60_000, "\(key) \(fixture.pttl(key))")
        }
        // A busy doc: one PTTL per batch, no PEXPIRE while the clock's TTL is within an hour of the TTL.
        _ = fixture.redis("CONFIG", "RESETSTAT")
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionA, id: .number(3), ops: #"{"a":["put",{"v":1}]}"#)], docTTLMs: ttl)
        #expect(fixture.calls("pttl") == 2, "one for the batch, one for the load that read its replica")
        #expect(fixture.calls("pexpire") == 0)
        // Keys created later get the doc's TTL at once: the first tombstone, a new session's record.
        _ = fixture.redis("CONFIG", "RESETSTAT")
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionB, id: .number(1), ops: #"{"b":["remove"]}"#)], docTTLMs: ttl)
        #expect(fixture.pttl(keys[3]) > ttl - 60_000)
        #expect(fixture.calls("pexpire") == 1, "only the new tombstone key")
        // Every record removed (the hashes vanish) and one created again: they come back with a TTL.
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionB, id: .number(2), ops: #"{"a":["remove"]}"#)], docTTLMs: ttl)
        #expect(fixture.redis("EXISTS", keys[1]) == "0")
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionB, id: .number(3), ops: #"{"c":["put",{}]}"#)], docTTLMs: ttl)
        #expect(fixture.pttl(keys[1]) > ttl - 60_000)
        #expect(fixture.pttl(keys[2]) > ttl - 60_000)
        // Once the clock's TTL ran down by more than an hour, the next batch refreshes every key.
        _ = fixture.redis("PEXPIRE", keys[0], String(ttl - 2 * 3_600_000))
        _ = fixture.redis("PEXPIRE", keys[1], String(ttl - 2 * 3_600_000))
        _ = try await commit(store, fixture, doc, [Push(sid: Self.sessionA, id: .number(4), ops: #"{"c":["put",{"v":1}]}"#)], docTTLMs: ttl)
        #expect(fixture.pttl(keys[0]) > ttl - 60_000)
        #expect(fixture.pttl(keys[1]) > ttl - 60_000)
        // Without a TTL (0) nothing expires and no PTTL is spent.
        _ = fixture.redis("CONFIG", "RESETSTAT")
        _ = try await commit(store, fixture, "gc:7b", [Push(sid: Self.sessionA, id: .number(1), ops: #"{"a":["put",{}]}"#)], docTTLMs: 0)
        #expect(fixture.calls("pttl") == 1, "only the load's (it drops deadlines an earlier TTL left)")
        #expect(fixture.pttl("tandem:{gc:7b}:clock") == -1)
    }

    @Test func perCommitModeWritesWhatNodesFromBeforeGroupCommitRead() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:8"
        _ = fixture.redis("CONFIG", "RESETSTAT")
        let outcome = try await commit(store, fixture, doc, (1...3).map {
            Push(sid: Self.sessionA, id: .number($0), ops: #"{"r\#($0)":["put",{}]}"#)
        }, logMode: .perCommit)
        #expect(outcome.isCommitted)
        #expect(fixture.calls("xadd") == 3)
        #expect(fixture.calls("publish") == 3)
        let entries = (try await fixture.client.send(RedisCommand("XRANGE", "tandem:{gc:8}:log", "-", "+"))).array ?? []
        #expect(entries.compactMap { SyncStore.notice(fromStreamEntry: $0)?.clock } == [1, 2, 3])
    }

    @Test func batchesOfThousandsOfRecordsAreSlicedForLua() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:9"
        func wide(_ prefix: String, _ count: Int) -> String {
            "{" + (0..<count).map { #""\#(prefix)\#($0)":["put",{"i":\#($0)}]"# }.joined(separator: ",") + "}"
        }
        #expect(try await commit(store, fixture, doc, [
            Push(sid: Self.sessionA, id: .number(1), ops: wide("a", 900)),
            Push(sid: Self.sessionB, id: .number(1), ops: wide("b", 900)),
        ]).isCommitted)
        #expect(fixture.redis("HLEN", "tandem:{gc:9}:records") == "1800")
        // And again, now checking 1,800 expectations.
        #expect(try await commit(store, fixture, doc, [
            Push(sid: Self.sessionA, id: .number(2), ops: wide("a", 900)),
            Push(sid: Self.sessionB, id: .number(2), ops: wide("b", 900)),
        ]).isCommitted)
        #expect(fixture.redis("HGET", "tandem:{gc:9}:versions", "b899") == "4")
    }

    /// Redis commands per push (`total_commands_processed`, which counts the commands scripts run) and
    /// Redis time per push (`cmdstat_evalsha` µs) at batch sizes 1, 10 and 50: a steady doc where each push
    /// patches a record of its own session, with a doc TTL. (Microseconds on a shared test machine are
    /// indicative only; they are printed, not asserted.)
    @Test func redisCommandsPerPushFallWithTheBatchSize() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let ttl = 30 * 86_400_000
        var perPush: [Int: Double] = [:]
        var microseconds: [Int: Double] = [:]
        func evalshaMicroseconds() -> Double {
            let info = fixture.redis("INFO", "commandstats")
            for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_evalsha:") {
                for part in line.split(separator: ",") {
                    if let range = part.range(of: "usec=") { return Double(part[range.upperBound...]) ?? 0 }
                }
            }
            return 0
        }
        for size in [1, 10, 50] {
            let doc = "gc:cmds:\(size)"
            let sessions = (0..<10).map { String(format: "S%021d", $0) }
            _ = try await commit(store, fixture, doc, sessions.enumerated().map { i, sid in
                Push(sid: sid, id: .number(0), ops: #"{"r\#(i)":["put",{"n":0}]}"#)
            }, docTTLMs: ttl)
            // Decide against a replica kept here, so that only the commits reach Redis.
            var replica = try await store.load(doc: doc, on: fixture.loop).get().0
            let rounds = 12
            var pushes = 0
            _ = fixture.redis("CONFIG", "RESETSTAT")
            let before = fixture.commandsProcessed
            for round in 1...rounds {
                let batch = try decide((0..<size).map { k in
                    Push(sid: sessions[k % 10], id: .number(round * 1000 + k), ops: #"{"r\#(k % 10)":["patch",{"n":["put",\#(k)]}]}"#)
                }, against: replica)
                guard case .committed(let first, _) = try await store.commit(doc: doc, batch: batch, docTTLMs: ttl, on: fixture.loop).get() else {
                    Issue.record("not committed"); return
                }
                for (k, commit) in batch.commits.enumerated() {
                    replica.apply(clock: first + UInt64(k), ops: try Ops(json: commit.ops))
                }
                pushes += size
            }
            microseconds[size] = evalshaMicroseconds() / Double(pushes)
            perPush[size] = Double(fixture.commandsProcessed - before - 1) / Double(pushes)  // − the INFO itself
        }
        // The single-commit script, for comparison.
        let legacyDoc = "gc:cmds:legacy"
        _ = try await commit(store, fixture, legacyDoc, [Push(sid: Self.sessionA, id: .number(0), ops: #"{"r":["put",{"n":0}]}"#)])
        var replica = try await store.load(doc: legacyDoc, on: fixture.loop).get().0
        _ = fixture.redis("CONFIG", "RESETSTAT")
        let legacyBefore = fixture.commandsProcessed
        for round in 1...12 {
            let ops = try Ops(json: ops(#"{"r":["patch",{"n":["put",\#(round)]}]}"#))
            let decision = try replica.decide(ops: ops, base: replica.head, limits: SyncLimits())
            _ = try await store.commit(doc: legacyDoc, sessionID: Self.sessionA, pushID: .number(round), decision: decision, on: fixture.loop).get()
            replica.apply(clock: replica.head + 1, ops: decision.applied)
        }
        let legacy = Double(fixture.commandsProcessed - legacyBefore - 1) / 12
        let legacyMicroseconds = evalshaMicroseconds() / 12
        func show(_ values: [Int: Double]) -> String {
            values.sorted { $0.key < $1.key }.map { "\($0.key): \(($0.value * 100).rounded() / 100)" }.joined(separator: ", ")
        }
        print("GroupCommitScriptTests: Redis commands per push by batch size: \(show(perPush)); single-commit script: \(legacy)")
        print("GroupCommitScriptTests: Redis µs per push (EVALSHA) by batch size: \(show(microseconds)); single-commit script: \(legacyMicroseconds)")
        #expect(perPush[1]! <= 16)
        #expect(perPush[10]! <= 1.8)
        #expect(perPush[50]! <= 0.35)
    }
}

extension CommitBatchOutcome {
    var isCommitted: Bool {
        if case .committed = self { return true }
        return false
    }
}
