import NIOCore
import NIOEmbedded
import NIOWebSocket
import TandemAllocationCounter
import TandemCore
@testable import TandemServer
import Testing

/// Issue 14 item 4: the presence hot path's heap allocations through the real `/v1/ws` pipeline, as
/// swift-nio guards its own hot paths. Unlike `PresenceAllocationTests` (which calls `receivedText`),
/// each update here goes in as the client's masked bytes through the channel pipeline `WebSocketServer`
/// builds for `/v1/ws` (`PreframedWriter`, NIO's frame encoder, `ConnectionHandler` with its
/// `InboundFrameDecoder`, `FrameUnmasker` and the connection), and each delta comes out of the channel as
/// bytes. Eight connections and their doc's shard on one embedded loop, in steady state (every session
/// joined, buffers grown). The ceilings are what the path costs now in a debug build; a change that adds
/// an allocation per update or per delivered entry fails here. Lower them when the path gets cheaper.
@Suite(.enabled(if: tandem_allocation_counter_available() == 1, "a sanitizer build keeps its own malloc"))
struct PresencePipelineAllocationTests {
    /// Allocations per inbound presence update, from the read's bytes entering the pipeline to the state
    /// applied in the doc (one read per update, as the bench's clients send). Measured 1.0 in a debug build
    /// (the state's bytes, as through `receivedText`: the decoder and the unmasker allocate nothing per
    /// frame once the connection's kept buffer has grown). Fails on one more allocation per round of 32
    /// updates (33 / 32 = 1.031).
    static let maxAllocationsPerUpdate = 1.02
    /// Allocations of a tick's delivery per delivered entry (each of the eight members gets one delta with
    /// every sender's entry: 64 entries per tick). Measured 0.640625 in a debug build, 41 allocations per
    /// tick (the delta and its entries, the Redis write's command, the hop and its frame, the embedded
    /// loop's task queue: once per doc, not per member or entry). Fails on one more allocation per tick
    /// (42 / 64 = 0.656).
    static let maxAllocationsPerDeliveredEntry = 0.65

    /// A client's end of a real `/v1/ws` pipeline on an embedded channel.
    final class PipelineClient {
        let channel: EmbeddedChannel
        let connection: ClientConnection
        private var pending: [UInt8] = []

        init(id: UInt64, user: String, fixture: ConnectionLayerTests.Fixture) throws {
            channel = EmbeddedChannel(loop: fixture.loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()  // active, as a client socket
            let preframed = PreframedWriter()
            connection = ClientConnection(
                id: id, sessionID: "s\(id)",
                identity: Identity(user: user, name: user, access: DocAccess(grants: [(pattern: "*", role: .editor)])),
                resumed: false, channel: channel, dependencies: fixture.dependencies, preframed: preframed)
            // `WebSocketServer.upgradedClient`'s pipeline; the handler starts the connection (channel active).
            try channel.pipeline.syncOperations.addHandler(preframed, position: .first)
            try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
            try channel.pipeline.syncOperations.addHandler(
                ConnectionHandler(
                    connection: connection, maxFrameBytes: 65_536, maxFragments: WebSocketServer.maxFragmentsPerMessage,
                    maxMessageBytes: 65_536))
            fixture.loop.run()
        }

        /// `text` as one masked text frame, as a client sends it.
        func frame(_ text: String, key: UInt32) -> ByteBuffer {
            let payload = Array(text.utf8)
            precondition(payload.count < 126)  // the short length form is all these messages need
            var buffer = channel.allocator.buffer(capacity: 6 + payload.count)
            buffer.writeInteger(UInt8(0x81))
            buffer.writeInteger(UInt8(0x80 | payload.count))
            buffer.writeInteger(key)
            let mask = withUnsafeBytes(of: key.bigEndian) { Array($0) }
            for (index, byte) in payload.enumerated() { buffer.writeInteger(byte ^ mask[index % 4]) }
            return buffer
        }

        /// One socket read: `bytes` through the pipeline, then the read's end (what NIO's channel does).
        func read(_ bytes: ByteBuffer) {
            channel.pipeline.syncOperations.fireChannelRead(NIOAny(bytes))
            channel.pipeline.syncOperations.fireChannelReadComplete()
        }

        /// The text frames the server wrote since the last call.
        func texts() throws -> [String] {
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { pending += buffer.readableBytesView }
            return ConnectionLayerTests.Client.takeFrames(from: &pending).filter { $0.opcode == 0x1 }.map(\.text)
        }
    }

