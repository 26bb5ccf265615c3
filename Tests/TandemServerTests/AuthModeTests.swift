import Foundation
import Testing
import TandemServer
import TandemTestSupport

/// Requirement 10: development mode (`?user=&name=`, editor everywhere) and JWT mode (HS256 tokens from
/// `?token=` or `Authorization: Bearer`, refused with 401 before the upgrade, per-doc roles).
@Suite(.serialized, .cleanup) struct AuthModeTests {
    static let secret = "auth-test-secret-0123456789abcdef-0123456789"

    @Test func developmentModeTakesTheUserFromTheQueryAndGrantsEditorEverywhere() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "dev", stopWhenDone: true)
        let alice = try await TestClient.connect("\(node.wsBase)?user=alice-dev&name=Alice%20Liddell", name: "alice")
        #expect(JSON.string(alice.welcome, at: "user") == "alice-dev")
        let joined = try await alice.join("any:doc.1")
        #expect(JSON.string(joined, at: "role") == "editor")
        let own = (JSON.array(joined, at: "presence") ?? []).first { JSON.string($0, at: "sid") == alice.session }
        #expect(own.flatMap { JSON.string($0, at: "name") } == "Alice Liddell")
        #expect(own.flatMap { JSON.string($0, at: "user") } == "alice-dev")
        alice.sendRaw(#"{"t":"push","doc":"any:doc.1","id":1,"base":0,"ops":{"r":["put",{"a":1}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "any:doc.1"), at: "action") == "commit")
        let anonymous = try await TestClient.connect(node.wsBase, name: "anonymous")
        #expect(JSON.string(anonymous.welcome, at: "user")?.hasPrefix("anon-") == true)
        await alice.close()
        await anonymous.close()
    }

    @Test func jwtModeAuthenticatesBeforeTheUpgradeAndAppliesPerDocRoles() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "jwt", stopWhenDone: true) {
            $0.jwtSecret = Self.secret
        }
        let rejectedBefore = try await node.value(#"tandem_admission_rejected_total{reason="unauthorized"}"#)

        // Accepted: ?token= and Authorization: Bearer.
        let editorToken = try await makeToken(secret: Self.secret, user: "jwt-alice", name: "Alice", docs: ["doc-*": "editor"])
        let alice = try await TestClient.connect("\(node.wsBase)?token=\(editorToken)", name: "alice")
        #expect(JSON.string(alice.welcome, at: "user") == "jwt-alice")
        let joined = try await alice.join("doc-1")
        #expect(JSON.string(joined, at: "role") == "editor")
        let own = (JSON.array(joined, at: "presence") ?? []).first { JSON.string($0, at: "sid") == alice.session }
        #expect(own.flatMap { JSON.string($0, at: "name") } == "Alice")
        let viaHeader = try await TestClient.connect(node.wsBase, headers: [("Authorization", "Bearer \(editorToken)")], name: "header")
        #expect(JSON.string(viaHeader.welcome, at: "user") == "jwt-alice")

        // Refused with 401 before the upgrade: missing, malformed, badly signed, expired; dev-mode query.
        let otherSecret = try await makeToken(secret: Self.secret + "-other", user: "mallory", docs: ["*": "editor"])
        let expired = try await makeToken(secret: Self.secret, user: "late", docs: ["*": "editor"], expiresIn: -120)
        let refusals: [(String, String, [(String, String)])] = [
            ("missing", node.wsBase, []),
            ("dev-mode query", "\(node.wsBase)?user=alice", []),
            ("malformed", "\(node.wsBase)?token=not.a.jwt", []),
            ("bad signature", "\(node.wsBase)?token=\(otherSecret)", []),
            ("bad signature in header", node.wsBase, [("Authorization", "Bearer \(otherSecret)")]),
            ("expired", "\(node.wsBase)?token=\(expired)", []),
        ]
        for (what, url, headers) in refusals {
            let rejection = try await handshakeRejection(url, headers: headers)
            #expect(rejection.status == 401, "\(what): \(rejection.status)")
            #expect(rejection.body.contains(#""error":"unauthorized""#), "\(what): \(rejection.body)")
            #expect(rejection.headers.contains { $0.0.lowercased() == "www-authenticate" && $0.1.hasPrefix("Bearer") }, "\(what)")
        }
        #expect(try await node.value(#"tandem_admission_rejected_total{reason="unauthorized"}"#) == rejectedBefore + Double(refusals.count))

        // A viewer-only token: role viewer, pushes discarded as read_only, nothing applied.
        let viewerToken = try await makeToken(secret: Self.secret, user: "jwt-vera", docs: ["doc-*": "viewer"])
        let vera = try await TestClient.connect("\(node.wsBase)?token=\(viewerToken)", name: "vera")
        #expect(JSON.string(try await vera.join("doc-1"), at: "role") == "viewer")
        vera.sendRaw(#"{"t":"push","doc":"doc-1","id":"v1","base":0,"ops":{"r":["put",{"by":"vera"}]}}"#)
        let result = try await vera.next("result", doc: "doc-1")
        #expect(JSON.string(result, at: "action") == "discard")
        #expect(JSON.string(result, at: "reason") == "read_only")
        #expect(JSON.string(result, at: "id") == "v1")
        #expect(redis.command("HEXISTS", "tandem:{doc-1}:records", "r") == "0", "nothing applied")
        // A doc the token does not grant: forbidden, and the connection stays usable.
        vera.send(["t": "join", "doc": "secret-doc"])
        let forbidden = try await vera.next("error", doc: "secret-doc")
        #expect(JSON.string(forbidden, at: "code") == "forbidden")
        // The most permissive matching grant wins.
        let mixedToken = try await makeToken(secret: Self.secret, user: "jwt-mix", docs: ["doc-*": "viewer", "doc-1": "editor"])
        let mix = try await TestClient.connect("\(node.wsBase)?token=\(mixedToken)", name: "mix")
        #expect(JSON.string(try await mix.join("doc-1"), at: "role") == "editor")
        #expect(JSON.string(try await mix.join("doc-2"), at: "role") == "viewer")
        for client in [alice, viaHeader, vera, mix] { await client.close() }
    }

    /// Issue 7: `nbf` (not before) and `iat` (issued at) are honoured with 60 s of clock skew; a token
    /// outside them is refused with a 401 that says which claim and why.
    @Test func notBeforeAndIssuedAtAreCheckedAtTheHandshake() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "jwt-time", stopWhenDone: true) {
            $0.jwtSecret = Self.secret
        }
        func token(nbf: TimeInterval? = nil, iat: TimeInterval? = nil) async throws -> String {
            let now = Date()
            return try await Authenticator.makeToken(
                secret: Self.secret,
                claims: TandemClaims(
                    sub: "timed", name: nil, exp: now.addingTimeInterval(3600), nbf: nbf.map(now.addingTimeInterval),
                    iat: iat.map(now.addingTimeInterval), docs: ["*": "editor"]))
        }
        // Accepted: in the past, and a little ahead (clock skew).
        for accepted in [try await token(nbf: -60, iat: -60), try await token(nbf: 30, iat: 30)] {
            let client = try await TestClient.connect("\(node.wsBase)?token=\(accepted)", name: "timed")
            #expect(JSON.string(client.welcome, at: "user") == "timed")
            await client.close()
        }
        for (refused, reason) in [
            (try await token(nbf: 600), "not valid before"), (try await token(iat: 600), "issued in the future"),
        ] {
            let rejection = try await handshakeRejection("\(node.wsBase)?token=\(refused)")
            #expect(rejection.status == 401)
            let body = try JSON.parse(rejection.body)
            #expect(JSON.string(body, at: "error") == "unauthorized")
            #expect(JSON.string(body, at: "message")?.contains("token rejected: \(reason)") == true, "\(rejection.body)")
            #expect(JSON.string(body, at: "message")?.contains("60 s of clock skew allowed") == true)
        }
    }
}
