import Foundation
import Testing
import TandemServer
import TandemTestSupport

/// Issue 7, Redis keys: every key Tandem writes expires or is bounded. A doc's sync keys share one
/// deadline, `--doc-ttl` ahead, moved by commits and by every node that holds the doc open once it ran
/// down by half (an hour at most), so a doc in use never expires under a replica; the node directory
/// disappears a minute after its last node.
@Suite(.serialized, .cleanup) struct RedisKeyExpiryTests {
    static let hour: Int64 = 3_600_000

    static func syncKeys(_ doc: String) -> [String] {
        ["clock", "records", "versions", "tombs", "log", "pushids", "pushlast"].map { "tandem:{\(doc)}:\($0)" }
    }

    /// Commits a put of `a` and `b` and a remove of `b` (so every one of the seven keys exists; the legacy
    /// `pushes`/`pushers` of nodes from before group commit are never written).
    func writeDoc(_ client: TestClient, _ doc: String, base: Int = 0) async throws {
        client.sendRaw(#"{"t":"push","doc":"\#(doc)","id":"p1","base":\#(base),"ops":{"a":["put",{"v":1}],"b":["put",{"v":2}]}}"#)
        #expect(JSON.string(try await client.next("result", doc: doc), at: "action") == "commit")
        client.sendRaw(#"{"t":"push","doc":"\#(doc)","id":"p2","base":\#(base + 1),"ops":{"b":["remove"]}}"#)
        #expect(JSON.string(try await client.next("result", doc: doc), at: "action") == "commit")
    }

    /// Sets every key's TTL to `ms` in one step (one at a time, a node's head check could refresh the doc
    /// between two of them).
    func pullIn(_ redis: RedisServerProcess, _ keys: [String], to ms: Int) {
        redis.command(arguments: ["EVAL", "for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[1]) end", "\(keys.count)"] + keys + ["\(ms)"])
    }

    /// PEXPIRETIME of each key (-1: none, -2: missing).
    func deadlines(_ redis: RedisServerProcess, _ keys: [String]) -> [Int64] {
        keys.map { Int64(redis.command("PEXPIRETIME", $0)) ?? -3 }
    }

    @Test func commitsGiveAllOfADocsKeysOneDeadlineDocTTLAhead() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ttl", stopWhenDone: true) { $0.docTTLMs = Self.hour }
        #expect(try await node.value("tandem_doc_ttl_seconds") == 3600, "the setting is exported for the alert")
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("ttl-doc")
        let before = redis.nowMs
        try await writeDoc(alice, "ttl-doc")
        let after = redis.nowMs
        let keys = Self.syncKeys("ttl-doc")
        for key in keys { #expect(redis.command("EXISTS", key) == "1", "\(key) exists") }
        let first = deadlines(redis, keys)
        #expect(Set(first).count == 1, "one deadline for all seven keys: \(first)")
        #expect(first[0] >= before + Self.hour && first[0] <= after + Self.hour, "doc TTL after the commit")

        // Later writes spend nothing on it (the node holding the doc open moves it: next test), and keys
        // they create get the same deadline.
        pullIn(redis, keys, to: 2_400_000)
        let pulled = deadlines(redis, keys)
        redis.command("CONFIG", "RESETSTAT")
        alice.sendRaw(#"{"t":"push","doc":"ttl-doc","id":"p3","base":2,"ops":{"a":["patch",{"w":["put",3]}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "ttl-doc"), at: "action") == "commit")
        // (Deadlines compared, not PEXPIREAT calls counted: presence refreshes PEXPIREAT the doc's node set.)
        #expect(deadlines(redis, keys) == pulled)
        alice.sendRaw(#"{"t":"push","doc":"ttl-doc","id":"p4","base":3,"ops":{"a":["remove"]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "ttl-doc"), at: "action") == "commit")
        #expect(redis.command("EXISTS", keys[1]) == "0", "the records are gone: the doc has none")
        alice.sendRaw(#"{"t":"push","doc":"ttl-doc","id":"p5","base":4,"ops":{"c":["put",{}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "ttl-doc"), at: "action") == "commit")
        let now = deadlines(redis, keys)
        #expect(now[1] == now[0] && now[2] == now[0], "records and versions were created again with the doc's deadline: \(now)")
        #expect(now[0] == pulled[0] && Array(now[3...]) == Array(pulled[3...]))

        // A discarded push (a duplicate) writes nothing and refreshes nothing.
        pullIn(redis, keys, to: 2_400_000)
        let pulledIn = deadlines(redis, keys)
        alice.sendRaw(#"{"t":"push","doc":"ttl-doc","id":"p4","base":5,"ops":{"c":["patch",{"w":["put",5]}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "ttl-doc"), at: "reason") == "duplicate")
        #expect(deadlines(redis, keys) == pulledIn)
        await alice.close()
    }

    /// A doc that a node holds open keeps its keys (the node's periodic head check refreshes them once
    /// half the TTL is gone), so keys never expire under a replica; a doc nobody holds open is left alone.
    @Test func docsHeldOpenAreRefreshedAndIdleDocsAreNot() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "open", stopWhenDone: true) {
            $0.docTTLMs = Self.hour
            $0.reconcileMs = 200
        }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("idle-doc")
        try await writeDoc(alice, "idle-doc")
        alice.send(["t": "leave", "doc": "idle-doc"])
        _ = try await alice.next("left", doc: "idle-doc")
        try await alice.join("open-doc")
        try await writeDoc(alice, "open-doc")
        try await waitUntil("the node dropped idle-doc") {
            (try await node.status()["docs"] as? [[String: Any]] ?? []).allSatisfy { JSON.string($0, at: "doc") != "idle-doc" }
        }

        // Ten minutes left on both (below half the hour): the open one is refreshed within a few reconciles.
        let pulledIn = redis.nowMs
        pullIn(redis, Self.syncKeys("open-doc") + Self.syncKeys("idle-doc"), to: 600_000)
        let idleDeadlines = deadlines(redis, Self.syncKeys("idle-doc"))
        try await waitUntil("open-doc's keys were refreshed: \(deadlines(redis, Self.syncKeys("open-doc"))), pulled in at \(pulledIn)") {
            let open = self.deadlines(redis, Self.syncKeys("open-doc"))
            return Set(open).count == 1 && open[0] >= pulledIn + Self.hour
        }
        #expect(deadlines(redis, Self.syncKeys("idle-doc")) == idleDeadlines, "nobody holds idle-doc open")
        // Not due again for another half hour: one PTTL per check, the deadlines stay. (Compared directly:
        // counting PEXPIREAT would also count the presence refreshes, which move the doc's node set's
        // deadline with PEXPIREAT every half second.)
        let refreshed = deadlines(redis, Self.syncKeys("open-doc"))
        redis.command("CONFIG", "RESETSTAT")
        let marked = redis.calls(of: "pttl")
        try await waitUntil("a few more head checks ran") { redis.calls(of: "pttl") >= marked + 3 }
        #expect(deadlines(redis, Self.syncKeys("open-doc")) == refreshed)

        // A doc rejoined after a long pause gets its deadline back when the node loads it.
        try await alice.join("idle-doc")
        let reloaded = deadlines(redis, Self.syncKeys("idle-doc"))
        #expect(Set(reloaded).count == 1 && reloaded[0] >= pulledIn + Self.hour, "\(reloaded)")
        await alice.close()
    }

    /// `--doc-ttl 0`: no deadline, and a deadline an earlier setting left is removed by the node that
    /// holds the doc open.
    @Test func docTTLZeroMeansNeverAndUndoesEarlierDeadlines() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "never", stopWhenDone: true) {
            $0.docTTLMs = 0
            $0.reconcileMs = 200
        }
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("forever")
        try await writeDoc(alice, "forever")
        let keys = Self.syncKeys("forever")
        #expect(deadlines(redis, keys) == Array(repeating: -1, count: 7))
        // Keys without a TTL are expected here: the node says so (TandemRedisKeysWithoutTTL stays quiet).
        try await waitUntil("the memory monitor counts the seven keys", timeout: .seconds(15)) {
            try await node.value("tandem_redis_keys_without_ttl") >= 7
        }
        #expect(try await node.value("tandem_doc_ttl_seconds") == 0)
        pullIn(redis, keys, to: 600_000)
        try await waitUntil("the earlier deadlines were removed: \(deadlines(redis, keys))") {
            self.deadlines(redis, keys) == Array(repeating: -1, count: 7)
        }
        alice.sendRaw(#"{"t":"push","doc":"forever","id":"p3","base":2,"ops":{"a":["patch",{"w":["put",3]}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "forever"), at: "action") == "commit")
        #expect(deadlines(redis, keys) == Array(repeating: -1, count: 7))
        await alice.close()
    }

    /// The audit as a test: after joins, presence, pushes (puts, patches, removes), a lost socket, a leave
    /// and a resume on two nodes, every key in Redis carries an expiry.
    @Test func everyKeyTandemWritesExpires() async throws {
        let redis = try RedisServerProcess()
        let a = try await InProcessNode.start(redis: redis.url, nodeID: "audit-a", stopWhenDone: true)
        let b = try await InProcessNode.start(redis: redis.url, nodeID: "audit-b", stopWhenDone: true)
        let alice = try await TestClient.connect(a.url(user: "alice"), name: "alice")
        let bob = try await TestClient.connect(b.url(user: "bob"), name: "bob")
        for doc in ["audit-1", "audit-2"] {
            try await alice.join(doc, state: ["cursor": [1, 2]])
            try await bob.join(doc)
        }
        try await writeDoc(alice, "audit-1")
        alice.presence("audit-1", ["cursor": [3, 4]])
        bob.sendRaw(#"{"t":"push","doc":"audit-2","id":7,"base":0,"ops":{"r":["put",{"x":"y"}]}}"#)
        _ = try await bob.next("result", doc: "audit-2")
        bob.send(["t": "leave", "doc": "audit-2"])
        _ = try await bob.next("left", doc: "audit-2")
        let session = alice.session
        alice.abort()
        let back = try await TestClient.connect(b.url(user: "alice", query: "resume=\(session)"), name: "alice-back")
        try await back.join("audit-1")
        try await waitUntil("both nodes heartbeat into the directory") {
            redis.hashKeys("tandem:{nodes}:status") == ["audit-a", "audit-b"]
        }

        let keys = redis.allKeys
        #expect(keys.contains("tandem:{nodes}:live") && keys.contains("tandem:session:\(session)"))
        #expect(keys.contains("tandem:{audit-1}:presence:audit-b") && keys.contains("tandem:{audit-1}:nodes"))
        #expect(keys.count >= 20, "\(keys)")
        for key in keys {
            let ttl = Int64(redis.command("PTTL", key)) ?? -3
            #expect(ttl > 0 || ttl == -2, "\(key) has no expiry (PTTL \(ttl))")  // -2: expired meanwhile
        }
        // The directory outlives its last heartbeat by a minute (plus the heartbeat deadline), no more.
        let directoryTTL = Int64(redis.command("PTTL", "tandem:{nodes}:live")) ?? 0
        #expect(directoryTTL > 50_000 && directoryTTL <= 65_000, "\(directoryTTL)")
        // The node exports the key counts; a key without an expiry (not Tandem's) shows up.
        try await waitUntil("key counts exported") { try await a.value("tandem_redis_keys") >= 10 }
        #expect(try await a.value("tandem_redis_keys_without_ttl") == 0)
        redis.command("SET", "not-tandems", "forever")
        try await waitUntil("the key without expiry is counted") { try await a.value("tandem_redis_keys_without_ttl") == 1 }
        await back.close()
        await bob.close()
    }
}
