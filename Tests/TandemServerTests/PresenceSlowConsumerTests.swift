import Foundation
import Testing
import TandemTestSupport

/// Requirement 6: a client that stops reading never makes the server's memory grow without bound.
@Suite(.serialized, .cleanup) struct PresenceSlowConsumerTests {
    /// The stalled reader's receive buffer: fixed and small, so the reader's side holds the same ~128 KB
    /// on any machine (auto-tuned, it may grow to tcp_rmem's maximum: 32 MiB here, more than the floods).
    static let stalledReceiveBuffer = 64 * 1024
    /// A stalled reader answers no pings either: at the default interval (10 s, closed after two missed)
    /// a slow build (ThreadSanitizer) closed it for the ping timeout before the bound under test was
    /// reached. These tests are about outbound bounds, so pings wait.
    static let pingIntervalMs = 10 * 60 * 1000

    /// Three clients send large presence states (8 KB, at the 20/s rate: ~480 KB/s towards each
    /// subscriber, which a debug build keeps up with on a busy two-core machine) while one subscriber
    /// stops reading. Its presence is merged instead of queued
    /// (`tandem_slow_consumer_coalesced_total` grows), the outbound queue gauge stays bounded, it is not
    /// closed (8 MiB limit never reached), the other subscriber keeps receiving, and once it reads again
    /// it gets the latest state of every session.
    @Test(
        .disabled(
            if: RunningSanitizer.current == .thread,
            """
            needs some 3 MB of presence through the node before the stalled socket backs up (the server's \
            loopback send buffer): more than ten minutes of a ThreadSanitizer build on two shared cores. The \
            coalescing code is loop-confined like the rest of ClientConnection, which the other tests \
            exercise under ThreadSanitizer; this test runs under AddressSanitizer and in the normal build.
            """))
    func aStalledReaderHasItsPresenceCoalescedAndOthersKeepReceiving() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "slow-p", stopWhenDone: true) {
            $0.limits.maxStateBytes = 64 * 1024
            $0.pingIntervalMs = Self.pingIntervalMs
        }
        let slow = try await TestClient.connect(node.url(user: "slow"), name: "slow", receiveBufferBytes: Self.stalledReceiveBuffer)
        let observer = try await TestClient.connect(node.url(user: "observer"), name: "observer")
        var connected: [TestClient] = []
        for i in 0..<3 { connected.append(try await TestClient.connect(node.url(user: "f\(i)"), name: "f\(i)")) }
        let flooders = connected
        for client in [slow, observer] + flooders { try await client.join("sp", state: ["seq": 0]) }
        let everyone = Set(([slow, observer] + flooders).map(\.session))
        try await waitUntil("everyone sees everyone") { slow.members(of: "sp") == everyone && observer.members(of: "sp") == everyone }

        try await slow.socket.setReading(paused: true)
        let coalesced = "tandem_slow_consumer_coalesced_total"
        let coalescedBefore = try await node.value(coalesced)
        let closedBefore = try await node.value(#"tandem_connections_closed_total{reason="slow_consumer"}"#)
        let pad = String(repeating: "x", count: 8_000)
        // Each flooder sends at the 20/s rate until told to stop (at most a minute, times the test timeout
        // scale); the last state it sent carries its count.
        let stop = Locked(false)
        let flood = Task {
            try await withThrowingTaskGroup(of: (String, Int).self) { group in
                for flooder in flooders {
                    group.addTask {
                        var sent = 0
                        let start = ContinuousClock.now
                        while !stop.value, ContinuousClock.now - start < TestTimeouts.scaled(.seconds(60)) {
                            sent += 1
                            flooder.sendRaw(#"{"t":"presence","doc":"sp","state":{"seq":\#(sent),"pad":"\#(pad)"}}"#)
                            try await Task.sleep(for: .milliseconds(50))
                        }
                        return (flooder.session, sent)
                    }
                }
                var last: [String: Int] = [:]
                for try await (sid, sent) in group { last[sid] = sent }
                return last
            }
        }
        var maxQueue = 0.0
        // Coalescing starts once the kernel holds what it will for the stalled socket (the server's send
        // buffer alone grows to a few MB on loopback, whatever the reader's receive buffer) and the
        // high-water mark is passed: about 12 s of flooding here.
        try await waitUntil("the stalled reader's presence is coalesced", timeout: .seconds(30)) {
            maxQueue = max(maxQueue, try await node.value(#"tandem_queue_depth{queue="outbound"}"#))
            return try await node.value(coalesced) >= coalescedBefore + 20
        }
        // While it stays stalled, the others keep getting deltas, it keeps being coalesced, and the queue
        // stays bounded (the housekeeping gauge samples it every second).
        let mark = observer.count
        let coalescedMark = try await node.value(coalesced)
        try await waitUntil("the observer keeps receiving deltas; \(observer.summary().prefix(300))", timeout: .seconds(20)) {
            observer.deltas(of: "sp", since: mark).count >= 10
        }
        try await waitUntil("coalescing goes on over two gauge samples", timeout: .seconds(20)) {
            maxQueue = max(maxQueue, try await node.value(#"tandem_queue_depth{queue="outbound"}"#))
            return try await node.value(coalesced) >= coalescedMark + 40 && maxQueue > 0
        }
        #expect(!slow.isClosed)
        stop.withLock { $0 = true }
        let last = try await flood.value
        maxQueue = max(maxQueue, try await node.value(#"tandem_queue_depth{queue="outbound"}"#))
        print("PresenceSlowConsumerTests: max outbound queue gauge \(maxQueue) bytes; sent \(last)")
        #expect(maxQueue < 2 * 1024 * 1024, "outbound bytes stay near the high-water mark: \(maxQueue)")
        #expect(!slow.isClosed)
        #expect(try await node.value(#"tandem_connections_closed_total{reason="slow_consumer"}"#) == closedBefore)
        try await waitUntil("the observer has every flooder's last state", timeout: .seconds(20)) {
            flooders.allSatisfy { observer.state(of: $0.session, in: "sp")?["seq"] as? Int == last[$0.session] }
        }

        try await slow.socket.setReading(paused: false)
        try await waitUntil("the slow reader catches up with every latest state", timeout: .seconds(20)) {
            flooders.allSatisfy { slow.state(of: $0.session, in: "sp")?["seq"] as? Int == last[$0.session] }
        }
        for client in [slow, observer] + flooders { await client.close() }
    }

    /// Past `--max-outbound-bytes` (here 1 MiB) of document messages queued for a stalled reader, it is
    /// closed (reason `slow_consumer`, code 1013), while the pusher and another subscriber get every
    /// result and patch.
    @Test func aStalledReaderPastTheOutboundLimitIsClosedAndOthersAreNotHeldUp() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "slow-s", stopWhenDone: true) {
            $0.maxOutboundBytes = 1024 * 1024
            $0.pingIntervalMs = Self.pingIntervalMs
            // Pushes of 50 KB on a possibly busy machine: queue them rather than refuse some as busy.
            $0.maxPushWaitMs = 60_000
        }
        let slow = try await TestClient.connect(node.url(user: "slow"), name: "slow", receiveBufferBytes: Self.stalledReceiveBuffer)
        let observer = try await TestClient.connect(node.url(user: "observer"), name: "observer")
        let pusher = try await TestClient.connect(node.url(user: "pusher"), name: "pusher")
        for client in [slow, observer, pusher] { try await client.join("ss") }
        try await slow.socket.setReading(paused: true)
        let closed = #"tandem_connections_closed_total{reason="slow_consumer"}"#
        let closedBefore = try await node.value(closed)

        let pushes = 200
        let big = String(repeating: "y", count: 50_000)
        // Paced by what the observer has read: at most `window` patches (400 KB) are ever queued for it, far
        // below the 1 MiB bound, however slowly this (in-process, possibly busy) test client parses them;
        // the stalled reader still gets all 10 MB queued. Unpaced, a busy CI machine once let the observer
        // fall 1 MiB behind as well, and it was closed too.
        let window = 8
        for id in 1...pushes {
            if id > window {
                try await waitUntil("the observer reads patch \(id - window)", timeout: .seconds(30)) {
                    observer.all("patch").count >= id - window || observer.isClosed
                }
                #expect(!observer.isClosed, "the observer, which reads, is never closed")
                if observer.isClosed { break }
            }
            pusher.sendRaw(#"{"t":"push","doc":"ss","id":\#(id),"base":0,"ops":{"r\#(id % 7)":["put",{"big":"\#(big)"}]}}"#)
        }
        try await waitUntil("the stalled reader is closed as a slow consumer", timeout: .seconds(30)) {
            try await node.value(closed) == closedBefore + 1
        }
        try await waitUntil("the pusher gets all results", timeout: .seconds(30)) { pusher.all("result").count == pushes }
        try await waitUntil(
            "the observer gets all patches (has \(observer.all("patch").count), closed: \(observer.isClosed))", timeout: .seconds(30)
        ) { observer.all("patch").count == pushes }
        #expect(pusher.all("result").allSatisfy { JSON.string($0, at: "action") == "commit" })
        #expect(!observer.isClosed && !pusher.isClosed)
        try await slow.socket.setReading(paused: false)
        let code = try await slow.waitClosed(timeout: .seconds(20))
        // The 1013 close frame sits behind the queued data the server drops when it closes, so the client
        // sees the connection end without it (reported; the server-side reason is what is asserted).
        print("PresenceSlowConsumerTests: the closed slow reader saw close code \(code.map(String.init) ?? "none")")
        #expect(code == nil || code == 1013, "closed as a slow consumer, not for another reason: \(String(describing: code))")
        #expect(slow.all("patch").count < pushes, "the slow reader was cut off before receiving everything")
        await observer.close()
        await pusher.close()
    }
}
