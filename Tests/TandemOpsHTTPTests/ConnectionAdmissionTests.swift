import Foundation
import TandemTestSupport
import Testing
@testable import TandemOpsHTTP

/// The admission state machine on its own: limits, eviction order, bookkeeping.
@Suite struct ConnectionAdmissionStateTests {
    private let a = ClientAddressKey(ipv4: 10, 0, 0, 1)
    private let b = ClientAddressKey(ipv4: 10, 0, 0, 2)

    private func admission(max: Int, perAddress: Int, busyAfter: UInt64 = 5_000) -> ConnectionAdmission {
        ConnectionAdmission(limits: .init(maxConnections: max, maxPerAddress: perAddress, busyEvictableAfterMs: busyAfter))
    }

    @Test func atTheLimitTheConnectionIdleLongestMakesRoom() {
        var state = admission(max: 3, perAddress: 10)
        #expect(state.opened(1, address: a, nowMs: 100) == .admit)
        #expect(state.opened(2, address: a, nowMs: 200) == .admit)
        #expect(state.opened(3, address: b, nowMs: 300) == .admit)
        // Connection 1 served a request that finished late: 2 is now the one idle longest.
        state.requestStarted(1, nowMs: 400)
        state.requestFinished(1, nowMs: 500)
        #expect(state.opened(4, address: b, nowMs: 600) == .admitEvicting(victim: 2))
        #expect(state.isClosing(2))
        #expect(state.openCount == 3)
        #expect(state.trackedCount == 4, "the evicted socket is tracked until libmicrohttpd closes it")
        state.closed(2)
        #expect(state.openCount == 3)
        #expect(state.trackedCount == 3)
    }

    @Test func anAddressAtItsLimitMakesRoomFromItsOwnIdleConnectionsOnly() {
        var state = admission(max: 10, perAddress: 2)
        #expect(state.opened(1, address: a, nowMs: 0) == .admit)
        #expect(state.opened(2, address: a, nowMs: 1) == .admit)
        #expect(state.opened(4, address: b, nowMs: 1) == .admit)
        #expect(state.opened(3, address: a, nowMs: 2) == .admitEvicting(victim: 1), "its own idle-longest goes")
        #expect(state.openCount == 3, "the address still holds two")
        state.closed(1)
        #expect(state.openCount == 3, "closing the evicted one frees nothing twice")
        // Every connection of the address in a request: the newcomer is refused, nobody else is touched.
        state.requestStarted(2, nowMs: 3)
        state.requestStarted(3, nowMs: 3)
        #expect(state.opened(5, address: a, nowMs: 4) == .refuse(.perAddress))
        #expect(state.openCount == 3)
        state.closed(5)
        state.requestFinished(2, nowMs: 5)
        state.closed(2)
        #expect(state.opened(6, address: a, nowMs: 6) == .admit, "a slot of that address is free again")
    }

    @Test func connectionsInARequestAreKeptUntilTheyOverstay() {
        var state = admission(max: 2, perAddress: 10, busyAfter: 1_000)
        _ = state.opened(1, address: a, nowMs: 0)
        _ = state.opened(2, address: b, nowMs: 0)
        state.requestStarted(1, nowMs: 10)
        state.requestStarted(2, nowMs: 20)
        #expect(state.opened(3, address: a, nowMs: 500) == .refuse(.full), "every connection is inside a request")
        // A client that stopped reading its response: after busyAfter it may go too (the oldest first).
        #expect(state.opened(4, address: a, nowMs: 1_015) == .admitEvicting(victim: 1))
        state.requestStarted(4, nowMs: 1_015)
        #expect(state.opened(5, address: a, nowMs: 1_016) == .refuse(.full), "2 has not overstayed yet")
    }

    @Test func idleConnectionsGoBeforeOverstayingOnes() {
        var state = admission(max: 2, perAddress: 10, busyAfter: 100)
        _ = state.opened(1, address: a, nowMs: 0)
        _ = state.opened(2, address: b, nowMs: 50)
        state.requestStarted(1, nowMs: 0)
        #expect(state.opened(3, address: a, nowMs: 10_000) == .admitEvicting(victim: 2))
    }

    @Test func ipv6ClientsCountPerSlash64AndMappedIPv4AsIPv4() {
        var first = [UInt8](repeating: 0, count: 16)
        first[0] = 0x20; first[1] = 0x01; first[15] = 1
        var sameNetwork = first
        sameNetwork[15] = 2
        sameNetwork[9] = 0x77
        var otherNetwork = first
        otherNetwork[7] = 1
        #expect(ClientAddressKey(ipv6: first) == ClientAddressKey(ipv6: sameNetwork))
        #expect(ClientAddressKey(ipv6: first) != ClientAddressKey(ipv6: otherNetwork))
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1]
        #expect(ClientAddressKey(ipv6: mapped) == a)
        #expect(ClientAddressKey(ipv6: first).description == "2001:0:0:0::/64")
    }
}

