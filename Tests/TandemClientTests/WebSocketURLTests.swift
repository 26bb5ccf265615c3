import Testing

@testable import TandemClient

@Suite struct WebSocketURLTests {
    @Test func parsesHostPortPathAndQuery() throws {
        let url = try WebSocketURL(parsing: "ws://127.0.0.1:8080/ws/doc?token=a&b=c#frag")
        #expect(url == WebSocketURL(host: "127.0.0.1", port: 8080, requestURI: "/ws/doc?token=a&b=c"))
        #expect(url.hostHeader == "127.0.0.1:8080")
    }

    @Test func defaultsPortAndPath() throws {
        #expect(try WebSocketURL(parsing: "ws://localhost") == WebSocketURL(host: "localhost", port: 80, requestURI: "/"))
        #expect(try WebSocketURL(parsing: "WS://localhost?x=1").requestURI == "/?x=1")
        #expect(try WebSocketURL(parsing: "ws://localhost").hostHeader == "localhost")
    }

    @Test func parsesIPv6Literals() throws {
        let url = try WebSocketURL(parsing: "ws://[::1]:9000/a")
        #expect(url == WebSocketURL(host: "::1", port: 9000, requestURI: "/a"))
        #expect(url.hostHeader == "[::1]:9000")
    }

    @Test func parsesWSSWithPort443ByDefault() throws {
        let url = try WebSocketURL(parsing: "wss://tandem.example/v1/ws")
        #expect(url == WebSocketURL(host: "tandem.example", port: 443, requestURI: "/v1/ws", secure: true))
        #expect(url.hostHeader == "tandem.example")
        #expect(try WebSocketURL(parsing: "wss://tandem.example:80/").hostHeader == "tandem.example:80")
        #expect(try WebSocketURL(parsing: "ws://tandem.example:443/").hostHeader == "tandem.example:443")
        #expect(try WebSocketURL(parsing: "wss://[::1]/").hostIsIPLiteral)
        #expect(try WebSocketURL(parsing: "wss://10.0.0.1/").hostIsIPLiteral)
        #expect(try !WebSocketURL(parsing: "wss://10.0.0.example/").hostIsIPLiteral)
        #expect(try !WebSocketURL(parsing: "wss://localhost/").hostIsIPLiteral)
    }

    @Test(arguments: ["ws://host:0/", "ws://host:abc/", "ws://user@host/", "ws://[::1/", "ws://host/a b", "ftp://host/"])
    func rejectsMalformedURLs(_ text: String) {
        #expect(throws: WebSocketClientError.self) { try WebSocketURL(parsing: text) }
    }

    @Test func closeReasonIsCutAtACharacterBoundary() {
        let reason = String(repeating: "é", count: 100)  // 200 bytes
        let cut = WebSocketClientHandler.truncatedCloseReason(reason)
        #expect(cut.utf8.count == 122)
        #expect(cut == String(repeating: "é", count: 61))
        #expect(WebSocketClientHandler.truncatedCloseReason("short") == "short")
    }
}
