import Testing
import TandemCore

/// `OpsRoute.parse`: every number in an ops URL is range-checked where it is parsed (issue 7).
@Suite struct OpsRouteTests {
    private func parse(_ path: String, _ query: [String: String] = [:]) -> Result<OpsRoute, OpsRouteError> {
        OpsRoute.parse(path: path, query: query)
    }

    private func status(_ result: Result<OpsRoute, OpsRouteError>) -> Int? {
        if case .failure(let error) = result { return error.status }
        return nil
    }

    @Test func fixedRoutesAndStaticFiles() {
        #expect(parse("/metrics") == .success(.metrics))
        #expect(parse("/healthz") == .success(.health))
        #expect(parse("/readyz") == .success(.ready))
        #expect(parse("/api/status") == .success(.status(history: nil)))
        #expect(parse("/") == .success(.file("/")))
        #expect(parse("/status.js") == .success(.file("/status.js")))
        #expect(parse("/metrics/") == .success(.file("/metrics/")))
        #expect(status(parse("/api")) == 404)
        #expect(status(parse("/api/")) == 404)
        #expect(status(parse("/api/nope")) == 404)
        #expect(status(parse("/api/status/")) == 404)
    }

    @Test func theClockThatCrashedTheNodeIsA400() {
        #expect(status(parse("/api/docs/d/log", ["from": "18446744073709551615"])) == 400)
        #expect(status(parse("/api/docs/d/log", ["from": "18446744073709551616"])) == 400)
        #expect(status(parse("/api/docs/d/log", ["from": "9007199254740992"])) == 400)
        #expect(parse("/api/docs/d/log", ["from": "9007199254740991"]) == .success(.docLog(doc: "d", from: OpsRoute.maxClock, limit: 100)))
        #expect(OpsRoute.maxClock == 9_007_199_254_740_991)
        for bad in ["", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1.0", "١", String(repeating: "9", count: 40), "00000000000000000000001"] {
            #expect(status(parse("/api/docs/d/log", ["from": bad])) == 400, "from=\(bad)")
        }
        #expect(parse("/api/docs/d/log", ["from": "0"]) == .success(.docLog(doc: "d", from: 0, limit: 100)))
        #expect(parse("/api/docs/d/log", ["from": "007"]) == .success(.docLog(doc: "d", from: 7, limit: 100)))
    }

    @Test func logLimits() {
        #expect(parse("/api/docs/d/log") == .success(.docLog(doc: "d", from: 0, limit: OpsRoute.defaultLogLimit)))
        #expect(parse("/api/docs/d/log", ["limit": "1"]) == .success(.docLog(doc: "d", from: 0, limit: 1)))
        #expect(parse("/api/docs/d/log", ["limit": "5000"]) == .success(.docLog(doc: "d", from: 0, limit: 5000)))
        for bad in ["0", "5001", "-5", "abc", "99999999999999999999", ""] {
            #expect(status(parse("/api/docs/d/log", ["limit": bad])) == 400, "limit=\(bad)")
        }
        let small = OpsRoute.Limits(maxHistory: 10, maxLogLimit: 50)
        #expect(OpsRoute.parse(path: "/api/docs/d/log", query: [:], limits: small) == .success(.docLog(doc: "d", from: 0, limit: 50)))
        #expect(OpsRoute.parse(path: "/api/docs/d/log", query: ["limit": "51"], limits: small) != .success(.docLog(doc: "d", from: 0, limit: 51)))
    }

    @Test func history() {
        #expect(parse("/api/status", ["history": "0"]) == .success(.status(history: 0)))
        #expect(parse("/api/status", ["history": "300"]) == .success(.status(history: 300)))
        for bad in ["301", "-1", "1e2", "", "18446744073709551615"] {
            #expect(status(parse("/api/status", ["history": bad])) == 400, "history=\(bad)")
        }
    }

    @Test func docIDsAndShapes() {
        #expect(parse("/api/docs/board:1") == .success(.doc("board:1")))
        #expect(parse("/api/docs/board:1/log") == .success(.docLog(doc: "board:1", from: 0, limit: 100)))
        #expect(status(parse("/api/docs/")) == 400)
        #expect(status(parse("/api/docs/a b")) == 400)
        #expect(status(parse("/api/docs/" + String(repeating: "x", count: 129))) == 400)
        #expect(status(parse("/api/docs/d/")) == 404)
        #expect(status(parse("/api/docs/d/logs")) == 404)
        #expect(status(parse("/api/docs/d/log/x")) == 404)
        #expect(status(parse("/api/docs/d//log")) == 404)
    }

    @Test func labelsAndDocumentRoutes() {
        #expect(OpsRoute.doc("d").isDocumentRoute && OpsRoute.docLog(doc: "d", from: 0, limit: 1).isDocumentRoute)
        #expect(!OpsRoute.status(history: nil).isDocumentRoute && !OpsRoute.metrics.isDocumentRoute)
        let labels = Set([OpsRoute.metrics, .health, .ready, .status(history: 1), .doc("d"), .file("/")].map(\.label))
        #expect(labels == ["metrics", "health", "ready", "status", "docs", "static"])
    }
}
