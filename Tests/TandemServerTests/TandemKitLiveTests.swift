import Foundation
import TandemCore
import TandemKit
import TandemTestSupport
import Testing

/// TandemKit (the Swift client library) against real nodes on a real Redis: presence across nodes,
/// convergence of concurrent edits, offline edits, rebase and discard, and a drained node.
@Suite(.cleanup, .serialized) struct TandemKitLiveTests {
    /// Short backoff so that reconnects happen within the tests' waits.
    func connect(_ user: String, _ urls: [String]) async throws -> TandemConnection {
        let connection = try await TandemConnection.connect(TandemConfiguration(
            urls: urls, identity: .development(user: user, name: user),
            backoff: Backoff(base: .milliseconds(20), maximum: .milliseconds(300))))
        Cleanup.current.add { await connection.close() }
        return connection
    }

    func text(_ doc: TandemDocument, _ id: String) async -> String {
        await doc.record(id)?["text"]?.stringValue ?? ""
    }

    /// Appends `suffix` to field `text` at the offset this client sees (stale when someone else appended).
    func append(_ doc: TandemDocument, _ id: String, _ suffix: String) async throws {
        let offset = await text(doc, id).utf16.count
        try await doc.submit(Ops([id: .patch(Diff(["text": .append(.string(suffix), offset: offset)]))]))
    }

    /// Both clients idle, at Redis's head, and their records equal Redis's byte for byte.
    func expectConverged(_ docs: [TandemDocument], _ cluster: SyncCluster, _ doc: String) async throws {
        try await waitUntil("clients idle at Redis's head \(SyncRedis.head(cluster.redis, doc))", timeout: .seconds(30)) {
            for handle in docs {
                guard await handle.pendingPushes() == 0, await handle.clock() == SyncRedis.head(cluster.redis, doc) else {
                    return false
                }
            }
            return true
        }
        let stored = SyncRedis.records(cluster.redis, doc)
        for handle in docs {
            let mine = await handle.records().mapValues(\.serializedString)
            #expect(mine == stored)
            #expect(await handle.records() == (await handle.confirmedRecords()))
        }
    }

    /// 25 times: a field of its own and an append to the shared text.
    func edit(_ doc: TandemDocument, _ letter: String) async throws {
        for i in 0..<25 {
            try await doc.submit(Ops(["note": .patch(Diff(["\(letter)\(i)": .put(.number(i))]))]))
            try await append(doc, "note", letter)
        }
    }

