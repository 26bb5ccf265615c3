import NIOCore
import NIOEmbedded
import NIOWebSocket
@testable import TandemServer
import Testing

/// `InboundFrameDecoder` (issue 14: `/v1/ws` parses frames in its connection's handler instead of through
/// NIO's `ByteToMessageHandler(WebSocketFrameDecoder)`) keeps NIO's decoder's rules, pinned one by one,
/// and gives the same frames and the same error as NIO's decoder for any bytes split at any points
/// (checked against NIO's decoder itself on seeded random streams; `Fuzz/Sources/fuzz-ws-frames` does the
/// same with libFuzzer).
@Suite struct InboundFrameDecoderTests {
    static let maxFrameSize = 1 << 16

    /// A frame's bytes, every field chosen (`length` overrides the payload's own length in the header;
    /// `lengthForm` 7, 16 or 64 picks the encoding of the length, minimal or not).
    static func frame(
        firstByte: UInt8, payload: [UInt8], key: [UInt8]? = [0x37, 0xFA, 0x21, 0x3D], length: UInt64? = nil, lengthForm: Int? = nil
    ) -> [UInt8] {
        let declared = length ?? UInt64(payload.count)
        let form = lengthForm ?? (declared < 126 ? 7 : declared <= 0xFFFF ? 16 : 64)
        let maskBit: UInt8 = key == nil ? 0 : 0x80
        var out = [firstByte]
        switch form {
        case 7: out.append(maskBit | UInt8(declared))
        case 16: out += [maskBit | 126, UInt8(declared >> 8 & 0xFF), UInt8(declared & 0xFF)]
        default: out.append(maskBit | 127); for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(declared >> UInt64(shift) & 0xFF)) }
        }
        if let key {
            out += key
            out += payload.enumerated().map { $0.element ^ key[$0.offset & 3] }
        } else {
            out += payload
        }
        return out
    }

    /// What the decoder makes of `chunks` read one after another, as `ConnectionHandler` feeds it: the
    /// frames (as NIO would hand them on) and the error, if any.
    static func decode(_ chunks: [[UInt8]], maxFrameSize: Int = maxFrameSize) -> (frames: [WebSocketFrame], error: NIOWebSocketError?) {
        var decoder = InboundFrameDecoder(maxFrameSize: maxFrameSize)
        var frames: [WebSocketFrame] = []
        for chunk in chunks {
            var bytes = decoder.joined(ByteBuffer(bytes: chunk))
            do {
                while let frame = try decoder.nextFrame(in: &bytes) { frames.append(frame.webSocketFrame) }
            } catch {
                return (frames, error)
            }
            decoder.keep(bytes)
        }
        return (frames, nil)
    }

    /// What NIO's decoder makes of the same reads (in the pipeline NIO's upgrader builds, on an embedded
    /// channel).
    static func decodeWithNIO(_ chunks: [[UInt8]], maxFrameSize: Int = maxFrameSize) throws -> (frames: [WebSocketFrame], error: NIOWebSocketError?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
        defer { _ = try? channel.finish() }
        var frames: [WebSocketFrame] = []
        var failure: NIOWebSocketError?
        for chunk in chunks {
            do {
                try channel.writeInbound(ByteBuffer(bytes: chunk))
            } catch let error as NIOWebSocketError {
                failure = error
            }
            while let frame = try channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
            if failure != nil { break }
        }
        return (frames, failure)
    }

    @Test func aWholeMaskedTextFrameIsItsPayloadStillMaskedAndItsKey() throws {
        let text = Array(#"{"t":"presence","doc":"d1","state":{"x":1}}"#.utf8)
        var bytes = ByteBuffer(bytes: Self.frame(firstByte: 0x81, payload: text) + [0x89, 0x80])  // and a ping's first bytes
        let decoder = InboundFrameDecoder(maxFrameSize: 1024)
        let frame = try #require(try decoder.nextFrame(in: &bytes))
        #expect(frame.isWholeText && frame.fin && frame.opcodeBits == 1)
        #expect(frame.maskKey == WebSocketMaskingKey([0x37, 0xFA, 0x21, 0x3D]))
        #expect(frame.webSocketFrame.unmaskedData == ByteBuffer(bytes: text))
        var unmasker = FrameUnmasker()
        #expect(unmasker.payload(masked: frame.payload, maskBits: frame.maskBits, allocator: ByteBufferAllocator()) == ByteBuffer(bytes: text))
        #expect(bytes.readableBytes == 2, "the reader index is past the frame")
        #expect(try decoder.nextFrame(in: &bytes) == nil, "an incomplete frame is not taken")
        #expect(bytes.readableBytes == 2, "and its bytes are left where they are")
    }

    @Test func aFrameSplitAtAnyByteComesOutOnceWhole() throws {
        for form in [7, 16, 64] {
            let frame = Self.frame(firstByte: 0x81, payload: Array("hello, split world".utf8), lengthForm: form)
            for split in 1..<frame.count {
                let result = Self.decode([Array(frame[..<split]), Array(frame[split...])])
                #expect(result.error == nil)
                #expect(result.frames.map { String(buffer: $0.unmaskedData) } == ["hello, split world"], "form \(form), split at \(split)")
            }
            // And a byte at a time.
            #expect(Self.decode(frame.map { [$0] }).frames.count == 1)
        }
    }

    @Test func aFrameOverTheLimitIsRefusedAsSoonAsItsLengthIsIn() {
        // 2^40 bytes announced: refused with the 10 header bytes, before any masking key or payload.
        let header: [UInt8] = [0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0]
        #expect(Self.decode([Array(header[..<9])]).error == nil, "not before the length is complete")
        #expect(Self.decode([header]).error == .invalidFrameLength)
        // One byte over the limit, 16-bit form; the limit itself passes.
        #expect(Self.decode([[0x82, 0x80 | 126, 0x01, 0x01]], maxFrameSize: 256).error == .invalidFrameLength)
        #expect(Self.decode([Self.frame(firstByte: 0x82, payload: .init(repeating: 7, count: 256))], maxFrameSize: 256).frames.count == 1)
        // A 64-bit length with its top bit set is no length at all.
        #expect(Self.decode([[0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]]).error == .invalidFrameLength)
    }

    @Test func controlFramesAreUnfragmentedAndAtMost125Bytes() {
        // A ping without FIN: refused with its first two bytes.
        #expect(Self.decode([[0x09, 0x80]]).error == .fragmentedControlFrame)
        // 126 bytes, even announced in the 16-bit form.
        #expect(Self.decode([Self.frame(firstByte: 0x89, payload: .init(repeating: 1, count: 126))]).error == .multiByteControlFrameLength)
        // 125 bytes in the 64-bit form (not minimal, and allowed as NIO allows it).
        let ping = Self.decode([Self.frame(firstByte: 0x89, payload: .init(repeating: 1, count: 125), lengthForm: 64)])
        #expect(ping.error == nil && ping.frames.first?.opcode == .ping && ping.frames.first?.length == 125)
        // Reserved control opcodes (0xB–0xF) are control frames too.
        #expect(Self.decode([[0x0B, 0x00]]).error == .fragmentedControlFrame)
    }

    @Test func reservedBitsUnknownOpcodesAndUnmaskedFramesPassAsNIOPassesThem() throws {
        let rsv = try #require(Self.decode([Self.frame(firstByte: 0xF1, payload: [65])]).frames.first)
        #expect(rsv.rsv1 && rsv.rsv2 && rsv.rsv3 && rsv.opcode == .text)
        #expect(InboundFrame(firstByte: 0xF1, maskBits: nil, payload: ByteBuffer()).isWholeText, "RSV bits do not matter")
        let unknown = try #require(Self.decode([Self.frame(firstByte: 0x83, payload: [1, 2])]).frames.first)
        #expect(unknown.opcode == WebSocketOpcode(encodedWebSocketOpcode: 3))
        let unmasked = try #require(Self.decode([Self.frame(firstByte: 0x81, payload: [104, 105], key: nil)]).frames.first)
        #expect(unmasked.maskKey == nil && String(buffer: unmasked.data) == "hi")
        var bytes = ByteBuffer(bytes: Self.frame(firstByte: 0x81, payload: [104, 105], key: nil))
        let frame = try #require(try InboundFrameDecoder(maxFrameSize: 10).nextFrame(in: &bytes))
        var unmasker = FrameUnmasker()
        #expect(String(buffer: unmasker.payload(masked: frame.payload, maskBits: frame.maskBits, allocator: ByteBufferAllocator())) == "hi")
    }

    @Test func emptyFramesAndManyFramesInOneRead() {
        let frames = [
            Self.frame(firstByte: 0x81, payload: []), Self.frame(firstByte: 0x8A, payload: [], key: nil),
            Self.frame(firstByte: 0x01, payload: [1]), Self.frame(firstByte: 0x80, payload: [2]),
        ]
        let result = Self.decode([frames.flatMap { $0 }])
        #expect(result.error == nil)
        #expect(result.frames.map(\.opcode) == [.text, .pong, .text, .continuation])
        #expect(result.frames.map(\.fin) == [true, true, false, true])
    }

    @Test func unmaskingIsNIOsForEveryLengthAndKey() {
        let allocator = ByteBufferAllocator()
        var unmasker = FrameUnmasker()
        for length in 0...80 {
            let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            for key in [[0, 0, 0, 0], [1, 2, 3, 4], [0xFF, 0x00, 0xA5, 0x5A]] as [[UInt8]] {
                var bytes = ByteBuffer(bytes: Self.frame(firstByte: 0x81, payload: payload, key: key))
                guard let frame = try? InboundFrameDecoder(maxFrameSize: 1024).nextFrame(in: &bytes) else {
                    Issue.record("no frame at length \(length)")
                    continue
                }
                let unmasked = unmasker.payload(masked: frame.payload, maskBits: frame.maskBits, allocator: allocator)
                #expect(unmasked == frame.webSocketFrame.unmaskedData, "length \(length), key \(key)")
                #expect(unmasked == ByteBuffer(bytes: payload))
                unmasker.recycle(unmasked)
            }
        }
    }

    /// The same frames and the same error as NIO's decoder, for seeded random streams of valid and invalid
    /// frames and junk, read in random pieces.
    @Test func framesAndErrorsAreNIOsForRandomStreamsReadInRandomPieces() throws {
        var random = SplitMix64(seed: 14)
        // A small limit, so that frames over it are cheap to make (the 16-bit length form covers it).
        let limit = 300
        var errors = 0
        for round in 0..<1_500 {
            var stream: [UInt8] = []
            for _ in 0..<random.int(1...6) {
                switch random.int(0...9) {
                case 0:
                    stream += random.bytes(random.int(1...12))  // junk
                case 1:
                    // Lengths at and around the limits, announced without the payload.
                    let length = random.pick([125, 126, 127, UInt64(limit), UInt64(limit) + 1, 70_000, 1 << 40, UInt64.max])
                    stream += Self.frame(firstByte: UInt8(truncatingIfNeeded: random.next()), payload: [], key: nil, length: length).prefix(14)
                default:
                    let control = random.int(0...3) == 0
                    var firstByte = UInt8(truncatingIfNeeded: random.next()) & 0x7F
                    firstByte = control ? (firstByte | 0x08) : (firstByte & 0xF7)
                    if random.int(0...4) > 0 { firstByte |= 0x80 }
                    let length = control ? random.pick([0, 1, 125, 126, 130]) : random.pick([0, 1, 7, 8, 9, 125, 126, 200, limit, limit + 1])
                    let form = random.int(0...3) == 0 ? random.pick([7, 16, 64]) : nil
                    let key: [UInt8]? = random.int(0...5) == 0 ? nil : random.bytes(4)
                    if form == 7 && length > 125 { continue }
                    if form == 16 && length > 0xFFFF { continue }
                    stream += Self.frame(firstByte: firstByte, payload: random.bytes(length), key: key, lengthForm: form)
                }
            }
            var chunks: [[UInt8]] = []
            var rest = stream[...]
            while !rest.isEmpty {
                let size = random.int(0...3) == 0 ? 1 : random.int(1...max(1, rest.count))
                chunks.append(Array(rest.prefix(size)))
                rest = rest.dropFirst(size)
            }
            let ours = Self.decode(chunks, maxFrameSize: limit)
            let nio = try Self.decodeWithNIO(chunks, maxFrameSize: limit)
            #expect(ours.error == nio.error, "round \(round)")
            #expect(ours.frames == nio.frames, "round \(round): \(ours.frames.count) frames against NIO's \(nio.frames.count)")
            if nio.error != nil { errors += 1 }
        }
        // Both outcomes were exercised.
        #expect(errors > 50 && errors < 1_450)
    }
}

extension SplitMix64 {
    fileprivate mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    fileprivate mutating func pick<T>(_ options: [T]) -> T { options[int(0...(options.count - 1))] }
    fileprivate mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