    func counted(_ body: () throws -> Void) rethrows -> Int {
        tandem_allocation_counter_start()
        defer { _ = tandem_allocation_counter_stop() }
        try body()
        return tandem_allocation_counter_stop()
    }

    @Test func steadyStatePresenceThroughThePipelineAllocatesWithinItsCeilings() throws {
        let fixture = try ConnectionLayerTests.Fixture {
            $0.tickMs = 50
            $0.presenceRate = 10_000
            $0.presenceBurst = 10_000
        }
        let doc = "d1"
        let members = try (2...9).map { try PipelineClient(id: UInt64($0), user: "u\($0)", fixture: fixture) }
        defer { withExtendedLifetime(fixture) { for member in members { _ = try? member.channel.finish(acceptAlreadyClosed: true) } } }
        let shard = fixture.shards.all[0]
        shard.start()
        for (index, member) in members.enumerated() {
            member.read(member.frame(#"{"t":"join","doc":"\#(doc)"}"#, key: 0x1234_5678 &+ UInt32(index)))
        }
        fixture.loop.run()
        for member in members {
            let joined = try member.texts()
            try #require(joined.contains { $0.contains(#""t":"joined""#) }, "every member joined: \(joined)")
        }
        let updatesPerMember = 4
        let rounds = 6
        var perUpdate: [Double] = []
        var perEntry: [Double] = []
        for round in 0..<rounds {
            // The frames are the clients' bytes (NIO's read buffer in production): made before counting.
            // Every member sends `updatesPerMember` updates, one per read, interleaved as the bench's are.
            var reads: [(member: Int, bytes: ByteBuffer)] = []
            for seq in 0..<updatesPerMember {
                for index in members.indices {
                    let text = #"{"t":"presence","doc":"\#(doc)","state":{"b":1,"n":\#(round * 100 + seq),"x":12.5,"y":-3}}"#
                    reads.append((index, members[index].frame(text, key: UInt32(truncatingIfNeeded: 0x9E37_79B9 &* (round * 31 + seq + index)))))
                }
            }
            let updates = counted {
                // By index: a for-in over the array allocated an iterator per read in a debug build (the
                // test's, not the path's).
                for index in reads.indices { members[reads[index].member].read(reads[index].bytes) }
            }
            // The tick run directly (and the hops it queues), not by advancing the clock: the shard's other
            // timers (the event-loop lag probe) are not presence's to count.
            let deliveries = counted {
                shard.tick()
                fixture.loop.run()
            }
            // What each member got: one delta with every sender's latest state (the delta is encoded once for
            // the doc, so it holds the member's own entry too).
            let latest = #""n":\#(round * 100 + updatesPerMember - 1)"#
            var entries = 0
            for (index, member) in members.enumerated() {
                let deltas = try member.texts().filter { $0.contains(#""t":"presence""#) }
                try #require(deltas.count == 1, "member \(index) got one delta in round \(round): \(deltas)")
                let got = deltas[0].components(separatedBy: latest).count - 1
                try #require(got >= members.count - 1, "member \(index) got the others' latest states: \(deltas[0])")
                entries += got
            }
            // The first rounds grow buffers and dictionaries; the steady state is what is bounded.
            guard round >= 2 else { continue }
            perUpdate.append(Double(updates) / Double(reads.count))
            perEntry.append(Double(deliveries) / Double(entries))
        }
        print("PresencePipelineAllocationTests: allocations per update \(perUpdate), per delivered entry \(perEntry)")
        for value in perUpdate { #expect(value <= Self.maxAllocationsPerUpdate) }
        for value in perEntry { #expect(value <= Self.maxAllocationsPerDeliveredEntry) }
    }
}
