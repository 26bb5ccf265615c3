import Foundation
import TandemTestSupport
import Testing
@testable import TandemOpsHTTP

/// `OpsReply.deferred`: slow work suspends its connection instead of a polling thread, and the server
/// bounds how many wait and for how long.
@Suite(.serialized) struct DeferredResponseTests {
    /// A deferred handler whose responders the test answers by hand.
    private func server(
        _ configuration: OpsHTTPServer.Configuration, responders: Locked<[OpsResponder]>,
        events: Locked<[OpsHTTPEvent]> = Locked([])
    ) throws -> OpsHTTPServer {
        let server = OpsHTTPServer(
            configuration: configuration, logger: testLogger(),
            observe: { event in
                if case .openConnections = event { return }
                events.withLock { $0.append(event) }
            },
            replying: { request in
                if request.path == "/fast" { return .response(.text("fast"), label: "fast") }
                return .deferred(label: "slow") { responder in responders.withLock { $0.append(responder) } }
            })
        try server.start()
        return server
    }

    @Test func aPendingAnswerHoldsNoThreadEvenWithASingleOne() async throws {
        let responders = Locked<[OpsResponder]>([])
        let events = Locked<[OpsHTTPEvent]>([])
        let server = try server(.init(threads: 1), responders: responders, events: events)
        defer { server.stop() }

        let slow = Locked<RawHTTPResponse?>(nil)
        let client = BackgroundWork {
            let response = try? RawHTTP.get("/slow", port: server.boundPort)
            slow.withLock { $0 = response }
        }
        try await waitUntil { responders.current.count == 1 }
        // The only polling thread is free while /slow waits.
        for _ in 0..<3 { #expect(try RawHTTP.get("/fast", port: server.boundPort).text == "fast") }
        #expect(slow.current == nil, "/slow is still waiting")

        let answerer = Thread { responders.current[0].respond(building: { .text("slow done") }) }
        answerer.start()
        #expect(client.wait())
        #expect(slow.current?.text == "slow done")
        #expect(events.current.contains { if case .requestFinished("slow", 200, _) = $0 { true } else { false } })
    }

    @Test func anAnswerGivenBeforeStartReturnsWorks() throws {
        let server = OpsHTTPServer(configuration: .init(), logger: testLogger()) { _ in
            .deferred { responder in responder.respond(.text("at once")) }
        }
        try server.start()
        defer { server.stop() }
        for _ in 0..<5 { #expect(try RawHTTP.get("/", port: server.boundPort).text == "at once") }
    }

    @Test func anAnswerThatNeverComesGets503TimeoutAndALateOneIsDropped() async throws {
        let responders = Locked<[OpsResponder]>([])
        let events = Locked<[OpsHTTPEvent]>([])
        let server = try server(.init(responseTimeoutMs: 200), responders: responders, events: events)
        defer { server.stop() }

        let response = try RawHTTP.get("/slow", port: server.boundPort)
        #expect(response.status == 503)
        #expect(response.header("Content-Type") == "application/json")
        #expect(response.text.contains(#""error":"timeout""#))
        #expect(response.header("Retry-After") == "1")
        #expect(events.current.contains(.responseTimedOut))
        responders.current[0].respond(.text("too late"))  // no effect, no crash
        #expect(try RawHTTP.get("/fast", port: server.boundPort).text == "fast")
        let counter = try #require(server.liveRequestCounter)
        try await waitUntil { counter.value == 0 }
    }

    @Test func beyondThePendingLimitRequestsGet503BusyAtOnce() async throws {
        let responders = Locked<[OpsResponder]>([])
        let events = Locked<[OpsHTTPEvent]>([])
        let server = try server(.init(maxPendingResponses: 2), responders: responders, events: events)
        defer { server.stop() }

        var waiting: [RawHTTPConnection] = []
        for _ in 0..<2 {
            let connection = try RawHTTPConnection(port: server.boundPort)
            try connection.send(RawHTTP.requestBytes("GET", "/slow"))
            waiting.append(connection)
        }
        try await waitUntil { responders.current.count == 2 }
        let busy = try RawHTTP.get("/slow", port: server.boundPort)
        #expect(busy.status == 503)
        #expect(busy.text.contains(#""error":"busy""#))
        #expect(responders.current.count == 2, "the handler's work was not started for it")
        #expect(events.current.contains(.pendingLimitReached))

        for responder in responders.current { responder.respond(.text("done")) }
        for connection in waiting { #expect(try connection.readResponse().text == "done") }
    }

    /// libmicrohttpd aborts the process when stopped with a suspended connection: stop() answers them.
    @Test func stopAnswersWaitingRequestsWith503() async throws {
        let responders = Locked<[OpsResponder]>([])
        let server = try server(.init(responseTimeoutMs: 60_000), responders: responders)
        let counter = try #require(server.liveRequestCounter)

        var waiting: [RawHTTPConnection] = []
        for _ in 0..<3 {
            let connection = try RawHTTPConnection(port: server.boundPort)
            try connection.send(RawHTTP.requestBytes("GET", "/slow"))
            waiting.append(connection)
        }
        try await waitUntil { responders.current.count == 3 }
        server.stop()
        for connection in waiting {
            let reply = String(decoding: (try? connection.readToEOF()) ?? [], as: UTF8.self)
            // Either the 503 made it out before the socket closed, or the connection was closed unanswered.
            #expect(reply.isEmpty || reply.hasPrefix("HTTP/1.1 503"), "\(reply.prefix(40))")
        }
        #expect(counter.value == 0)
        for responder in responders.current { responder.respond(.text("after stop")) }  // dropped, no crash
    }
}
