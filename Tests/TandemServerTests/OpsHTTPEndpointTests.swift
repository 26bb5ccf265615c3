import Foundation
import Testing
import TandemTestSupport

/// Requirement 8: the ops HTTP plane (libmicrohttpd): /metrics, /healthz, /readyz, /api/status.
@Suite(.serialized, .cleanup) struct OpsHTTPEndpointTests {
    /// Doc and user ids carry the marker "zq" so the test can tell none of them leaks into a metric label.
    @Test func metricsHealthReadinessAndStatusDescribeTheNode() async throws {
        let redis = try RedisServerProcess()
        let n1 = try await InProcessNode.start(redis: redis.url, nodeID: "ops-1", stopWhenDone: true)
        let n2 = try await InProcessNode.start(redis: redis.url, nodeID: "ops-2", stopWhenDone: true)
        let alice = try await TestClient.connect(n1.url(user: "user-zq-alice"), name: "alice")
        let bob = try await TestClient.connect(n1.url(user: "user-zq-bob"), name: "bob")
        let carol = try await TestClient.connect(n1.url(user: "user-zq-carol"), name: "carol")
        let dave = try await TestClient.connect(n2.url(user: "user-zq-dave"), name: "dave")
        try await alice.join("doc-zq1")
        try await bob.join("doc-zq1")
        try await dave.join("doc-zq1")
        try await carol.join("doc-zq2")
        try await waitUntil("alice sees bob and dave") { alice.members(of: "doc-zq1") == [alice.session, bob.session, dave.session] }
        alice.presence("doc-zq1", ["cursor": 1])
        try await waitUntil("dave sees alice's cursor") { dave.state(of: alice.session, in: "doc-zq1")?["cursor"] as? Int == 1 }

        #expect(try await n1.get("/healthz").status == 200)
        #expect(try await n1.get("/readyz").status == 200)

        let response = try await n1.get("/metrics")
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain") == true)
        let text = response.body
        let required: [(String, String)] = [
            ("tandem_connections", "gauge"), ("tandem_connections_opened_total", "counter"),
            ("tandem_connections_closed_total", "counter"), ("tandem_reconnects_total", "counter"),
            ("tandem_presence_sessions", "gauge"), ("tandem_docs_active", "gauge"),
            ("tandem_presence_updates_total", "counter"), ("tandem_presence_fanout_messages_total", "counter"),
            ("tandem_presence_fanout_bytes_total", "counter"), ("tandem_presence_expired_total", "counter"),
            ("tandem_presence_tick_seconds", "histogram"), ("tandem_queue_depth", "gauge"), ("tandem_redis_up", "gauge"),
            ("tandem_redis_command_seconds", "histogram"),
        ]
        for (name, type) in required {
            #expect(text.contains("# TYPE \(name) \(type)\n"), "\(name) is exported as a \(type)")
        }
        for series in [
            #"tandem_connections_closed_total{reason="client_close"}"#, #"tandem_presence_updates_total{result="accepted"}"#,
            #"tandem_presence_updates_total{result="rate_limited"}"#, #"tandem_queue_depth{queue="outbound"}"#,
            #"tandem_queue_depth{queue="redis"}"#, "tandem_presence_tick_seconds_count", "tandem_redis_command_seconds_count",
            #"tandem_presence_tick_seconds_bucket{le="+Inf"}"#, #"tandem_presence_members{mode="full"}"#,
            #"tandem_presence_members{mode="hidden"}"#, #"tandem_presence_members{mode="none"}"#,
        ] {
            #expect(text.contains("\n\(series) "), "series \(series)")
        }
        // Label names come from a fixed set; no doc or user id appears anywhere.
        // `mode`: the presence mode (full, hidden, none) of `tandem_presence_members`; `stage`: queue or
        // commit, of `tandem_sync_push_stage_seconds`.
        let allowedLabels: Set = ["reason", "result", "queue", "code", "action", "node", "le", "route", "mode", "source", "stage"]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let open = line.firstIndex(of: "{"), let close = line.firstIndex(of: "}") else { continue }
            for pair in line[line.index(after: open)..<close].split(separator: ",") {
                let name = String(pair.split(separator: "=").first ?? "")
                #expect(allowedLabels.contains(name), "unexpected label \(name) in \(line)")
            }
        }
        #expect(!text.contains("zq"), "a doc or user id leaked into /metrics")

        #expect(try await n1.value("tandem_connections") == 3)
        #expect(try await n1.value("tandem_connections_opened_total") == 3)
        #expect(try await n1.value("tandem_presence_sessions") == 3)
        #expect(try await n1.value("tandem_docs_active") == 2)
        #expect(try await n1.value("tandem_redis_up") == 1)
        #expect(try await n1.value(#"tandem_presence_updates_total{result="accepted"}"#) == 1)
        let fanoutMessages = try await n1.value("tandem_presence_fanout_messages_total")
        #expect(fanoutMessages > 0)
        #expect(try await n1.value("tandem_presence_fanout_bytes_total") > fanoutMessages * 50)
        #expect(try await n1.value("tandem_presence_tick_seconds_count") > 0)
        #expect(try await n1.value("tandem_redis_command_seconds_count") > 0)
        #expect(try await n2.value("tandem_connections") == 1)

        // /api/status matches what the clients did.
        func docs(_ status: [String: Any]) -> [String: [String: Any]] {
            var byDoc: [String: [String: Any]] = [:]
            for case let doc as [String: Any] in JSON.array(status, at: "docs") ?? [] {
                byDoc[JSON.string(doc, at: "doc") ?? ""] = doc
            }
            return byDoc
        }
        let s1 = try await n1.status()
        #expect(JSON.string(s1, at: "node") == "ops-1")
        #expect((JSON.double(s1, at: "uptimeSeconds") ?? 0) > 0)
        #expect(JSON.int(s1, at: "connections") == 3)
        #expect(JSON.int(s1, at: "presenceSessions") == 3)
        #expect(JSON.bool(s1, at: "ready") == true)
        let d1 = docs(s1)
        #expect(Set(d1.keys) == ["doc-zq1", "doc-zq2"])
        #expect(d1["doc-zq1"].flatMap { JSON.int($0, at: "members") } == 3, "members on every node")
        #expect(d1["doc-zq1"].flatMap { JSON.int($0, at: "localMembers") } == 2)
        #expect(d1["doc-zq1"].flatMap { JSON.int($0, at: "editors") } == 3)
        #expect(d1["doc-zq2"].flatMap { JSON.int($0, at: "members") } == 1)
        let s2 = try await n2.status()
        #expect(JSON.int(s2, at: "connections") == 1)
        #expect(docs(s2)["doc-zq1"].flatMap { JSON.int($0, at: "members") } == 3)
        #expect(docs(s2)["doc-zq1"].flatMap { JSON.int($0, at: "localMembers") } == 1)

        // And it follows changes: carol leaves, her doc goes away.
        await carol.close()
        try await waitUntil("status shows carol gone") {
            let status = try await n1.status()
            return JSON.int(status, at: "connections") == 2 && Set(docs(status).keys) == ["doc-zq1"]
        }
        try await waitUntil("gauges follow") {
            let connections = try await n1.value("tandem_connections")
            let docsActive = try await n1.value("tandem_docs_active")
            let sessions = try await n1.value("tandem_presence_sessions")
            return connections == 2 && docsActive == 1 && sessions == 2
        }
        #expect(try await n1.value(#"tandem_connections_closed_total{reason="client_close"}"#) == 1)
        for client in [alice, bob, dave] { await client.close() }
    }
}
