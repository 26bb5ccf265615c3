import NIOCore
import NIOEmbedded
import TandemCore
@testable import TandemServer
import Testing

/// How a round of a doc's ordered stream reaches one member's socket (issue 8 stop 26): a hot doc sends
/// every member a frame per commit, tens per round, so what each frame costs on its way to the socket is
/// what bounds the doc. Driven through a real `ClientConnection` on an `EmbeddedChannel` (each buffer read
/// back from the channel is one write the connection issued); the frames on the wire must stay the same
/// frames, in the same order, with nothing lost while the client does not read.
@Suite struct SyncWritePathTests {
    typealias Fixture = ConnectionLayerTests.Fixture

    /// Distinct text frames (`payload-N` padded to `size` bytes), framed as the shard frames them.
    static func frames(_ count: Int, size: Int = 40, from first: Int = 0) -> [(text: String, buffer: ByteBuffer)] {
        (first..<first + count).map { i in
            let text = "payload-\(i)" + String(repeating: "x", count: max(0, size - "payload-\(i)".utf8.count))
            return (text, ServerFrame.text(Array(text.utf8), allocator: ByteBufferAllocator()))
        }
    }

    /// The buffers written since the last call, without running the loop (so without the tasks it holds).
    static func writes(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var buffers: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
        return buffers
    }

    /// The texts of the whole frames in `writes`.
    static func texts(_ writes: [ByteBuffer]) -> [String] {
        var bytes: [UInt8] = []
        for buffer in writes { bytes += buffer.readableBytesView }
        return ConnectionLayerTests.Client.takeFrames(from: &bytes).map(\.text)
    }

