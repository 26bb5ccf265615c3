import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Slow consumers never lose document patches: a client that stops reading is closed with 1013 once its
/// queue passes `--max-outbound-bytes`, and reconnecting with `since` it gets everything it missed.
///
/// The test moves tens of megabytes through a debug build (bursts of 50 KB pushes, each fanned out to
/// three clients, a catch-up several times `--max-outbound-bytes`): a few seconds on a quiet machine, but
/// several times that on two cores shared with other builds and test runs, where the waits written for a
/// quiet machine (15 s for a burst's last answer or the watcher's head, 30 s for the catch-up, a
/// 2-minute suite) once ran out. Every wait on the flood is bounded by `floodWait` instead, and the suite
/// by 5 minutes: bounds on conditions, not performance assertions.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(5 * TestTimeouts.scale))) struct SyncSlowConsumerTests {
    static let floodWait: Duration = .seconds(90)

    @Test func aClientThatStopsReadingIsClosedAndCatchesUpOnReconnect() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.outboundLowWaterBytes = 64 * 1024
            $0.outboundHighWaterBytes = 256 * 1024
            $0.maxOutboundBytes = 2 * 1024 * 1024
            $0.pingIntervalMs = PresenceSlowConsumerTests.pingIntervalMs
            // Bursts of 50 KB pushes (slow in a debug build): queue them all rather than refuse some as busy.
            $0.maxPushWaitMs = 60_000
        }
        let doc = "slow:1"
        let writer = try await cluster.client("writer", node: 1)
        // A fixed, small receive buffer: the server backs up after --max-outbound-bytes plus a little, not
        // after whatever the kernel auto-tunes the buffer to (see PresenceSlowConsumerTests).
        let slow = try await cluster.client("slow", node: 0, receiveBufferBytes: PresenceSlowConsumerTests.stalledReceiveBuffer)
        let watcher = try await cluster.client("watcher", node: 0)
        for client in [writer, slow, watcher] { try await client.join(doc) }
        let closedBefore = try await cluster.nodes[0].metric(#"tandem_connections_closed_total{reason="slow_consumer"}"#)

        try await slow.socket.socket.setReading(paused: true)
        let session = slow.session
        let payload = String(repeating: "x", count: 50_000)
        var pushes = 0
        func slowClosed() async throws -> Bool {
            try await cluster.nodes[0].metric(#"tandem_connections_closed_total{reason="slow_consumer"}"#) > closedBefore
        }
        // Pushes are paced by what the watcher (which reads) has applied: at most `window` patches (400 KB)
        // are ever queued for it, far below --max-outbound-bytes, however slowly this in-process test client
        // parses them on a busy machine; the stalled client still gets everything queued. Unpaced, the
        // watcher could fall 2 MiB behind too and be closed (PresenceSlowConsumerTests failed CI that way).
        let window = 8
        func paced(_ next: Int) async throws {
            guard next > window else { return }
            try await waitUntil("the watcher applied commit \(next - window)", timeout: Self.floodWait) {
                watcher.view(doc).head >= UInt64(next - window) || watcher.socket.isClosed
            }
            #expect(!watcher.socket.isClosed, "the watcher, which reads, is never closed")
        }
        while pushes < 800 {
            pushes += 1
            try await paced(pushes)
            writer.push(doc, id: .number(pushes), ops: json(#"{"r\#(pushes % 8)":["put",{"k":\#(pushes),"payload":"\#(payload)"}]}"#))
            if pushes % 10 == 0 {
                #expect(try await writer.answer(doc, id: pushes, timeout: Self.floodWait).string("action") == "commit")
                if try await slowClosed() { break }
            }
        }
        try await waitUntil("the slow client closed by the server", timeout: Self.floodWait) { try await slowClosed() }
        print("SyncSlowConsumerTests: closed after \(pushes) pushes of \(payload.utf8.count) bytes")
        // The doc goes on while it is away (its catch-up will be several times --max-outbound-bytes).
        for k in 1...100 {
            try await paced(pushes + k)
            writer.push(doc, id: .number(pushes + k), ops: json(#"{"r\#(k % 8)":["put",{"k":\#(k),"payload":"\#(payload)"}]}"#))
        }
        pushes += 100
        #expect(try await writer.answer(doc, id: pushes, timeout: Self.floodWait).string("action") == "commit")
        // A client that reads keeps getting everything meanwhile.
        let head = SyncRedis.head(cluster.redis, doc)
        try await watcher.waitHead(doc, head, timeout: Self.floodWait)
        cluster.expectRecordsEqualRedis(watcher, doc)

        // The slow client reads what had reached it, sees the connection end, and comes back.
        try await slow.socket.socket.setReading(paused: false)
        try await waitUntil("slow client sees its connection end", timeout: Self.floodWait) { slow.socket.isClosed }
        #expect([nil, 1013].contains(slow.socket.closeCode), "closed with 1013 (if the close frame got through): \(slow.socket.closeCode ?? 0)")
        let since = slow.view(doc).head
        #expect(since < head, "it missed commits")
        try await slow.reconnect(cluster.nodes[0].url(user: "slow", query: "resume=\(session)"))
        try await slow.join(doc, since: since, timeout: Self.floodWait)
        #expect(slow.view(doc).chunks.first?.type == "log")
        print("SyncSlowConsumerTests: caught up from \(since) to \(head) in \(slow.view(doc).chunks.count) chunks")
        try await slow.waitHead(doc, head, timeout: Self.floodWait)
        #expect(!slow.socket.isClosed, "the catch-up itself must not get it closed again (close code \(slow.socket.closeCode ?? 0))")
        cluster.expectRecordsEqualRedis(slow, doc)
        await cluster.finish()
    }
}
