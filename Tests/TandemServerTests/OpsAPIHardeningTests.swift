import Foundation
import TandemServer
import TandemTestSupport
import Testing

/// Issue 7, the ops API under attack: out-of-range URL numbers, DNS rebinding, the document routes'
/// token, a stalled Redis, and responses that grow with the data. Real node, real Redis, real sockets.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct OpsAPIHardeningTests {
    /// One raw request with chosen headers (the harness's HTTP.get always sends Host: 127.0.0.1).
    private func get(_ node: InProcessNode, _ path: String, headers: [(String, String)]) async throws -> HTTPResult {
        let port = node.opsPort
        let raw = "GET \(path) HTTP/1.0\r\n" + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        return try await Task.detached { try HTTP.request(port: port, raw: raw) }.value
    }

    private func errorCode(_ result: HTTPResult) -> String? {
        (try? JSON.parse(result.body)).flatMap { JSON.string($0, at: "error") }
    }

    @Test func outOfRangeNumbersInURLsGet400AndTheNodeLives() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-range", stopWhenDone: true)

        // The request that used to trap on `from + 1`.
        let crash = try await node.get("/api/docs/D/log?from=18446744073709551615")
        #expect(crash.status == 400)
        #expect(crash.headers["content-type"] == "application/json")
        #expect(errorCode(crash) == "bad_request")
        #expect(crash.body.contains("from must be an integer clock 0–9007199254740991"))
        #expect(try await node.get("/healthz").status == 200, "the node is still alive")

        for path in [
            "/api/docs/D/log?from=9007199254740992", "/api/docs/D/log?from=-1", "/api/docs/D/log?from=1e3",
            "/api/docs/D/log?limit=0", "/api/docs/D/log?limit=5001", "/api/docs/D/log?limit=99999999999999999999",
            "/api/status?history=301", "/api/status?history=-1", "/api/status?history=18446744073709551616",
        ] {
            let result = try await node.get(path)
            #expect(result.status == 400, "\(path): \(result.status) \(result.body)")
            #expect(errorCode(result) == "bad_request", "\(path)")
        }
        #expect(try await node.get("/api/docs/").status == 400)
        #expect(errorCode(try await node.get("/api/nope")) == "not_found")

        // The top of the range is served (an empty page: nothing comes after it).
        let top = try await node.get("/api/docs/D/log?from=9007199254740991")
        #expect(top.status == 200)
        let page = try JSON.parse(top.body)
        #expect((JSON.value(page, at: "entries") as? [Any])?.isEmpty == true)
        #expect(JSON.bool(page, at: "more") == false)
        #expect(try await node.value(#"tandem_ops_requests_rejected_total{reason="bad_request"}"#) >= 11)
        #expect(try await node.get("/healthz").status == 200)
    }

    @Test func rebindingHostsGet421AndListedNamesAreServed() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-host", stopWhenDone: true) {
            $0.opsAllowedHosts = ["ops.example.com"]
        }
        let port = node.opsPort
        for path in ["/healthz", "/metrics", "/api/status", "/api/docs/d", "/"] {
            let rebound = try await get(node, path, headers: [("Host", "evil.example:\(port)")])
            #expect(rebound.status == 421, "\(path)")
            #expect(errorCode(rebound) == "host_not_allowed")
        }
        for host in ["ops.example.com:\(port)", "127.0.0.1:\(port)", "localhost:\(port)", "[::1]:\(port)"] {
            #expect(try await get(node, "/healthz", headers: [("Host", host)]).status == 200, "\(host)")
        }
        #expect(try await get(node, "/healthz", headers: []).status == 200, "HTTP/1.0 without Host")
        #expect(try await node.value(#"tandem_ops_requests_rejected_total{reason="host_not_allowed"}"#) == 5)
    }

    @Test func theDocumentRoutesNeedTheOpsTokenAndTheRestStaysOpen() async throws {
        let token = "s3cret-ops-token-0123456789"
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-token", stopWhenDone: true) {
            $0.opsToken = token
        }
        let alice = try await TestClient.connect(node.url(user: "alice-zq"), name: "Alice")
        try await alice.join("doc-zq")

        for headers in [[], [("Authorization", "Bearer wrong-token-0123456789ab")], [("Authorization", "Basic \(token)")],
                        [("Authorization", "Bearer \(token)x")], [("Authorization", "Bearer \(token.dropLast())")]] {
            for path in ["/api/docs/doc-zq", "/api/docs/doc-zq/log"] {
                let refused = try await get(node, path, headers: headers)
                #expect(refused.status == 401, "\(path) with \(headers)")
                #expect(errorCode(refused) == "unauthorized")
                #expect(refused.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
                #expect(!refused.body.contains("alice-zq"))
            }
        }
        let allowed = try await get(node, "/api/docs/doc-zq", headers: [("Authorization", "Bearer \(token)")])
        #expect(allowed.status == 200)
        #expect(allowed.body.contains("alice-zq"))
        let lowercase = try await get(node, "/api/docs/doc-zq/log", headers: [("Authorization", "bearer  \(token) ")])
        #expect(lowercase.status == 200)
        for path in ["/metrics", "/healthz", "/readyz", "/api/status"] {
            #expect(try await node.get(path).status == 200, "\(path) stays open")
        }
        #expect(try await node.value(#"tandem_ops_requests_rejected_total{reason="unauthorized"}"#) == 10)
        await alice.close()
    }

    @Test func aStalledRedisCostsBoundedWaitsAndNeverTheHealthCheck() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-stall", stopWhenDone: true) {
            $0.opsRequestTimeoutMs = 1_000
            $0.opsMaxPendingRequests = 2
            $0.opsThreads = 1
        }
        redis.pause()
        defer { redis.resume() }

        // On threads of their own: two blocking reads would take both threads of the test's
        // cooperative pool on a 2-core machine, and nothing else could poll meanwhile.
        let first = ThreadedGet(port: node.opsPort, path: "/api/docs/d1")
        let second = ThreadedGet(port: node.opsPort, path: "/api/docs/d2/log")
        try await waitUntil("two requests waiting for Redis") {
            try await node.value("tandem_ops_pending_requests") == 2
        }
        // With one polling thread and two requests waiting on a frozen Redis, health, metrics and a
        // third (refused) request are still answered at once.
        #expect(try await node.get("/healthz").status == 200)
        let busy = try await node.get("/api/docs/d3")
        #expect(busy.status == 503)
        #expect(errorCode(busy) == "busy")
        #expect(busy.headers["retry-after"] == "1")
        for request in [first, second] {
            let result = try await request.result()
            #expect(result.status == 503)
            #expect(errorCode(result) == "timeout")
        }
        #expect(try await node.value("tandem_ops_pending_requests") == 0)
        #expect(try await node.value(#"tandem_ops_requests_rejected_total{reason="timeout"}"#) == 2)
        #expect(try await node.value(#"tandem_ops_requests_rejected_total{reason="busy"}"#) == 1)
        redis.resume()
        try await waitUntil("Redis answers again") { try await node.get("/api/docs/d1").status == 200 }
    }

    /// A /log request that timed out must not go on reading batches from Redis behind the pending limit.
    @Test func aTimedOutLogRequestStopsReading() async throws {
        // The entries are written through a node that then stops, so no node has the doc loaded and
        // every XRANGE Redis counts below is the ops API's.
        let redis = try RedisServerProcess()
        // 100 pushes at once: admission must not refuse some as busy on a slow (sanitized) build.
        let writer = try await InProcessNode.start(redis: redis.url, nodeID: "writer") { $0.maxPushWaitMs = 60_000 }
        let alice = try await SyncClient.connect(writer.url(user: "alice"), name: "alice")
        try await alice.join("stale")
        for id in 1...100 { alice.push("stale", id: id, ops: #"{"r\#(id)":["put",{"v":\#(id)}]}"#) }
        #expect(try await alice.answer("stale", id: 100).string("action") == "commit")
        alice.socket.abort()
        await writer.stop()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-stale", stopWhenDone: true) {
            $0.opsRequestTimeoutMs = 500
        }
        // How many XRANGEs (inside the read script) one page of the 100 entries costs.
        redis.command("CONFIG", "RESETSTAT")
        let first = try JSON.parse(try await node.get("/api/docs/stale/log?limit=100").body)
        #expect((JSON.array(first, at: "entries") ?? []).count == 100)
        let readsPerPage = redis.calls(of: "xrange")
        #expect(readsPerPage > 1, "the page is read in several steps")
        redis.command("CONFIG", "RESETSTAT")

        redis.pause()
        let stale = ThreadedGet(port: node.opsPort, path: "/api/docs/stale/log?limit=100")
        #expect(errorCode(try await stale.result()) == "timeout")
        redis.resume()
        // A fresh page of the same 100 entries costs what the first did. Had the timed-out request gone
        // on, its reads would be counted too.
        let page = try JSON.parse(try await node.get("/api/docs/stale/log?limit=100").body)
        #expect((JSON.array(page, at: "entries") ?? []).count == 100)
        #expect(redis.calls(of: "xrange") == readsPerPage)
    }

    @Test func listsAreCappedAndSayHowManyThereAre() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "ops-list", stopWhenDone: true) {
            $0.opsMaxListItems = 2
        }
        var clients: [TestClient] = []
        for (index, user) in ["u1", "u2", "u3"].enumerated() {
            let client = try await TestClient.connect(node.url(user: user), name: user)
            try await client.join("big")
            try await client.join("small-\(index)")
            clients.append(client)
        }
        try await waitUntil("status lists 4 docs") {
            JSON.int(try await node.status(), at: "docsTotal") == 4
        }
        let status = try await node.status()
        let docs = (JSON.array(status, at: "docs") ?? []).compactMap { JSON.string($0 as Any, at: "doc") }
        #expect(docs.count == 2)
        #expect(docs.contains("big"), "the largest doc is listed first")
        #expect(JSON.int(status, at: "presenceSessions") == 6, "totals count every doc")

        let info = try JSON.parse(try await node.get("/api/docs/big").body)
        #expect((JSON.array(info, at: "members") ?? []).count == 2)
        #expect(JSON.int(info, at: "membersTotal") == 3)
        for client in clients { await client.close() }
    }

    @Test func logPagesSpanSeveralReadsAndStopAtTheirLimit() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let alice = try await cluster.client("alice")
        let doc = "paged"
        try await alice.join(doc)
        for id in 1...40 { alice.push(doc, id: id, ops: #"{"r\#(id)":["put",{"v":\#(id)}]}"#) }
        #expect(try await alice.answer(doc, id: 40).string("action") == "commit")
        let node = cluster.nodes[0]

        let page = try JSON.parse(try await node.get("/api/docs/\(doc)/log?from=2&limit=35").body)
        let clocks = (JSON.array(page, at: "entries") ?? []).compactMap { JSON.int($0 as Any, at: "clock") }
        #expect(clocks == Array(3...37), "35 entries after clock 2, read 16 at a time")
        #expect(JSON.bool(page, at: "more") == true)
        let rest = try JSON.parse(try await node.get("/api/docs/\(doc)/log?from=37").body)
        #expect((JSON.array(rest, at: "entries") ?? []).compactMap { JSON.int($0 as Any, at: "clock") } == [38, 39, 40])
        #expect(JSON.bool(rest, at: "more") == false)
        await cluster.finish()
    }
}

/// A GET on a thread of its own (see its use).
final class ThreadedGet: Sendable {
    private let outcome = Locked<Result<HTTPResult, Error>?>(nil)

    init(port: Int, path: String) {
        let outcome = self.outcome
        Thread {
            let result = Result { try HTTP.request(port: port, raw: "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n") }
            outcome.withLock { $0 = result }
        }.start()
    }

    func result() async throws -> HTTPResult {
        try await waitUntil("GET answered") { outcome.value != nil }
        return try outcome.value!.get()
    }
}
