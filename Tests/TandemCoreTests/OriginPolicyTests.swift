import TandemCore
import Testing

@Suite struct OriginPolicyTests {
    let development = OriginPolicy.modeDefault(developmentMode: true)
    let token = OriginPolicy.modeDefault(developmentMode: false)

    @Test(arguments: [
        "http://localhost:3000", "http://LOCALHOST:8080", "http://app.localhost", "https://127.0.0.1", "http://127.8.9.10:1",
        "http://[::1]:8080",
    ])
    func developmentModeAllowsThisMachinesPages(origin: String) {
        #expect(development.allows(origin: origin, hostHeader: "127.0.0.1:8080"))
    }

    @Test(arguments: [
        "https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil.example", "http://128.0.0.1",
        "http://10.0.0.5:8080", "null", "NULL", "", "localhost", "http://", "http://local host", "http://a/b",
        "http://user@localhost", "http://localhost:99999", "http://localhost:", "http://[::1", "http://..localhost",
    ])
    func developmentModeRefusesEveryOtherPage(origin: String) {
        #expect(!development.allows(origin: origin, hostHeader: "127.0.0.1:8080"))
    }

    /// A phone on the LAN loading the demo from the node's own IP address (`--insecure-dev-mode`); a
    /// rebound name is never accepted that way, and another address or port is another page.
    @Test func developmentModeAllowsAPageFromTheAddressTheSocketWasOpenedTo() {
        #expect(development.allows(origin: "http://10.0.0.5:8080", hostHeader: "10.0.0.5:8080"))
        #expect(development.allows(origin: "http://[fe80::1]:8080", hostHeader: "[fe80::1]:8080"))
        #expect(!development.allows(origin: "http://10.0.0.5:9090", hostHeader: "10.0.0.5:8080"))
        #expect(!development.allows(origin: "http://10.0.0.6:8080", hostHeader: "10.0.0.5:8080"))
        #expect(!development.allows(origin: "http://rebound.example:8080", hostHeader: "rebound.example:8080"))
        #expect(!development.allows(origin: "http://10.0.0.5:8080", hostHeader: nil))
    }

    @Test func aHandshakeWithoutOriginIsNotFromAPageAndIsAllowed() throws {
        #expect(development.allows(origin: nil, hostHeader: nil))
        let listed = try OriginPolicy(allowedOrigins: ["https://app.example.com"], developmentMode: false)
        #expect(listed.allows(origin: nil, hostHeader: "tandem.example.com"))
    }

    @Test func tokenModeAllowsEveryPageUntilOriginsAreListed() throws {
        #expect(token.allows(origin: "https://evil.example", hostHeader: "tandem.example.com"))
        #expect(token.allows(origin: "null", hostHeader: "tandem.example.com"))
        let listed = try OriginPolicy(
            allowedOrigins: ["https://app.example.com", " https://*.example.org:8443 ", "http://intranet_host:80"],
            developmentMode: false)
        #expect(listed.allows(origin: "https://app.example.com", hostHeader: nil))
        #expect(listed.allows(origin: "https://APP.example.com:443", hostHeader: nil), "default port and case normalised")
        #expect(listed.allows(origin: "https://a.b.example.org:8443", hostHeader: nil))
        #expect(listed.allows(origin: "http://intranet_host", hostHeader: nil))
        #expect(!listed.allows(origin: "https://example.org:8443", hostHeader: nil), "a wildcard needs a subdomain")
        #expect(!listed.allows(origin: "https://a.example.org", hostHeader: nil), "another port")
        #expect(!listed.allows(origin: "http://app.example.com", hostHeader: nil), "another scheme")
        #expect(!listed.allows(origin: "https://app.example.com.evil.example", hostHeader: nil))
        #expect(!listed.allows(origin: "https://evilexample.org:8443", hostHeader: nil))
        #expect(!listed.allows(origin: "http://localhost:3000", hostHeader: nil), "token mode lists only what it lists")
        #expect(!listed.allows(origin: "null", hostHeader: nil))
    }

    @Test func developmentModeKeepsThisMachinesPagesWhenOthersAreListed() throws {
        let listed = try OriginPolicy(allowedOrigins: ["https://staging.example.com", "null"], developmentMode: true)
        #expect(listed.allows(origin: "http://localhost:3000", hostHeader: nil))
        #expect(listed.allows(origin: "https://staging.example.com", hostHeader: nil))
        #expect(listed.allows(origin: "null", hostHeader: nil))
        #expect(!listed.allows(origin: "https://evil.example", hostHeader: nil))
    }

    @Test func starTurnsTheCheckOff() throws {
        let any = try OriginPolicy(allowedOrigins: ["*"], developmentMode: true)
        #expect(any.allows(origin: "https://evil.example", hostHeader: nil))
        #expect(any.allows(origin: "null", hostHeader: nil))
    }

    @Test(arguments: ["app.example.com", "https://app.example.com/", "https://*", "ftp//x", "https://a b", "*.example.com", ""])
    func entriesThatAreNotOriginsAreRefusedAtStartUp(entry: String) {
        #expect(throws: OriginPolicy.InvalidEntry.self) { try OriginPolicy(allowedOrigins: [entry], developmentMode: false) }
    }

    @Test func anOverlongOriginIsRefused() {
        let long = "http://" + String(repeating: "a", count: 300) + ".localhost"
        #expect(!development.allows(origin: long, hostHeader: nil))
    }
}