    @Test func aRoundOfFramesLeavesInOneWriteInOrder() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()  // the welcome
        let round = Self.frames(30)
        fixture.connection.deliverSync(round.map { .frame($0.buffer, committedAtMs: 1) })
        fixture.loop.run()
        let writes = try Self.writes(fixture.channel)
        #expect(writes.count == 1, "one write for the round, not one per frame: \(writes.count)")
        #expect(Self.texts(writes) == round.map(\.text))
        #expect(fixture.connection.outboundBytes() == 0)
    }

    /// The round's write is flushed by the round itself: no task per member per round on the loop (the
    /// embedded loop is not run here, so a scheduled flush would leave the bytes unflushed).
    @Test func aRoundIsFlushedWithoutATaskOnTheLoop() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        let round = Self.frames(5)
        fixture.connection.deliverSync(round.map { .frame($0.buffer, committedAtMs: 1) })
        #expect(Self.texts(try Self.writes(fixture.channel)) == round.map(\.text), "flushed before the loop runs")
        fixture.loop.run()
        #expect(try Self.writes(fixture.channel).isEmpty)
        // After the socket drains too.
        fixture.channel.isWritable = false
        fixture.connection.writabilityChanged(isWritable: false)
        let next = Self.frames(5, from: 5)
        fixture.connection.deliverSync(next.map { .frame($0.buffer, committedAtMs: 1) })
        #expect(try Self.writes(fixture.channel).isEmpty)
        fixture.channel.isWritable = true
        fixture.connection.writabilityChanged(isWritable: true)
        #expect(Self.texts(try Self.writes(fixture.channel)) == next.map(\.text))
    }

    @Test func aLoneFrameIsWrittenAsTheSharedBuffer() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        let frame = Self.frames(1)[0]
        fixture.connection.deliverSync([.frame(frame.buffer, committedAtMs: nil)])
        fixture.loop.run()
        let writes = try Self.writes(fixture.channel)
        #expect(writes == [frame.buffer])
    }

    @Test func aLongRunIsWrittenInBoundedPiecesInOrder() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        // 1,000 bytes each: more than three times `coalescedWriteBytes` in all.
        let count = 3 * ClientConnection.coalescedWriteBytes / 1_000 + 7
        let round = Self.frames(count, size: 1_000)
        fixture.connection.deliverSync(round.map { .frame($0.buffer, committedAtMs: nil) })
        fixture.loop.run()
        let writes = try Self.writes(fixture.channel)
        #expect(writes.count >= 4 && writes.count < count, "\(writes.count) writes")
        #expect(writes.allSatisfy { $0.readableBytes <= ClientConnection.coalescedWriteBytes })
        #expect(Self.texts(writes) == round.map(\.text))
    }

    /// An error in a round (written at once, not queued) goes out between the frames around it, and every
    /// frame of a commit counts once in the sync lag, though the lag is recorded once per run.
    @Test func anErrorInARoundStaysBetweenItsFramesAndEveryFrameCountsInTheLag() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        let lagBefore = fixture.metrics.syncLagSeconds.buckets.counts.last ?? 0
        let before = Self.frames(6)
        let after = Self.frames(4, from: 6)
        let items: [SyncOutbox.Item] =
            before.prefix(3).map { .frame($0.buffer, committedAtMs: 1) } + before.suffix(3).map { .frame($0.buffer, committedAtMs: 2) }
            + [.error(ProtocolError(.badMessage, "refused", doc: "d", pushID: .number("9")))]
            + after.map { .frame($0.buffer, committedAtMs: nil) }
        fixture.connection.deliverSync(items)
        fixture.loop.run()
        let texts = Self.texts(try Self.writes(fixture.channel))
        #expect(texts.count == 11)
        #expect(Array(texts.prefix(6)) == before.map(\.text))
        #expect(texts[6].contains(#""t":"error""#) && texts[6].contains(#""id":9"#), "\(texts[6])")
        #expect(Array(texts.suffix(4)) == after.map(\.text))
        #expect((fixture.metrics.syncLagSeconds.buckets.counts.last ?? 0) - lagBefore == 6, "one observation per commit frame")
    }

    /// While the socket takes no more, rounds wait in the connection (counted against the outbound limit)
    /// and leave in order once it drains — catch-ups between them included.
    @Test func roundsWaitWhileTheSocketIsFullAndLeaveInOrderWhenItDrains() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        fixture.channel.isWritable = false
        fixture.connection.writabilityChanged(isWritable: false)
        let first = Self.frames(20)
        let second = Self.frames(20, from: 20)
        fixture.connection.deliverSync(first.map { .frame($0.buffer, committedAtMs: 1) })
        let catchUp = LogChunker(doc: "d", entries: [], head: 7, moreAfter: false)
        fixture.connection.deliverSync([.chunks(catchUp, CatchUpInfo(doc: "d", isReply: true))])
        fixture.connection.deliverSync(second.map { .frame($0.buffer, committedAtMs: 1) })
        fixture.loop.run()
        #expect(try Self.writes(fixture.channel).isEmpty)
        let queued = (first + second).reduce(0) { $0 + $1.buffer.readableBytes }
        #expect(fixture.connection.outboundBytes() >= queued)

        fixture.channel.isWritable = true
        fixture.connection.writabilityChanged(isWritable: true)
        fixture.loop.run()
        let writes = try Self.writes(fixture.channel)
        let texts = Self.texts(writes)
        #expect(texts.count == 41)
        #expect(Array(texts.prefix(20)) == first.map(\.text))
        #expect(texts[20].contains(#""t":"log""#), "the catch-up between: \(texts[20])")
        #expect(Array(texts.suffix(20)) == second.map(\.text))
        #expect(writes.count == 3, "each run of frames in one write, the catch-up's chunk in its own: \(writes.count)")
        #expect(fixture.connection.outboundBytes() == 0)
    }

    /// A client that stops reading is still closed at `--max-outbound-bytes` (1013), wherever its frames wait.
    @Test func aClientThatDoesNotReadIsClosedAtTheOutboundLimit() throws {
        let fixture = try Fixture {
            $0.outboundHighWaterBytes = 4 * 1024
            $0.outboundLowWaterBytes = 1024
            $0.maxOutboundBytes = 64 * 1024
        }
        _ = try fixture.frames()
        fixture.channel.isWritable = false
        fixture.connection.writabilityChanged(isWritable: false)
        for round in 0..<100 where !fixture.connection.isClosing {
            fixture.connection.deliverSync(Self.frames(10, size: 100, from: 10 * round).map { .frame($0.buffer, committedAtMs: nil) })
        }
        #expect(fixture.connection.isClosing)
    }
}
