import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import TandemClient

/// The read path's shortcut for plain text frames (`ServerTextFrameReader`) must leave what a client sees
/// exactly as NIO's decoder, error handler and aggregator give it: the same messages in the same order,
/// pings answered, fragments joined, errors and close codes theirs.
@Suite("ServerTextFrameReader: the plain-text-frame read path")
struct ServerTextFrameReaderTests {
    /// The client's inbound pipeline after the upgrade, on an `EmbeddedChannel`, and what it delivered.
    final class Pipeline {
        let channel = EmbeddedChannel()
        let texts = NIOLockedValueBox<[String]>([])
        let shared = NIOLockedValueBox(ConnectionState())

        init(maxFrameSize: Int = 1 << 20) throws {
            // Connected first: the handler treats a channel that is not active when it is added as ended.
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
            let texts = self.texts
            let handler = WebSocketClientHandler(
                configuration: .init(maxFrameSize: maxFrameSize),
                callbacks: .init(onText: { buffer in texts.withLockedValue { $0.append(String(buffer: buffer)) } }),
                continuation: nil, shared: shared)
            let decoder = ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize))
            try channel.pipeline.syncOperations.addHandlers(
                WebSocketFrameEncoder(), decoder, WebSocketProtocolErrorHandler(isServer: false),
                NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: maxFrameSize, maxAccumulatedFrameSize: maxFrameSize),
                handler)
            try channel.pipeline.syncOperations.addHandler(
                ServerTextFrameReader(maxFrameSize: maxFrameSize, handler: handler), position: .before(decoder))
        }

        /// Feeds `bytes` in reads of 1, 2, … `maxChunk` bytes, cyclically: frames split anywhere.
        func feed(_ bytes: [UInt8], maxChunk: Int) throws {
            var at = 0
            var size = 1
            while at < bytes.count {
                let end = min(bytes.count, at + size)
                try channel.writeInbound(ByteBuffer(bytes: bytes[at..<end]))
                channel.pipeline.fireChannelReadComplete()
                at = end
                size = size % maxChunk + 1
            }
        }

        var statistics: WebSocketClient.Statistics { shared.withLockedValue { $0.statistics } }
    }

    /// A server frame: unmasked, `fin` and `opcode` as given.
    static func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv1: Bool = false) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode]
        if payload.count < 126 {
            out.append(UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(127)
            out += (0..<8).reversed().map { UInt8((payload.count >> (8 * $0)) & 0xFF) }
        }
        return out + payload
    }

    static func text(_ s: String, fin: Bool = true) -> [UInt8] { frame(0x1, Array(s.utf8), fin: fin) }

    @Test(arguments: [1, 3, 7, 300, 100_000])
    func textsPingsAndFragmentsArriveInOrderHoweverTheBytesAreSplit(maxChunk: Int) throws {
        let p = try Pipeline()
        let long = String(repeating: "x", count: 300)  // a 16-bit length
        let longer = String(repeating: "y", count: 70_000)  // a 64-bit length
        var bytes = Self.text(#"{"t":"patch","clock":1}"#) + Self.frame(0x9, Array("ping".utf8)) + Self.text(long)
        bytes += Self.frame(0xA, []) + Self.text(longer) + Self.text("")
        // A fragmented message: from its first fragment on, the decoder and the aggregator read everything.
        bytes += Self.text("frag", fin: false) + Self.frame(0x0, Array("mented".utf8)) + Self.text("after")
        try p.feed(bytes, maxChunk: maxChunk)
        #expect(p.texts.withLockedValue { $0 } == [#"{"t":"patch","clock":1}"#, long, longer, "", "fragmented", "after"])
        #expect(p.statistics.messagesReceived == 6)
        #expect(p.statistics.pingsReceived == 1)
        #expect(p.statistics.pongsReceived == 1)
        #expect(p.channel.isActive)
        _ = try? p.channel.finish()
    }

    @Test func aFrameOverMaxFrameSizeStillFailsTheConnection() throws {
        let p = try Pipeline(maxFrameSize: 64)
        // The plain frame before it is delivered; the oversized one is the decoder's, which refuses it: the
        // client answers 1009 and closes.
        let bytes = Self.text("fits") + Self.text(String(repeating: "z", count: 65)) + Self.text("never")
        try? p.feed(bytes, maxChunk: 100_000)
        #expect(p.texts.withLockedValue { $0 } == ["fits"])
        #expect(!p.channel.isActive)
        _ = try? p.channel.finish()
    }

    /// Found by `fuzz-client-frames`: with a limit under 125 bytes, a control frame over the limit failed the
    /// connection only once all of it had arrived (the reader held it as incomplete), where the decoder
    /// fails it at its header.
    @Test func aControlFrameOverMaxFrameSizeFailsTheConnectionAtItsHeader() throws {
        let p = try Pipeline(maxFrameSize: 8)
        let ping = Self.frame(0x9, [UInt8](repeating: 7, count: 20))
        try? p.feed(Self.text("fits") + ping.prefix(4), maxChunk: 100_000)
        #expect(p.texts.withLockedValue { $0 } == ["fits"])
        #expect(!p.channel.isActive)
        _ = try? p.channel.finish()
    }

    @Test func reservedBitsStillFailTheConnection() throws {
        let p = try Pipeline()
        try? p.feed(Self.text("one") + Self.frame(0x1, Array("rsv".utf8), rsv1: true) + Self.text("two"), maxChunk: 5)
        #expect(p.texts.withLockedValue { $0 } == ["one"])
        #expect(!p.channel.isActive)
        _ = try? p.channel.finish()
    }

    @Test func theFrontOfTheBufferIsClassifiedByItsHeader() {
        func front(_ bytes: [UInt8], max: Int = 1 << 20) -> ServerTextFrameReader.Front {
            ServerTextFrameReader.next(in: ByteBuffer(bytes: bytes), maxFrameSize: max)
        }
        #expect(front(Self.text("abc")) == .text(header: 2, length: 3))
        #expect(front(Array(Self.text("abc").dropLast())) == .incomplete)
        #expect(front([0x81]) == .incomplete)
        #expect(front([0x81, 126, 0x01]) == .incomplete)
        #expect(front(Self.frame(0x9, [1, 2])) == .control(total: 4))
        #expect(front(Self.text("abc", fin: false)) == .other)  // a first fragment
        #expect(front(Self.frame(0x0, [1])) == .other)  // a continuation
        #expect(front(Self.frame(0x2, [1])) == .other)  // binary
        #expect(front(Self.frame(0x3, [1])) == .other)  // reserved opcode
        #expect(front(Self.frame(0x1, [1], rsv1: true)) == .other)
        #expect(front([0x81, 0x83, 1, 2, 3, 4, 5, 6, 7]) == .other)  // masked
        #expect(front(Self.frame(0x9, [UInt8](repeating: 0, count: 126))) == .other)  // control over 125
        #expect(front(Self.text("abcd"), max: 3) == .other)
        #expect(front(Array(Self.frame(0x9, [1, 2, 3, 4]).prefix(3)), max: 3) == .other)  // control over the limit
        #expect(front([0x81, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) == .other)
    }
}