    /// Version history through the doc handle (issue 15): the version list, the state at every clock
    /// (sealed or still in the live log; a state over 1 MiB arrives in several `at` chunks and is put
    /// together), requests made at once answered one after the other (the server takes one at a time),
    /// a refusal that leaves the queue working, and a restore every member receives as a patch.
    @Test func historyReadsAndRestoresThroughTheDocHandle() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.logRetention = 4
            $0.checkpointEvery = 5
        }
        let ada = try await connect("ada", [cluster.nodes[0].wsBase])
        let bob = try await connect("bob", [cluster.nodes[1].wsBase])
        let docA = try await ada.join("kit:history")
        let docB = try await bob.join("kit:history")
        var states: [UInt64: [String: JSONValue]] = [0: [:]]
        for i in 1...32 {
            // Twenty records of 60 KB: the state is over 1 MiB from clock 18 on.
            let record: JSONValue = i <= 20 ? ["text": .string(String(repeating: "\(i % 10)", count: 60_000))] : ["v": .number(i)]
            let outcome = try await docA.put(i <= 20 ? "big\(i)" : "r\(i % 4)", record)
            guard case .commit(let clock, _) = outcome else {
                Issue.record("push \(i): \(outcome)")
                return
            }
            states[clock] = await docA.confirmedRecords()
        }
        try await waitUntil("the checkpoint at 30 is listed") {
            (try? await docB.history())?.versions.contains { $0.clock == 30 } ?? false
        }
        let page = try await docB.history()
        #expect(page.head == 32)
        #expect(page.versions.map(\.clock) == [30, 25, 20, 15, 10, 5, 0])
        #expect(try await docB.history(before: 10, limit: 1) == HistoryPage(head: 32, versions: [page.versions[5]], more: true))
        for clock: UInt64 in [0, 1, 5, 12, 19, 20, 21, 25, 26, 29, 30, 31, 32] {
            let state = try await docB.state(at: clock)
            #expect(state.clock == clock && state.records == states[clock], "clock \(clock)")
        }
        // Three at once: queued, each gets its own answer.
        async let first = docA.state(at: 3)
        async let second = docA.history(limit: 2)
        async let third = docA.state(at: 31)
        let (a, b, c) = try await (first, second, third)
        #expect(a.records == states[3] && b.versions.count == 2 && c.records == states[31])
        // A refusal fails that request only.
        await #expect(throws: TandemError.self) { try await docB.state(at: 99) }
        #expect(try await docB.state(at: 6).records == states[6])

        let restored = try await docB.restore(to: 6)
        #expect(restored.restoredFrom == 6 && restored.clock == 33 && restored.changed)
        try await waitUntil("both see the state at 6") {
            let (clock, recordsA, recordsB) = (await docA.clock(), await docA.records(), await docB.records())
            return clock == 33 && recordsA == states[6] && recordsB == states[6]
        }
        #expect(try await docA.restore(to: 6) == RestoreOutcome(restoredFrom: 6, clock: nil), "already in that state")
        #expect(try await docA.state(at: 33).records == states[6])
        await cluster.finish()
    }

    @Test func twoClientsOnTwoNodesSeeEachOthersPresenceAndConvergeOnConcurrentEdits() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let ada = try await connect("ada", [cluster.nodes[0].wsBase])
        let bob = try await connect("bob", [cluster.nodes[1].wsBase])
        let docA = try await ada.join("kit:presence", presence: ["cursor": [1, 1]])
        let docB = try await bob.join("kit:presence", presence: ["cursor": [2, 2]])
        try await waitUntil("ada sees bob's cursor") {
            await docA.members().byUser["bob"]?.first?.state["cursor"] == [2, 2]
        }
        // Many updates in a row: the throttle sends at most presenceRate a second, and the last one wins.
        for x in 0...40 { try await docB.setPresence(["cursor": [.number(x), 9]]) }
        try await waitUntil("ada sees bob's last cursor") {
            await docA.members().byUser["bob"]?.first?.state["cursor"] == [40, 9]
        }
        #expect(await docB.members().byUser["ada"]?.first?.state["cursor"] == [1, 1])

        // The same record edited by both at once: every field and every appended character arrives once.
        try await docA.put("note", ["text": ""])
        try await waitUntil("bob has the note") { await docB.record("note") != nil }
        async let edits: Void = edit(docA, "a")
        try await edit(docB, "b")
        try await edits
        try await expectConverged([docA, docB], cluster, "kit:presence")
        let note = await docA.record("note")
        for i in 0..<25 {
            #expect(note?["a\(i)"] == .number(i))
            #expect(note?["b\(i)"] == .number(i))
        }
        let final = await text(docA, "note")
        #expect(final.filter { $0 == "a" }.count == 25 && final.filter { $0 == "b" }.count == 25, "text \(final)")
    }

    @Test func presenceModesOfTheJoinAreSentAndHonoured() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let ada = try await connect("ada", [cluster.nodes[0].wsBase])
        let hal = try await connect("hal", [cluster.nodes[1].wsBase])
        let bot = try await connect("bot", [cluster.nodes[1].wsBase])
        let docA = try await ada.join("kit:modes", presence: ["cursor": [1, 1]])
        let docH = try await hal.join("kit:modes", presenceMode: .hidden)
        let docN = try await bot.join("kit:modes", presenceMode: .none)
        try await docA.setPresence(["cursor": [5, 5]])
        try await waitUntil("the hidden session sees ada's cursor") {
            await docH.members().byUser["ada"]?.first?.state["cursor"] == [5, 5]
        }
        // The none session still syncs records.
        try await docA.put("note", ["text": "hi"])
        try await waitUntil("the none session has the note") { await docN.record("note") != nil }
        #expect(await docN.members().bySession.isEmpty)
        #expect(Set(await docA.members().byUser.keys) == ["ada"])
        await #expect(throws: TandemError.self) { try await docH.setPresence(["cursor": [0, 0]]) }
        do {
            try await docN.setPresence(["cursor": [0, 0]])
            Issue.record("setPresence of a none session did not throw")
        } catch {
            #expect("\(error)".contains("presence_disabled"))
        }
    }

    @Test func editsMadeOfflineArePushedAfterTheReconnectAndNothingIsLost() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let proxy = try await TCPProxy.start(to: cluster.nodes[0].port)
        let ada = try await connect("ada", [proxy.wsURL])
        let bob = try await connect("bob", [cluster.nodes[1].wsBase])
        let docA = try await ada.join("kit:offline")
        let docB = try await bob.join("kit:offline")
        try await docA.put("log", ["text": ""])
        try await waitUntil("bob has the record") { await docB.record("log") != nil }

        // Pushes in flight when the network goes: each is applied exactly once (recognised in the catch-up by
        // session and push id, or re-sent and then committed or answered `duplicate`).
        try await append(docA, "log", "1")
        proxy.cut()
        try await waitUntil("ada noticed") {
            if case .reconnecting = await ada.state { return true }
            return false
        }
        // Offline: edits apply locally and queue; bob keeps editing on the other node.
        for digit in ["2", "3", "4"] { try await append(docA, "log", digit) }
        try await docA.submit(Ops(["offline": .put(["by": "ada"])]))
        try await docA.submit(Ops(["log": .patch(Diff(["seen": .put(true)]))]))
        try await docB.put("online", ["by": "bob"])
        try await append(docB, "log", "b")
        #expect(await docA.pendingPushes() >= 1)
        #expect(await text(docA, "log").hasSuffix("234"))

        proxy.restore()
        try await waitUntil("ada back") {
            if case .open = await ada.state { return true }
            return false
        }
        try await expectConverged([docA, docB], cluster, "kit:offline")
        let log = await text(docA, "log")
        #expect(log.sorted() == Array("1234b"), "every append exactly once: \(log)")
        #expect(log.contains("234"), "offline appends stay in order: \(log)")
        #expect(await docB.record("offline")?["by"] == "ada")
        #expect(await docA.record("online")?["by"] == "bob")
        #expect(await docB.record("log")?["seen"] == true)
    }

    @Test func aPushInFlightWhenTheConnectionDropsIsAppliedExactlyOnce() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let proxy = try await TCPProxy.start(to: cluster.nodes[0].port)
        let ada = try await connect("ada", [proxy.wsURL])
        let doc = try await ada.join("kit:inflight")
        try await doc.put("log", ["text": ""])
        // The drop lands anywhere: before the push reached the node, while it committed, after the answer left.
        for round in 0..<8 {
            try await append(doc, "log", String(round))
            proxy.cut()
            proxy.restore()
            try await waitUntil("round \(round): ada idle and open") {
                guard case .open = await ada.state else { return false }
                let synced = await doc.isSynced()
                return await doc.pendingPushes() == 0 && synced
            }
        }
        try await expectConverged([doc], cluster, "kit:inflight")
        #expect(await text(doc, "log") == "01234567")
    }

    /// Pending edits survive the process (TandemStore): each round, a push goes out and the network drops
    /// anywhere around it (before the node got it, while it committed, after the answer left), an edit is made
    /// offline, and the connection object is torn down. A new one with the same store restores the doc and,
    /// once back, every edit is committed exactly once (the catch-up recognises the previous session's commit).
    @Test func pendingEditsSurviveAProcessRestartAndCommitExactlyOnce() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let proxy = try await TCPProxy.start(to: cluster.nodes[0].port)
        let directory = try makeTemporaryDirectory(prefix: "kit-store")
        let store = TandemStore(directory: directory.path, writeDelay: .milliseconds(20))
        func start() async throws -> TandemConnection {
            let connection = try await TandemConnection.connect(TandemConfiguration(
                urls: [proxy.wsURL], identity: .development(user: "ada"),
                backoff: Backoff(base: .milliseconds(20), maximum: .milliseconds(300)), store: store))
            Cleanup.current.add { await connection.close() }
            return connection
        }
        var expected = ""
        for round in 0..<6 {
            let ada = try await start()
            let doc = try await ada.join("kit:restart")
            if round == 0 {
                try await doc.put("log", ["text": ""])
            } else {
                #expect(await text(doc, "log") == expected, "round \(round): restored with the offline edits")
            }
            let digit = String(round)
            try await append(doc, "log", digit)
            proxy.cut()
            try await waitUntil("round \(round): ada noticed") {
                if case .reconnecting = await ada.state { return true }
                return false
            }
            let letter = String(UnicodeScalar(UInt8(97 + round)))
            try await append(doc, "log", letter)
            expected += digit + letter
            #expect(await text(doc, "log") == expected)
            await ada.close()
            proxy.restore()
        }
        let ada = try await start()
        let doc = try await ada.join("kit:restart")
        try await expectConverged([doc], cluster, "kit:restart")
        #expect(await text(doc, "log") == expected, "every edit of every round exactly once")
        #expect(SyncRedis.records(cluster.redis, "kit:restart")["log"]?.contains(expected) == true)
    }

    /// A store file that cannot be read back starts the doc clean from the server (no crash, no stale edits).
    @Test func aCorruptStoreFileStartsTheDocCleanFromTheServer() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let directory = try makeTemporaryDirectory(prefix: "kit-store")
        let store = TandemStore(directory: directory.path)
        let bob = try await connect("bob", [cluster.nodes[0].wsBase])
        try await bob.join("kit:corrupt").put("note", ["text": "from the server"])
        try Data("{\"format\":1,\"doc\":\"kit:corrupt\",\"clo".utf8)
            .write(to: directory.appendingPathComponent("doc-kit=corrupt.json"))
        let ada = try await TandemConnection.connect(TandemConfiguration(
            urls: [cluster.nodes[0].wsBase], identity: .development(user: "ada"), store: store))
        Cleanup.current.add { await ada.close() }
        let doc = try await ada.join("kit:corrupt")
        #expect(await text(doc, "note") == "from the server")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("doc-kit=corrupt.json.corrupt").path))
    }

    @Test func aPatchOfARecordRemovedMeanwhileIsDiscardedAndAStaleAppendRebased() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let proxy = try await TCPProxy.start(to: cluster.nodes[0].port)
        let ada = try await connect("ada", [cluster.nodes[0].wsBase])
        let bob = try await connect("bob", [proxy.wsURL])
        let docA = try await ada.join("kit:rules")
        let docB = try await bob.join("kit:rules")
        try await docA.put("gone", ["v": 1])
        try await docA.put("text", ["text": "ab"])
        try await waitUntil("bob has both") { await docB.records().count == 2 }

        // Discard: bob patches offline a record ada removes meanwhile.
        proxy.cut()
        try await docA.remove("gone")
        async let patched = docB.patch("gone", ["v": .put(2)])
        try await waitUntil("bob's patch is pending") { await docB.pendingPushes() == 1 }
        #expect(await docB.record("gone")?["v"] == 2, "applied optimistically")
        proxy.restore()
        #expect(try await patched == .discard(reason: "void"))
        #expect(await docB.record("gone") == nil)

        // Rebase: bob appends offline at the offset he saw; ada appended meanwhile.
        try await waitUntil("bob open") {
            if case .open = await bob.state { return true }
            return false
        }
        proxy.cut()
        try await docA.patch("text", ["text": .append("A", offset: 2)])
        async let appended = docB.patch("text", ["text": .append("B", offset: 2)])
        try await waitUntil("bob's append is pending") { await docB.pendingPushes() == 1 }
        proxy.restore()
        guard case .rebase(_, let applied) = try await appended else {
            Issue.record("expected a rebase")
            return
        }
        #expect(applied == Ops(["text": .patch(Diff(["text": .append("B", offset: 3)]))]))
        try await expectConverged([docA, docB], cluster, "kit:rules")
        #expect(await text(docB, "text") == "abAB")
    }

    @Test func aDrainedNodeMovesTheClientToTheNextURL() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let ada = try await connect("ada", [cluster.nodes[0].wsBase, cluster.nodes[1].wsBase])
        let bob = try await connect("bob", [cluster.nodes[1].wsBase])
        let states = await ada.states()
        let docA = try await ada.join("kit:drain", presence: ["cursor": [1, 2]])
        let docB = try await bob.join("kit:drain")
        try await docA.put("before", ["n": 1])
        #expect(await ada.welcome?.node == "node-0")

        await cluster.nodes[0].stop()
        var reasons: [String] = []
        for await state in states {
            if case .reconnecting(_, _, let reason) = state { reasons.append(reason) }
            if case .open(let welcome) = state, welcome.node == "node-1" { break }
        }
        #expect(reasons.first?.hasPrefix("close 1001") == true, "\(reasons)")
        try await docA.put("after", ["n": 2])
        try await expectConverged([docA, docB], cluster, "kit:drain")
        try await waitUntil("bob sees ada's cursor from node-1") {
            await docB.members().byUser["ada"]?.first.map { $0.node == "node-1" && $0.state["cursor"] == [1, 2] } ?? false
        }
    }

    @Test func aServerThatDoesNotSpeakTheVersionStopsTheClient() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let url = "ws://127.0.0.1:\(cluster.nodes[0].port)/v2/ws"
        let connection = try TandemConnection(TandemConfiguration(
            urls: [url], identity: .development(user: "ada"),
            backoff: Backoff(base: .milliseconds(20), maximum: .milliseconds(200))))
        let states = await connection.states()
        let attempt = Task { try await connection.start() }
        Cleanup.current.add {
            attempt.cancel()
            await connection.close()
        }
        // Every state until the end, so a failure shows what the client saw.
        let seen = Locked<[ConnectionState]>([])
        let watcher = Task { for await state in states { seen.withLock { $0.append(state) } } }
        try await waitUntil("the client stops for good; saw \(seen.withLock { $0 })", timeout: .seconds(20)) {
            if case .closed = await connection.state { return true }
            return false
        }
        watcher.cancel()
        guard case .closed(.serverTooOld(let reason)?) = await connection.state else {
            Issue.record("expected serverTooOld, got \(await connection.state)")
            return
        }
        #expect(reason.hasPrefix("server_too_old"))
        let result = await attempt.result
        #expect(throws: TandemError.serverTooOld(reason: reason)) { try result.get() }
    }

    @Test func refusalsAreTypedAndNotRetried() async throws {
        let secret = "kit-test-secret-0123456789abcdef-0123456789"
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "kit-jwt", stopWhenDone: true) {
            $0.jwtSecret = secret
        }
        // A bad token: 401 before the upgrade, thrown at once (retrying cannot help).
        let forged = try await makeToken(secret: secret + "-other", user: "mallory", docs: ["*": "editor"])
        do {
            _ = try await TandemConnection.connect(TandemConfiguration(urls: [node.wsBase], identity: .token(forged)))
            Issue.record("connected with a forged token")
        } catch {
            guard case .unauthorized(let status, _) = error else {
                Issue.record("expected unauthorized, got \(error)")
                return
            }
            #expect(status == 401)
        }

        let token = try await makeToken(secret: secret, user: "vera", docs: ["view-*": "viewer"])
        let vera = try await TandemConnection.connect(TandemConfiguration(urls: [node.wsBase], identity: .token(token)))
        Cleanup.current.add { await vera.close() }
        // No grant for the doc: the join throws `forbidden`.
        do {
            _ = try await vera.join("edit-1")
            Issue.record("joined a doc without a grant")
        } catch {
            guard case .server(let refusal) = error else {
                Issue.record("expected a server refusal, got \(error)")
                return
            }
            #expect(refusal.code == "forbidden")
        }
        // A viewer's edit is discarded `read_only` and leaves nothing behind.
        let doc = try await vera.join("view-1")
        #expect(await doc.role() == "viewer")
        #expect(try await doc.put("r", ["a": 1]) == .discard(reason: "read_only"))
        #expect(await doc.records().isEmpty)
    }

    /// A record schema on the server (docs/schemas.md): the app states the version it was built for, a
    /// mismatch fails the join, and an edit the schema refuses is discarded `invalid` and rolled back.
    @Test func theSchemaVersionIsStatedOnJoinAndInvalidEditsAreDiscarded() async throws {
        let directory = try makeTemporaryDirectory(prefix: "kit-schemas")
        try #"{"docs":["kit:*"],"version":2,"otherRecords":"allow","records":[{"name":"note","idPrefix":"note:","schema":{"type":"object","required":["text"],"properties":{"text":{"type":"string","maxLength":5}}}}]}"#
            .write(to: directory.appendingPathComponent("kit.json"), atomically: true, encoding: .utf8)
        let cluster = try await SyncCluster.start(nodes: 1) { $0.schemaDir = directory.path }
        let ada = try await connect("ada", [cluster.nodes[0].wsBase])
        do {
            _ = try await ada.join("kit:old-app", schema: 1)
            Issue.record("a join stating version 1 was accepted by a server enforcing version 2")
        } catch {
            guard case .schemaMismatch(let doc, let stated, let message) = error else { throw error }
            #expect(doc == "kit:old-app" && stated == 1 && message.contains("version 2"))
        }
        // The refused doc is not joined: a later join of it (with the right version) starts afresh.
        _ = try await ada.join("kit:old-app", schema: 2)
        let doc = try await ada.join("kit:notes", schema: 2)
        #expect(try await doc.put("note:1", ["text": "hello"]) == .commit(clock: 1, recovered: false))
        #expect(try await doc.put("note:1", ["text": "far too long"]) == .discard(reason: "invalid"))
        #expect(await doc.record("note:1")?["text"]?.stringValue == "hello", "the optimistic edit is rolled back")
    }

    /// Issue 13: Redis's stored checksum is overwritten behind Tandem's back, so the next commit's `sum` is
    /// wrong for everyone. Each TandemKit client finds its state does not match, reports `diverged` (counted
    /// by its node) and resyncs from a snapshot; each node finds its replica does not match after that
    /// commit (counted) and reloads, and the checksum is made to describe Redis's records again. Everyone
    /// converges, and the next commit checks out everywhere.
    @Test func aWrongChecksumIsReportedByClientsAndNodesAndHealed() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "kit:sum"
        let ada = try await connect("ada", [cluster.nodes[0].wsBase])
        let bob = try await connect("bob", [cluster.nodes[1].wsBase])
        let docA = try await ada.join(doc)
        let docB = try await bob.join(doc)
        try await docA.submit(Ops(["a": .put(["x": 1])]))
        try await expectConverged([docA, docB], cluster, doc)
        let client = #"tandem_sync_divergence_total{source="client"}"#
        let node = #"tandem_sync_divergence_total{source="node"}"#
        for n in cluster.nodes { #expect(try await n.metric("tandem_sync_divergence_total") == 0) }

        let head = SyncRedis.head(cluster.redis, doc)
        // The stored checksum (`~sum` in the pushids hash since stop 31), made wrong behind Tandem's back.
        cluster.redis.command("HSET", SyncRedis.key(doc, "pushids"), "~sum", "\(head):0123456789abcdef")
        try await docB.submit(Ops(["b": .put(["y": 2])]))
        for n in cluster.nodes {
            try await waitUntil("\(n.nodeID) counted its client's report and its replica's mismatch") {
                let reports = try? await n.metric(client)
                let mismatches = try? await n.metric(node)
                return reports == 1 && (mismatches ?? 0) >= 1
            }
        }
        try await expectConverged([docA, docB], cluster, doc)
        let records = SyncRedis.records(cluster.redis, doc).mapValues { json($0) }
        try await waitUntil("Redis's checksum describes its records again") {
            cluster.redis.command("HGET", SyncRedis.key(doc, "pushids"), "~sum") == "\(head + 1):\(DocChecksum.of(records).hex)"
        }

        try await docA.submit(Ops(["c": .put(["z": 3])]))
        try await expectConverged([docA, docB], cluster, doc)
        for n in cluster.nodes { #expect(try await n.metric(client) == 1, "no new report after the heal") }
        await cluster.finish()
    }
}
