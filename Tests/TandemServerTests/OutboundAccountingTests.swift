import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// What a client that does not read can make the server queue for it: pongs, catch-ups of re-joins,
/// answers to `sync`. Each is bounded or counted against `--max-outbound-bytes`. The clients here are
/// raw sockets with a small receive buffer, so back-pressure reaches the server at once.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct OutboundAccountingTests {
    /// A doc of about `records` × 60 KB, written by `writer` in pushes of 16 records.
    private func fillDoc(_ doc: String, records: Int, writer: TestClient) async throws {
        let payload = String(repeating: "x", count: 60_000)
        var id = 0
        for start in stride(from: 0, to: records, by: 16) {
            id += 1
            let ops = (start..<min(records, start + 16)).map { #""r\#($0)":["put",{"p":"\#(payload)"}]"# }.joined(separator: ",")
            writer.sendRaw(#"{"t":"push","doc":"\#(doc)","id":\#(id),"base":0,"ops":{\#(ops)}}"#)
            let answer = try await writer.next("result", doc: doc)
            #expect(JSON.string(answer, at: "action") == "commit")
        }
    }

    /// Connects a raw WebSocket client that will not read (4 KiB receive buffer).
    private func rawClient(_ node: InProcessNode, user: String) async throws -> RawSocket {
        let socket = try RawSocket(port: node.port, receiveBuffer: 4096)
        #expect(try await socket.upgrade(query: "user=\(user)") == 101)
        return socket
    }

    /// A client that pings without reading gets at most one pong in flight: the others are answered only
    /// for the latest ping (RFC 6455 §5.5.3), so the send buffer stays small and nothing is closed.
    @Test func aPingFloodFromAClientThatDoesNotReadKeepsOnePongInFlight() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "pong-flood", stopWhenDone: true)
        let socket = try await rawClient(node, user: "pinger")
        let pings = 60_000
        var flood: [UInt8] = []
        flood.reserveCapacity(pings * 131)
        for i in 1...pings {
            var payload = Array(String(format: "%08d", i).utf8)
            payload += [UInt8](repeating: 0x2e, count: 125 - payload.count)
            flood += RawSocket.frame(opcode: 0x9, payload)
        }
        // A bad frame after the flood: once it is counted, the node has handled every ping before it.
        let badBefore = try await node.value(#"tandem_protocol_errors_total{code="bad_message"}"#)
        try socket.write(flood + RawSocket.text("nope"))
        try await waitUntil("the node read every ping", timeout: .seconds(30)) {
            try await node.value(#"tandem_protocol_errors_total{code="bad_message"}"#) > badBefore
        }
        // Without the bound, 60,000 pongs (7.6 MB) would pile up for a client that reads nothing. The
        // outbound gauge is sampled once a second: watch it over a few samples.
        var largest = 0.0
        let until = ContinuousClock.now.advanced(by: .milliseconds(2_500))
        while ContinuousClock.now < until {
            largest = max(largest, try await node.value(#"tandem_queue_depth{queue="outbound"}"#))
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(largest < 64 * 1024, "at most a pong or two buffered, not thousands: \(largest) bytes")
        #expect(!socket.closedByPeer, "a ping flood is not a reason to close")
        let coalesced = try await node.value("tandem_pongs_coalesced_total")
        #expect(coalesced >= Double(pings / 2), "most pings were answered by a later pong: \(coalesced)")
        socket.setReceiveBuffer(1 << 20)

        // Reading again, the client gets its pongs; the last one answers the last ping.
        try await waitUntil("the pong for the last ping", timeout: .seconds(20)) {
            let pongs = socket.frames().filter { $0.opcode == 0xA }
            return pongs.last.map { String(decoding: $0.payload.prefix(8), as: UTF8.self) } == String(format: "%08d", pings)
        }
        let pongs = socket.frames().filter { $0.opcode == 0xA }.count
        #expect(pongs < pings / 2, "\(pongs) pongs for \(pings) pings")
        socket.close()
    }

    /// Re-joins of a doc while its catch-up is backed up replace that catch-up: the client gets one
    /// complete catch-up after its last `joined`, not one per join.
    @Test func reJoinsReplaceACatchUpThatIsStillQueued() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "rejoin-catchup", stopWhenDone: true) {
            $0.presenceRate = 100
            $0.presenceBurst = 50
        }
        let doc = "big"
        let writer = try await TestClient.connect(node.url(user: "writer"), name: "writer")
        try await writer.join(doc)
        // About 7.2 MB: more than the kernel buffers of both ends take (the node's send buffer grows up to
        // 4 MB), so the snapshot is still being produced when the re-joins come.
        try await fillDoc(doc, records: 120, writer: writer)
        let socket = try await rawClient(node, user: "joiner")
        try socket.write(RawSocket.text(#"{"t":"join","doc":"big"}"#))
        try await waitUntil("the snapshot is backed up in the node", timeout: .seconds(15)) {
            try await node.value(#"tandem_queue_depth{queue="outbound"}"#) > 100_000
        }
        let replacedBefore = try await node.value("tandem_catchups_replaced_total")
        let rejoins = 10
        for _ in 0..<rejoins { try socket.write(RawSocket.text(#"{"t":"join","doc":"big"}"#)) }
        var replaced = 0.0
        try await waitUntil("every re-join replaced the pending catch-up: \(replaced)") {
            replaced = try await node.value("tandem_catchups_replaced_total") - replacedBefore
            return replaced == Double(rejoins)
        }
        // A commit after the re-joins: its patch is queued behind the last catch-up, so once it arrives
        // the client has everything before it.
        writer.sendRaw(#"{"t":"push","doc":"big","id":99,"base":8,"ops":{"after":["put",{}]}}"#)
        #expect(JSON.string(try await writer.next("result", doc: doc), at: "action") == "commit")
        socket.setReceiveBuffer(1 << 20)
        var texts: [String] = []
        try await waitUntil("the patch after the last catch-up", timeout: .seconds(60)) {
            texts = socket.frames().filter { $0.opcode == 0x1 }.map { String(decoding: $0.payload, as: UTF8.self) }
            return texts.contains { $0.hasPrefix(#"{"t":"patch""#) }
        }
        let joined = texts.filter { $0.hasPrefix(#"{"t":"joined""#) }.count
        let lastJoined = texts.lastIndex { $0.hasPrefix(#"{"t":"joined""#) }!
        let finals = texts.indices.filter { texts[$0].hasPrefix(#"{"t":"snapshot""#) && texts[$0].contains(#""more":false"#) }
        #expect(joined == rejoins + 1)
        #expect(finals.count == 1, "one complete catch-up, not \(finals.count)")
        #expect(finals.allSatisfy { $0 > lastJoined }, "and it follows the last joined")
        let snapshotBytes = texts.filter { $0.hasPrefix(#"{"t":"snapshot""#) }.reduce(0) { $0 + $1.utf8.count }
        #expect(snapshotBytes < 2 * 7_500_000, "at most the interrupted first catch-up and the last: \(snapshotBytes) bytes")
        socket.close()
        await writer.close()
    }

    /// Answers to explicit `sync` requests wait in the client's queue; a client that keeps asking
    /// without reading reaches `--max-outbound-bytes` and is closed with 1013, as for any other backlog.
    @Test func syncAnswersCountAgainstTheOutboundLimit() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "sync-flood", stopWhenDone: true) {
            $0.logRetention = 2  // so `from: 0` predates the history and is answered with a snapshot
            $0.maxOutboundBytes = 4 * 1024 * 1024
        }
        let doc = "hist"
        let writer = try await TestClient.connect(node.url(user: "writer"), name: "writer")
        try await writer.join(doc)
        try await fillDoc(doc, records: 40, writer: writer)
        let closedBefore = try await node.value(#"tandem_connections_closed_total{reason="slow_consumer"}"#)
        let socket = try await rawClient(node, user: "asker")
        try socket.write(RawSocket.text(#"{"t":"join","doc":"hist","since":3}"#))
        for _ in 0..<40 { try socket.write(RawSocket.text(#"{"t":"sync","doc":"hist","from":0}"#)) }
        try await waitUntil("the asking client closed as a slow consumer", timeout: .seconds(30)) {
            try await node.value(#"tandem_connections_closed_total{reason="slow_consumer"}"#) > closedBefore
        }
        try await waitUntil("its socket closed", timeout: .seconds(10)) { socket.closedByPeer }
        // The writer, reading normally, is unaffected.
        writer.sendRaw(#"{"t":"ping"}"#)
        try await writer.next("pong")
        socket.close()
        await writer.close()
    }
}
