import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Randomized convergence: clients on two nodes edit one doc concurrently (puts, nested patches, string
/// and array appends at right and stale offsets, removes), with random delays, disconnects (abort and
/// clean close) and reconnects (resumed or not, on either node) that re-push what was not answered.
/// At the end every client, a fresh client's snapshot, Redis's records and the replayed log agree byte
/// for byte, no push (session, id) was committed twice, and every client saw every clock once, in order.
///
/// The seed is printed; `TANDEM_SYNC_SEED=N swift test --filter SyncConvergenceTests` replays its choices.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncConvergenceTests {
    static let defaultSeed: UInt64 = 20_261_122

    /// Without and with a Redis restart (AOF on) in the middle of the edits: pushes refused `unavailable`
    /// are pushed again, and those whose commit executed before the connection broke are recognised. Each
    /// with one group commit per doc in Redis at a time (the default) and with two pipelined
    /// (`--max-batches-in-flight 2`: the second decided against what the first will leave).
    @Test(arguments: [false, true], [1, 2])
    func randomConcurrentEditsConverge(redisRestart: Bool, batchesInFlight: Int) async throws {
        let seed = ProcessInfo.processInfo.environment["TANDEM_SYNC_SEED"].flatMap { UInt64($0) } ?? Self.defaultSeed
        print("SyncConvergenceTests seed: \(seed) (rerun with TANDEM_SYNC_SEED=\(seed)), Redis restart: \(redisRestart), batches in flight: \(batchesInFlight)")
        let cluster = try await SyncCluster.start(
            nodes: 2, redisArguments: redisRestart ? ["--appendonly", "yes", "--appendfsync", "always"] : []
        ) { $0.maxBatchesInFlight = batchesInFlight }
        let doc = "converge:1"
        let redis = cluster.redis

        var agents: [EditingAgent] = []
        for i in 0..<6 {
            let agent = try await EditingAgent(
                index: i, cluster: cluster, doc: doc, random: SplitMix64(seed: seed &+ UInt64(i) &* 0x9E37_79B9))
            agents.append(agent)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for agent in agents {
                group.addTask { try await agent.run(operations: 50) }
            }
            if redisRestart {
                group.addTask {
                    try await Task.sleep(for: .milliseconds(300))
                    redis.stop()
                    try await Task.sleep(for: .milliseconds(400))
                    try redis.start()
                }
            }
            try await group.waitForAll()
        }
        for agent in agents { try await agent.settle() }
        try await cluster.waitConverged(doc, clients: agents.map(\.client))

        let stats = agents.map(\.stats).reduce(EditingAgent.Stats(), +)
        print("SyncConvergenceTests: head \(SyncRedis.head(redis, doc)), \(stats)")

        // Every client's records equal Redis's, byte for byte.
        let stored = SyncRedis.records(redis, doc)
        #expect(!stored.isEmpty)
        for agent in agents { cluster.expectRecordsEqualRedis(agent.client, doc) }

        // A fresh client on each node gets the same state as a snapshot.
        for node in [0, 1] {
            let fresh = try await cluster.client("fresh\(node)", node: node)
            try await fresh.join(doc)
            #expect(fresh.view(doc).chunks.map(\.type) == ["snapshot"])
            cluster.expectRecordsEqualRedis(fresh, doc)
        }

        // The log replayed from empty gives the same records, versions and tombstones.
        let log = SyncRedis.log(redis, doc)
        #expect(log.map(\.clock) == Array(1...SyncRedis.head(redis, doc)))
        let replayed = try SyncRedis.replay(log)
        #expect(replayed.serializedRecords == stored, "log replay equals Redis's records")
        #expect(SyncRedis.pairs(redis.command("HGETALL", SyncRedis.key(doc, "versions"))) == replayed.versions.mapValues { "\($0)" })
        let tombs = SyncRedis.pairs(redis.command("ZRANGE", SyncRedis.key(doc, "tombs"), "0", "-1", "WITHSCORES"))
        #expect(tombs == replayed.tombstones.mapValues { "\($0)" })
        // …and so does `sync` from 0 on a client that has nothing.
        let reader = try await cluster.client("reader", node: 1)
        try await reader.join(doc)
        reader.sendJSON(.object(["t": .string("sync"), "doc": .string(doc), "from": .number(UInt64(0))]))
        try await waitUntil("sync from 0 answered") { reader.view(doc).explicitReplies.contains { $0["more"] == .bool(false) } }
        var fromLog = DocReplica()
        for reply in reader.view(doc).explicitReplies {
            for entry in reply["entries"]?.arrayValue ?? [] {
                let e = try #require(entry.objectValue)
                #expect(fromLog.apply(clock: try #require(e.clock()), ops: try Ops(json: try #require(e["ops"]))))
            }
        }
        #expect(fromLog.serializedRecords == stored)

        // Re-pushes after reconnects never committed a push twice: (session, id) is unique in the log.
        #expect(SyncRedis.pushesCommittedTwice(redis, doc) == [])

        // The run exercised what it claims to.
        #expect(stats.rebases > 0 && stats.voids > 0 && stats.reconnects >= 3 && stats.resumed > 0, "\(stats)")
        if redisRestart { #expect(stats.unavailable > 0, "pushes were refused while Redis was down: \(stats)") }
        await cluster.finish()
    }
}

/// A deterministic generator (SplitMix64), so a seed reproduces every random choice.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One editing client of the convergence test.
final class EditingAgent: @unchecked Sendable {
    // @unchecked: used by one task at a time (its `run`, then `settle`).
    struct Stats: CustomStringConvertible {
        var pushes = 0, commits = 0, rebases = 0, voids = 0, duplicates = 0, inCatchUp = 0, rePushes = 0
        var reconnects = 0, aborts = 0, resumed = 0, unavailable = 0
        static func + (a: Stats, b: Stats) -> Stats {
            Stats(
                pushes: a.pushes + b.pushes, commits: a.commits + b.commits, rebases: a.rebases + b.rebases,
                voids: a.voids + b.voids, duplicates: a.duplicates + b.duplicates, inCatchUp: a.inCatchUp + b.inCatchUp,
                rePushes: a.rePushes + b.rePushes,
                reconnects: a.reconnects + b.reconnects, aborts: a.aborts + b.aborts, resumed: a.resumed + b.resumed,
                unavailable: a.unavailable + b.unavailable)
        }
        var description: String {
            "\(pushes) pushes: \(commits) commits, \(rebases) rebases, \(voids) void, \(duplicates) duplicate, "
                + "\(inCatchUp) seen in a catch-up, \(rePushes) re-pushed; \(reconnects) reconnects (\(aborts) aborted, \(resumed) resumed), \(unavailable) unavailable"
        }
    }

    struct Pending {
        var id: Int
        var base: UInt64
        var ops: JSONValue
    }

    let index: Int
    let client: SyncClient
    let cluster: SyncCluster
    let doc: String
    var random: SplitMix64
    private(set) var stats = Stats()
    private var pending: [Pending] = []
    /// Pending pushes to send again (answered `unavailable`, or sent on a connection since lost).
    private var needsResend: Set<Int> = []
    private var recovering = false
    private var nextID = 1
    private let user: String

    init(index: Int, cluster: SyncCluster, doc: String, random: SplitMix64) async throws {
        self.index = index
        self.cluster = cluster
        self.doc = doc
        self.random = random
        user = "agent\(index)"
        client = try await cluster.client(user, node: index % 2)
        try await client.join(doc)
    }

    private func roll(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }

    func run(operations: Int) async throws {
        for _ in 0..<operations {
            try await Task.sleep(for: .milliseconds(roll(20)))
            collectAnswers()
            if roll(100) < 5 {
                // Often with pushes still in flight, so some are answered on no connection.
                if roll(2) == 0, !recovering { for _ in 0...roll(3) { pushRandom() } }
                try await reconnect()
                continue
            }
            // At most 4 pushes in flight, and none new while recovering from `unavailable`.
            try await waitUntil("\(user): answers to \(pending.map(\.id)) (to resend \(needsResend), recovering \(recovering)) session \(client.session); \(client.socket.summary())", timeout: .seconds(20)) {
                self.collectAnswers()
                return self.pending.count < 4 && !self.recovering
            }
            pushRandom()
        }
    }

    private func pushRandom() {
        let view = client.view(doc)
        let base = roll(100) < 10 ? view.head - min(view.head, UInt64(roll(4))) : view.head
        let push = Pending(id: nextID, base: base, ops: randomOps(view.records))
        nextID += 1
        pending.append(push)
        stats.pushes += 1
        client.push(doc, id: .number(push.id), base: push.base, ops: push.ops)
    }

    /// Waits until every push is answered (re-pushing after errors), the client live.
    func settle() async throws {
        try await waitUntil("\(user): all pushes answered, pending \(pending.map(\.id)); \(client.socket.summary())", timeout: .seconds(30)) {
            self.collectAnswers()
            return self.pending.isEmpty
        }
    }

    /// Takes answered pushes off `pending`, and recovers from `unavailable`.
    ///
    /// Redis remembers only a session's *last* committed push id, so a re-push is recognised as a
    /// duplicate only if nothing else of the session committed since. After an `unavailable` (whose
    /// write may have executed) the client therefore re-sends its pushes oldest first, one at a time,
    /// and pushes nothing new until they are all answered.
    private func collectAnswers() {
        let view = client.view(doc)
        pending.removeAll { push in
            let key = JSONValue.number(push.id).serializedString
            if let result = view.results[key] {
                switch (result.string("action"), result.string("reason")) {
                case ("commit", _): stats.commits += 1
                case ("rebase", _): stats.rebases += 1
                case (_, "duplicate"): stats.duplicates += 1
                default: stats.voids += 1
                }
                return true
            }
            if view.ownCommitsInLog[key] != nil {
                stats.inCatchUp += 1
                return true
            }
            if let error = view.pushErrors[key] {
                if error.string("code") == "unavailable" {
                    if !needsResend.contains(push.id) { stats.unavailable += 1 }
                    needsResend.insert(push.id)
                    client.forgetAnswer(doc, id: .number(push.id))
                    recovering = true
                    return false
                }
                Issue.record("\(user): push \(push.id) refused: \(error)")
                return true
            }
            return false
        }
        if pending.isEmpty { recovering = false }
        if let oldest = pending.first, needsResend.contains(oldest.id) {
            needsResend.remove(oldest.id)
            resend(oldest)
        }
    }

    private func resend(_ push: Pending) {
        client.forgetAnswer(doc, id: .number(push.id))
        client.push(doc, id: .number(push.id), base: push.base, ops: push.ops)
    }

    /// Drops the connection (abort or clean close), reconnects to a random node (resuming the session or
    /// not), catches up from its head and re-pushes what is still unanswered.
    private func reconnect() async throws {
        let session = client.session
        if roll(100) < 60 {
            client.socket.abort()
            stats.aborts += 1
        } else {
            await client.socket.close()
        }
        try await Task.sleep(for: .milliseconds(roll(50)))
        let resume = roll(100) < 60
        let node = roll(2)
        try await client.reconnect(cluster.nodes[node].url(user: user, query: resume ? "resume=\(session)" : ""))
        stats.reconnects += 1
        if resume, client.session == session { stats.resumed += 1 }
        try await client.join(doc, since: client.view(doc).head)
        collectAnswers()
        // Everything unanswered goes again, in order; while recovering from `unavailable` one at a time,
        // oldest first (collectAnswers sends the next when the previous is answered).
        needsResend = Set(pending.map(\.id))
        for push in recovering ? Array(pending.prefix(1)) : pending {
            stats.rePushes += 1
            needsResend.remove(push.id)
            resend(push)
        }
    }

    // MARK: Random edits

    private static let fragments = ["a", "b", "é", "😀", "中", " ", "\"", "\\", "\n", "xyz"]
    private static let numbers = ["0", "-1", "1.50", "2e3", "42", "-0.25", "12345678901234567890"]

    private func string() -> JSONValue {
        .string((0..<(1 + roll(4))).map { _ in Self.fragments[roll(Self.fragments.count)] }.joined())
    }

    private func number() -> JSONValue { .number(Self.numbers[roll(Self.numbers.count)]) }

    private func record() -> JSONValue {
        var fields: [String: JSONValue] = ["title": string()]
        if roll(2) == 0 { fields["body"] = string() }
        if roll(2) == 0 { fields["tags"] = .array((0..<roll(3)).map { _ in number() }) }
        if roll(2) == 0 { fields["n"] = number() }
        if roll(2) == 0 { fields["meta"] = .object(["color": string(), "deep": .object(["x": number()])]) }
        return .object(fields)
    }

    /// An offset that is right most of the time, stale (too short or too long) otherwise.
    private func offset(_ length: Int) -> JSONValue {
        let off = roll(100) < 70 ? length : max(0, length + roll(5) - 2)
        return .number(off)
    }

    private func diff(_ record: [String: JSONValue]) -> JSONValue {
        var fields: [String: JSONValue] = [:]
        for _ in 0..<(1 + roll(3)) {
            switch roll(9) {
            case 0: fields["title"] = .array([.string("put"), string()])
            case 1: fields[["body", "tags", "n", "meta"][roll(4)]] = .array([.string("delete")])
            case 2, 3:
                let length = record["body"]?.stringValue?.utf16.count ?? 0
                fields["body"] = .array([.string("append"), string(), offset(length)])
            case 4:
                let length = record["tags"]?.arrayValue?.count ?? 0
                fields["tags"] = .array([.string("append"), .array((0..<(1 + roll(2))).map { _ in number() }), offset(length)])
            case 5:
                fields["meta"] = .array([
                    .string("patch"), .object(["color": .array([.string("put"), string()])]),
                ])
            case 6:
                fields["meta"] = .array([
                    .string("patch"),
                    .object(["deep": .array([.string("patch"), .object(["x": .array([.string("put"), number()])])])]),
                ])
            case 7:
                // Void unless "n" happens to be missing: appending a string to a number.
                fields["n"] = .array([.string("append"), string(), .number(0)])
            default:
                fields["n"] = .array([.string("put"), number()])
            }
        }
        return .object(fields)
    }

    private func randomOps(_ records: [String: JSONValue]) -> JSONValue {
        var ops: [String: JSONValue] = [:]
        for _ in 0..<(1 + roll(3)) {
            let id = "r\(roll(10))"
            let roll = self.roll(100)
            if case .object(let current)? = records[id], roll >= 15 {
                ops[id] = roll < 25 ? .array([.string("remove")]) : .array([.string("patch"), diff(current)])
            } else if records[id] == nil, roll >= 85 {
                // A patch of a missing record (void).
                ops[id] = .array([.string("patch"), .object(["title": .array([.string("put"), string()])])])
            } else {
                ops[id] = .array([.string("put"), record()])
            }
        }
        return .object(ops)
    }
}