/// The same over real sockets: idle and slow-loris connections, up to every limit, never keep a health
/// check out (issue 7: 100 idle connections used to make /healthz fail).
@Suite(.serialized) struct ConnectionFloodTests {
    /// Clients play several addresses of 127.0.0.0/8, so the per-address limit lets them reach the
    /// connection limit.
    private func flood(
        _ server: OpsHTTPServer, addresses: ClosedRange<Int>, perAddress: Int, slowLoris: Bool
    ) throws -> [RawHTTPConnection] {
        var held: [RawHTTPConnection] = []
        for address in addresses {
            for _ in 0..<perAddress {
                let connection = try RawHTTPConnection(port: server.boundPort, source: "127.0.0.\(address)")
                if slowLoris { try connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n") }
                held.append(connection)
            }
        }
        return held
    }

    private func healthy(_ server: OpsHTTPServer) throws -> Bool {
        let response = try RawHTTP.get("/healthz", port: server.boundPort, source: "127.0.0.1")
        return response.status == 200 && response.text == "ok"
    }

    private func healthServer(
        maxConnections: Int, perAddress: Int, events: Locked<[OpsHTTPEvent]>
    ) throws -> OpsHTTPServer {
        let server = OpsHTTPServer(
            configuration: .init(maxConnections: maxConnections, maxConnectionsPerAddress: perAddress, connectionTimeoutSeconds: 60),
            logger: testLogger(),
            observe: { event in
                if case .openConnections = event { return }
                events.withLock { $0.append(event) }
            },
            handler: { _ in .text("ok") })
        try server.start()
        return server
    }

    @Test(arguments: [false, true])
    func healthChecksAreAnsweredWithTheConnectionLimitTakenByIdleClients(slowLoris: Bool) async throws {
        let events = Locked<[OpsHTTPEvent]>([])
        let server = try healthServer(maxConnections: 40, perAddress: 10, events: events)
        defer { server.stop() }
        var held = try flood(server, addresses: 2...5, perAddress: 10, slowLoris: slowLoris)
        let context = try #require(server.runningContext)
        try await waitUntil("all 40 accepted: \(context.connections.counts)") { context.connections.counts.open == 40 }

        // Ten rounds: a health check at the limit, then the attacker fills the limit again.
        for round in 0..<10 {
            #expect(try healthy(server), "round \(round)")
            // The check's own connection closes (39 left), then the attacker refills the limit.
            try await waitUntil { context.connections.counts.open == 39 }
            held += try flood(server, addresses: 6...6, perAddress: 1, slowLoris: slowLoris)
            try await waitUntil { context.connections.counts.open == 40 }
        }
        #expect(events.current.filter { $0 == .connectionEvicted }.count == 10, "each check made room once")
        #expect(!events.current.contains { if case .connectionRefused = $0 { true } else { false } })
        // Ten clients were closed, unanswered; the other 40 are still open.
        try await waitUntil { held.filter { $0.peerClosed() }.count == 10 }
        let closed = held.filter { $0.peerClosed() }
        #expect(closed.count == 10)
        #expect(closed.allSatisfy { (try? $0.readToEOF())?.isEmpty == true })
    }

    @Test func oneAddressCannotTakeMoreThanItsShare() async throws {
        let events = Locked<[OpsHTTPEvent]>([])
        let server = try healthServer(maxConnections: 100, perAddress: 8, events: events)
        defer { server.stop() }
        let held = try flood(server, addresses: 2...2, perAddress: 8, slowLoris: false)
        let context = try #require(server.runningContext)
        try await waitUntil { context.connections.counts.open == 8 }

        // A ninth connection from 127.0.0.2 (a health checker on the flooding host) is served: it takes the
        // place of that address's connection idle longest, and the address still holds eight.
        let ninth = try RawHTTPConnection(port: server.boundPort, source: "127.0.0.2")
        try ninth.send(RawHTTP.requestBytes("GET", "/healthz"))
        #expect(try ninth.readResponse().status == 200)
        try await waitUntil { events.current.contains(.connectionEvicted) }
        #expect(!events.current.contains(.connectionRefused(.perAddress)))
        #expect(context.connections.counts.open <= 8, "127.0.0.2 never holds more than its share")
        #expect(try healthy(server), "another address is served")
        _ = held
    }

    @Test func whenEveryConnectionIsInARequestANewOneIsRefused() async throws {
        let events = Locked<[OpsHTTPEvent]>([])
        let responders = Locked<[OpsResponder]>([])
        let server = OpsHTTPServer(
            configuration: .init(maxConnections: 2), logger: testLogger(),
            observe: { event in events.withLock { $0.append(event) } },
            replying: { _ in .deferred { responder in responders.withLock { $0.append(responder) } } })
        try server.start()
        defer { server.stop() }

        var busy: [RawHTTPConnection] = []
        for _ in 0..<2 {
            let connection = try RawHTTPConnection(port: server.boundPort)
            try connection.send(RawHTTP.requestBytes("GET", "/wait"))
            busy.append(connection)
        }
        try await waitUntil { responders.current.count == 2 }
        let third = try RawHTTPConnection(port: server.boundPort)
        try? third.send(RawHTTP.requestBytes("GET", "/wait"))
        #expect(try third.readToEOF().isEmpty)
        try await waitUntil { events.current.contains(.connectionRefused(.full)) }

        for responder in responders.current { responder.respond(.text("done")) }
        for connection in busy { #expect(try connection.readResponse().text == "done") }
    }
}
