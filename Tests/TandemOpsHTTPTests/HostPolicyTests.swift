import Foundation
import Testing
@testable import TandemOpsHTTP

/// The DNS-rebinding defence: which Host headers the ops server answers.
@Suite struct HostPolicyTests {
    @Test func ipLiteralsLocalhostAndAbsentHostsAreAllowedByDefault() {
        let policy = OpsHostPolicy.literalsAndLocalhost
        for host in [
            "127.0.0.1", "127.0.0.1:7071", "10.1.2.3:9999", "[::1]", "[::1]:7071", "[fe80::1]:80", "localhost",
            "LOCALHOST:7071", "localhost.:7071",
        ] {
            #expect(policy.allows(hostHeader: host), "\(host)")
        }
        #expect(policy.allows(hostHeader: nil), "HTTP/1.0 health checkers send no Host")
    }

    @Test func namesAndMalformedHostsAreRefused() {
        let policy = OpsHostPolicy.literalsAndLocalhost
        for host in [
            "evil.example", "evil.example:7071", "127.0.0.1.nip.io", "localhost.evil.example", "", " ", "127.1",
            "0x7f.0.0.1", "::1", "[::1", "[::1]x", "[zz::1]", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:80:80",
            "127.0.0.1, evil.example", "a..b", "-", String(repeating: "a", count: 300),
        ] {
            #expect(!policy.allows(hostHeader: host), "\(host)")
        }
    }

    @Test func operatorNamesAreMatchedCaseInsensitively() throws {
        let policy = try OpsHostPolicy(allowedNames: ["Ops.Example.com", "tandem-1.internal."])
        #expect(policy.allows(hostHeader: "ops.example.com:7071"))
        #expect(policy.allows(hostHeader: "OPS.EXAMPLE.COM"))
        #expect(policy.allows(hostHeader: "tandem-1.internal"))
        #expect(!policy.allows(hostHeader: "example.com"))
        #expect(!policy.allows(hostHeader: "x.ops.example.com"))
        #expect(try OpsHostPolicy(allowedNames: ["*"]).allows(hostHeader: "anything.example:1"))
        #expect(throws: OpsHTTPServerError.self) { try OpsHostPolicy(allowedNames: ["bad name"]) }
        #expect(throws: OpsHTTPServerError.self) { try OpsHostPolicy(allowedNames: ["http://x"]) }
    }

    @Test func theServerAnswers421WithoutRunningTheHandler() throws {
        let handled = Locked(0)
        let events = Locked<[OpsHTTPEvent]>([])
        let server = OpsHTTPServer(
            configuration: .init(hostPolicy: try OpsHostPolicy(allowedNames: ["ops.example.com"])), logger: testLogger(),
            observe: { event in events.withLock { $0.append(event) } },
            handler: { _ in
                handled.withLock { $0 += 1 }
                return .text("secret")
            })
        try server.start()
        defer { server.stop() }
        let port = server.boundPort

        let rebound = try RawHTTP.request("GET", "/api/status", port: port, headers: [("Host", "evil.example:\(port)")])
        #expect(rebound.status == 421)
        #expect(rebound.header("Content-Type") == "application/json")
        #expect(rebound.text.contains(#""error":"host_not_allowed""#))
        #expect(!rebound.text.contains("secret"))
        let twoHosts = try RawHTTP.request(
            "GET", "/", port: port, headers: [("Host", "127.0.0.1"), ("Host", "evil.example")])
        #expect(twoHosts.status == 421 || twoHosts.status == 400, "two Host headers: \(twoHosts.status)")
        #expect(handled.current == 0)
        #expect(events.current.contains(.hostRejected))

        for host in ["ops.example.com:\(port)", "127.0.0.1:\(port)", "localhost", "[::1]:\(port)"] {
            #expect(try RawHTTP.request("GET", "/", port: port, headers: [("Host", host)]).text == "secret", "\(host)")
        }
        // HTTP/1.0 without a Host header (HAProxy's default httpchk).
        let connection = try RawHTTPConnection(port: port)
        try connection.send("GET / HTTP/1.0\r\n\r\n")
        #expect(try connection.readResponse().text == "secret")
    }
}
