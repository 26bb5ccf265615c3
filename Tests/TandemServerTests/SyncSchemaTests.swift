import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Record schemas against real nodes and Redis (issue 13): `--schema-dir`, pushes discarded `invalid`
/// (nothing invalid reaches Redis), `schema_mismatch` on join, reload (in process and on SIGHUP), and the
/// schemas in /api/status and the metrics.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct SyncSchemaTests {
    static func schemaFile(version: Int, maxLength: Int) -> String {
        #"""
        {"docs": ["board:*"], "version": \#(version),
         "records": [{"name": "note", "idPrefix": "note:",
                      "schema": {"type": "object", "required": ["text"],
                                 "properties": {"text": {"type": "string", "maxLength": \#(maxLength)}}}}]}
        """#
    }

    static func schemaDirectory(version: Int = 1, maxLength: Int = 5) throws -> URL {
        let directory = try makeTemporaryDirectory(prefix: "tandem-schemas")
        try schemaFile(version: version, maxLength: maxLength).write(
            to: directory.appendingPathComponent("board.json"), atomically: true, encoding: .utf8)
        return directory
    }

    @Test func anInvalidPushIsDiscardedNamingTheRecordAndPathAndNeverReachesRedis() async throws {
        let directory = try Self.schemaDirectory()
        let cluster = try await SyncCluster.start(nodes: 2) { $0.schemaDir = directory.path }
        let doc = "board:1"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)

        alice.push(doc, id: 1, ops: #"{"note:1":["put",{"text":"abc"}]}"#)
        let c1 = try #require(try await alice.answer(doc, id: 1).clock())
        try await bob.waitHead(doc, c1)

        // Each invalid in its own way: too long through an append, a required field deleted, a put.
        for (id, ops, path) in [
            (1, #"{"note:1":["patch",{"text":["append","defg",3]}]}"#, "/text"),
            (2, #"{"note:1":["patch",{"text":["delete"]}]}"#, ""),
            (3, #"{"note:2":["put",{"text":7}],"note:3":["put",{"text":"ok"}]}"#, "/text"),
        ] {
            bob.push(doc, id: id, ops: ops)
            let answer = try await bob.answer(doc, id: id)
            #expect(answer.string("action") == "discard" && answer.string("reason") == "invalid", "\(ops)")
            guard case .object(let invalid)? = answer["invalid"] else {
                Issue.record("no invalid details: \(answer)")
                continue
            }
            #expect(invalid["record"]?.stringValue?.hasPrefix("note:") == true)
            #expect(invalid["type"]?.stringValue == "note")
            #expect(invalid["path"]?.stringValue == path, "\(ops): \(invalid)")
            #expect(invalid["message"]?.stringValue?.isEmpty == false)
        }
        // A valid one still commits; Redis holds only valid records.
        bob.push(doc, id: 4, ops: #"{"note:1":["patch",{"text":["append","de",3]}]}"#)
        #expect(try await bob.answer(doc, id: 4).string("action") == "commit")
        try await cluster.waitConverged(doc)
        #expect(SyncRedis.records(cluster.redis, doc) == ["note:1": #"{"text":"abcde"}"#])
        #expect(SyncRedis.head(cluster.redis, doc) == 2)
        #expect(try await cluster.nodes[1].value("tandem_sync_invalid_pushes_total") == 3)
        #expect(try await cluster.nodes[0].value("tandem_schemas") == 1)
        // Docs no schema matches are not checked.
        try await alice.join("free:1")
        alice.push("free:1", id: 1, ops: #"{"note:1":["put",{"text":12345678}]}"#)
        #expect(try await alice.answer("free:1", id: 1).string("action") == "commit")
        await cluster.finish()
    }

    @Test func aJoinStatingAnotherSchemaVersionGetsSchemaMismatch() async throws {
        let directory = try Self.schemaDirectory(version: 3)
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "schema-join", stopWhenDone: true) {
            $0.schemaDir = directory.path
        }
        let client = try await TestClient.connect(node.url(user: "carol"), name: "carol")
        client.sendRaw(#"{"t":"join","doc":"board:7","schema":2}"#)
        let refused = try await client.next("error", doc: "board:7")
        #expect(JSON.string(refused, at: "code") == "schema_mismatch")
        #expect(JSON.string(refused, at: "message")?.contains("version 3") == true)
        // Stating no schema for a doc without one is a mismatch too; stating none is never checked.
        client.sendRaw(#"{"t":"join","doc":"free:7","schema":1}"#)
        #expect(JSON.string(try await client.next("error", doc: "free:7"), at: "code") == "schema_mismatch")
        client.sendRaw(#"{"t":"join","doc":"board:7","schema":3}"#)
        try await client.next("joined", doc: "board:7")
        try await client.join("board:8")
        #expect(try await node.value("tandem_schema_mismatches_total") == 2)

        let status = try await node.status()
        let schemas = status["schemas"] as? [[String: Any]]
        #expect(schemas?.count == 1)
        #expect(schemas?.first?["file"] as? String == "board.json")
        #expect(schemas?.first?["version"] as? Int == 3)
        #expect(schemas?.first?["docs"] as? [String] == ["board:*"])
        await client.close()
    }

    @Test func aReloadAppliesToLoadedDocsAndABadFileKeepsTheSchemasInForce() async throws {
        let directory = try Self.schemaDirectory(version: 1, maxLength: 3)
        let cluster = try await SyncCluster.start(nodes: 1) { $0.schemaDir = directory.path }
        let node = cluster.nodes[0]
        let doc = "board:reload"
        let dave = try await cluster.client("dave", node: 0)
        try await dave.join(doc)
        dave.push(doc, id: 1, ops: #"{"note:1":["put",{"text":"abcd"}]}"#)
        #expect(try await dave.answer(doc, id: 1).string("reason") == "invalid")

        // Looser rules, a new version: the loaded doc decides its next push against them.
        try Self.schemaFile(version: 2, maxLength: 10).write(
            to: directory.appendingPathComponent("board.json"), atomically: true, encoding: .utf8)
        guard case .success(1)? = await node.node.reloadSchemas() else {
            Issue.record("reload failed")
            return
        }
        dave.push(doc, id: 2, ops: #"{"note:1":["put",{"text":"abcd"}]}"#)
        let loosened = try await dave.answer(doc, id: 2)
        #expect(loosened.string("action") == "commit", "\(loosened)")

        // A broken file: the reload fails as a whole, version 2 stays in force.
        try "{\"docs\": [\"x:*\"], \"version\": 1, \"records\": [{\"name\": \"n\", \"idPrefix\": \"n:\", \"schema\": {\"type\": \"wat\"}}]}"
            .write(to: directory.appendingPathComponent("z-broken.json"), atomically: true, encoding: .utf8)
        guard case .failure(let error)? = await node.node.reloadSchemas() else {
            Issue.record("a broken schema file was accepted")
            return
        }
        #expect("\(error)".contains("z-broken.json"))
        dave.push(doc, id: 3, ops: #"{"note:1":["put",{"text":"abcdefghijk"}]}"#)
        #expect(try await dave.answer(doc, id: 3).string("reason") == "invalid")
        #expect(try await node.value(#"tandem_schema_reloads_total{result="ok"}"#) == 1)
        #expect(try await node.value(#"tandem_schema_reloads_total{result="failed"}"#) == 1)
        await cluster.finish()
    }

    @Test func tandemServeReloadsOnSIGHUPAndRefusesToStartWithABadSchema() async throws {
        let redis = try RedisServerProcess()
        let directory = try Self.schemaDirectory(version: 1)
        let node = try await ProcessNode(arguments: ["--redis", redis.url, "--schema-dir", directory.path], nodeID: "schema-hup")
        defer { node.process.kill() }
        #expect(try await node.value("tandem_schemas") == 1)
        try Self.schemaFile(version: 2, maxLength: 5).write(
            to: directory.appendingPathComponent("second.json"), atomically: true, encoding: .utf8)
        node.process.signal(SIGHUP)
        try await waitUntil("the SIGHUP reload is counted") {
            try await node.value(#"tandem_schema_reloads_total{result="ok"}"#) == 1
        }
        #expect(try await node.value("tandem_schemas") == 2)

        try "not json".write(to: directory.appendingPathComponent("bad.json"), atomically: true, encoding: .utf8)
        let refused = try ChildProcess(
            executable: try BuiltProducts.executable(named: "tandem"),
            arguments: ["serve", "--port", "0", "--ops-port", "0", "--redis", redis.url, "--schema-dir", directory.path])
        #expect(try await refused.waitForExit(timeout: .seconds(30)) != 0)
        #expect(refused.logText.contains("bad.json"), "\(refused.logText.suffix(300))")
    }
}
