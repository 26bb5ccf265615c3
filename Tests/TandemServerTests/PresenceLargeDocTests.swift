import Foundation
import Testing
import TandemTestSupport

/// Requirement 4: in a large doc (more than `--large-doc-viewers` viewers) viewers' states are not
/// broadcast and viewers get membership changes only, at most once a second; editors keep live cursors.
@Suite(.serialized, .cleanup) struct PresenceLargeDocTests {
    @Test func viewersOfALargeDocGetMembershipOnlyAndEditorsKeepLiveCursors() async throws {
        let redis = try RedisServerProcess()
        let secret = "large-doc-secret-0123456789abcdef-0123"
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "large", stopWhenDone: true) {
            $0.jwtSecret = secret
            $0.largeDocViewers = 1
        }
        func client(_ user: String, _ role: String) async throws -> TestClient {
            let token = try await makeToken(secret: secret, user: user, docs: ["big": role])
            return try await TestClient.connect("\(node.wsBase)?token=\(token)", name: user)
        }
        let e1 = try await client("e1", "editor")
        let e2 = try await client("e2", "editor")
        let v1 = try await client("v1", "viewer")
        let v2 = try await client("v2", "viewer")
        try await e1.join("big", state: ["seq": 0])
        try await e2.join("big", state: ["seq": 0])
        let joinedAsViewer = try await v1.join("big", state: ["v": 0])
        #expect(JSON.string(joinedAsViewer, at: "role") == "viewer")
        try await v2.join("big", state: ["v": 0])
        try await waitUntil("the doc is large (2 viewers > 1)") {
            let docs = JSON.array(try await node.status(), at: "docs") ?? []
            return docs.contains { JSON.string($0, at: "doc") == "big" && JSON.bool($0, at: "large") == true }
        }
        try await waitUntil("e2 sees both viewers") { e2.members(of: "big").isSuperset(of: [v1.session, v2.session]) }

        // A viewer's state is not broadcast.
        let suppressed = #"tandem_presence_updates_total{result="suppressed"}"#
        let suppressedBefore = try await node.value(suppressed)
        v1.presence("big", ["v": 1])
        try await waitUntil("the viewer's update counts as suppressed") { try await node.value(suppressed) == suppressedBefore + 1 }

        // Editors keep receiving live cursors; viewers get only the membership change (v3 joining).
        let marks = (v1: v1.count, v2: v2.count, e2: e2.count)
        let start = ContinuousClock.now
        async let cursors: Int = sendPresence(e1, doc: "big", count: 30, over: 1.5)
        let v3 = try await client("v3", "viewer")
        try await v3.join("big")
        _ = try await cursors
        try await waitUntil("e2 gets e1's latest cursor") { e2.state(of: e1.session, in: "big")?["seq"] as? Int == 30 }
        for viewer in [v1, v2] {
            try await waitUntil("\(viewer.name) is told v3 joined") { viewer.sids("joined", of: "big").contains(v3.session) }
        }
        let window = (ContinuousClock.now - start).seconds
        let liveCursors = e2.deltas(of: "big", since: marks.e2).flatMap { JSON.array($0, at: "updated") ?? [] }
            .filter { JSON.string($0, at: "sid") == e1.session }.count
        #expect(liveCursors >= 5, "e2 received \(liveCursors) of e1's 30 cursor moves")
        for (viewer, mark) in [(v1, marks.v1), (v2, marks.v2)] {
            let deltas = viewer.deltas(of: "big", since: mark)
            #expect(deltas.allSatisfy { (JSON.array($0, at: "updated") ?? []).isEmpty }, "\(viewer.name): no updated")
            #expect(!deltas.isEmpty && Double(deltas.count) <= window + 1,
                    "\(viewer.name): \(deltas.count) presence messages in \(window) s (at most one per second)")
            #expect(viewer.state(of: e1.session, in: "big")?["seq"] as? Int == 0, "\(viewer.name) saw no cursor")
        }
        #expect(e2.state(of: v1.session, in: "big")?["v"] as? Int == 0, "editors never see a viewer's suppressed state")

        // Below the threshold again: the remaining viewer catches up, then follows full deltas.
        await v2.close()
        await v3.close()
        try await waitUntil("v1 catches up with e1's cursor; \(v1.summary())") {
            v1.state(of: e1.session, in: "big")?["seq"] as? Int == 30
        }
        e1.presence("big", ["seq": 31])
        try await waitUntil("v1 follows live cursors again") { v1.state(of: e1.session, in: "big")?["seq"] as? Int == 31 }
        for client in [e1, e2, v1] { await client.close() }
    }
}
