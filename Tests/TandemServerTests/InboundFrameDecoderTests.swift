import NIOCore
import NIOEmbedded
import NIOWebSocket
import TandemFraming
@testable import TandemServer
import Testing

/// `InboundFrameDecoder` (issue 14: `/v1/ws` parses frames in its connection's handler instead of through
/// NIO's `ByteToMessageHandler(WebSocketFrameDecoder)`) keeps NIO's decoder's rules and adds the three RFC
/// 6455 requires of a server (reserved bits, unknown opcodes, unmasked frames), pinned one by one; for any
/// bytes split at any points it gives NIO's frames and NIO's error, except that the first frame breaking
/// one of the three is refused (checked against NIO's decoder itself and an independent reading of the
/// frame headers on seeded random streams; `Fuzz/Sources/fuzz-ws-frames` does the same with libFuzzer).
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
    static func decode(_ chunks: [[UInt8]], maxFrameSize: Int = maxFrameSize) -> (frames: [WebSocketFrame], error: InboundFrameError?) {
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

    /// What `InboundFrameDecoder` must make of `stream` as a whole: NIO's frames and error (`nio`), cut at
    /// the first frame whose first two bytes break one of the rules NIO does not enforce — reserved bits,
    /// then an unknown opcode, then a missing mask — which is refused instead, even while the rest of it
    /// has not arrived (headers read here one after another from the stream, independently of the decoder).
    static func expected(
        stream: [UInt8], nio: (frames: [WebSocketFrame], error: NIOWebSocketError?)
    ) -> (frames: [WebSocketFrame], error: InboundFrameError?) {
        func strictRefusal(at offset: Int) -> InboundFrameError? {
            guard offset + 2 <= stream.count else { return nil }
            let first = stream[offset]
            if first & 0x70 != 0 { return .reservedBits }
            if ![0, 1, 2, 8, 9, 10].contains(first & 0x0F) { return .unknownOpcode }
            if stream[offset + 1] & 0x80 == 0 { return .unmasked }
            return nil
        }
        var offset = 0
        for (index, frame) in nio.frames.enumerated() {
            if let refusal = strictRefusal(at: offset) { return (Array(nio.frames[..<index]), refusal) }
            let lengthForm = stream[offset + 1] & 0x7F
            offset += 2 + (lengthForm == 126 ? 2 : lengthForm == 127 ? 8 : 0) + (frame.maskKey == nil ? 0 : 4) + frame.length
        }
        if let refusal = strictRefusal(at: offset) { return (nio.frames, refusal) }
        let error = nio.error.map { error -> InboundFrameError in
            InboundFrameError.allCases.first { $0.nioError == error }!
        }
        return (nio.frames, error)
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
        #expect(Self.decode([header]).error == .tooLarge)
        // One byte over the limit, 16-bit form; the limit itself passes.
        #expect(Self.decode([[0x82, 0x80 | 126, 0x01, 0x01]], maxFrameSize: 256).error == .tooLarge)
        #expect(Self.decode([Self.frame(firstByte: 0x82, payload: .init(repeating: 7, count: 256))], maxFrameSize: 256).frames.count == 1)
        // A 64-bit length with its top bit set is no length at all.
        #expect(Self.decode([[0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0]]).error == .tooLarge)
    }

    @Test func controlFramesAreUnfragmentedAndAtMost125Bytes() {
        // A ping without FIN: refused with its first two bytes.
        #expect(Self.decode([[0x09, 0x80]]).error == .fragmentedControlFrame)
        // 126 bytes, even announced in the 16-bit form.
        #expect(Self.decode([Self.frame(firstByte: 0x89, payload: .init(repeating: 1, count: 126))]).error == .controlFrameTooLong)
        // 125 bytes in the 64-bit form (not minimal, and allowed as NIO allows it).
        let ping = Self.decode([Self.frame(firstByte: 0x89, payload: .init(repeating: 1, count: 125), lengthForm: 64)])
        #expect(ping.error == nil && ping.frames.first?.opcode == .ping && ping.frames.first?.length == 125)
    }

    /// RFC 6455 §5.1–5.2, which NIO's decoder leaves to the application: reserved bits (no extension is
    /// ever negotiated), opcodes 3–7 and 0xB–0xF, and client frames without a mask are refused with the
    /// frame's first two bytes, before its length, key or payload, and before NIO's own rules.
    @Test func reservedBitsUnknownOpcodesAndUnmaskedFramesAreRefusedWithTheirFirstTwoBytes() {
        for rsv: UInt8 in [0x40, 0x20, 0x10, 0x70] {
            #expect(Self.decode([[0x81 | rsv, 0x80]]).error == .reservedBits, "RSV \(rsv)")
            #expect(Self.decode([[0x09 | rsv, 0x80]]).error == .reservedBits, "before a fragmented control frame")
        }
        for opcode: UInt8 in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            #expect(Self.decode([[0x80 | opcode, 0x80]]).error == .unknownOpcode, "opcode \(opcode)")
            #expect(Self.decode([[opcode, 0x80 | 126]]).error == .unknownOpcode, "whatever follows")
        }
        for firstByte: UInt8 in [0x81, 0x82, 0x01, 0x80, 0x88, 0x89, 0x8A] {
            #expect(Self.decode([[firstByte, 0x05]]).error == .unmasked, "first byte \(firstByte)")
        }
        // An unmasked frame over the size limit is refused for the mask (decided first).
        #expect(Self.decode([[0x81, 127, 0, 0, 1, 0, 0, 0, 0, 0]]).error == .unmasked)
        // The frames before the refused one are handed on.
        let result = Self.decode([Self.frame(firstByte: 0x81, payload: [104, 105]) + [0xC1, 0x82]])
        #expect(result.frames.count == 1 && result.error == .reservedBits)
        // Close codes and texts: 1002 for all three, as for NIO's own rules; 1009 only for the size limit.
        #expect(InboundFrameError.allCases.filter { $0.closeCode == .messageTooLarge } == [.tooLarge])
        #expect(Set(InboundFrameError.allCases.map(\.closeText)).count == InboundFrameError.allCases.count)
    }

    @Test func emptyFramesAndManyFramesInOneRead() {
        let frames = [
            Self.frame(firstByte: 0x81, payload: []), Self.frame(firstByte: 0x8A, payload: []),
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

    /// The same frames and the same error as NIO's decoder (`expected`: cut at the first frame breaking a
    /// rule NIO does not enforce), for seeded random streams of valid and invalid frames and junk, read in
    /// random pieces.
    @Test func framesAndErrorsAreNIOsForRandomStreamsReadInRandomPieces() throws {
        var random = SplitMix64(seed: 14)
        // A small limit, so that frames over it are cheap to make (the 16-bit length form covers it).
        let limit = 300
        var errors = 0
        var strictRefusals = 0
        for round in 0..<1_500 {
            var stream: [UInt8] = []
            for _ in 0..<random.int(1...6) {
                switch random.int(0...9) {
                case 0:
                    stream += random.bytes(random.int(1...12))  // junk
                case 1:
                    // Lengths at and around the limits, announced without the payload.
                    let length = random.pick([125, 126, 127, UInt64(limit), UInt64(limit) + 1, 70_000, 1 << 40, UInt64.max])
                    let key: [UInt8]? = random.int(0...7) == 0 ? nil : random.bytes(4)
                    stream += Self.frame(firstByte: Self.firstByte(&random), payload: [], key: key, length: length).prefix(18)
                default:
                    let control = random.int(0...3) == 0
                    var firstByte = Self.firstByte(&random)
                    if random.int(0...9) > 0 { firstByte = firstByte & 0xF0 | random.pick(control ? [8, 9, 10] : [0, 1, 2]) }
                    let length = control ? random.pick([0, 1, 125, 126, 130]) : random.pick([0, 1, 7, 8, 9, 125, 126, 200, limit, limit + 1])
                    let form = random.int(0...3) == 0 ? random.pick([7, 16, 64]) : nil
                    let key: [UInt8]? = random.int(0...15) == 0 ? nil : random.bytes(4)
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
            let expected = Self.expected(stream: stream, nio: try Self.decodeWithNIO(chunks, maxFrameSize: limit))
            #expect(ours.error == expected.error, "round \(round)")
            #expect(ours.frames == expected.frames, "round \(round): \(ours.frames.count) frames against \(expected.frames.count)")
            if expected.error != nil { errors += 1 }
            if expected.error?.nioError == nil, expected.error != nil { strictRefusals += 1 }
        }
        // Every outcome was exercised: frames only, NIO's errors, the stricter refusals.
        #expect(errors > 50 && errors < 1_450)
        #expect(strictRefusals > 50 && strictRefusals < errors - 50)
    }

    /// A first byte for the random streams: any opcode, FIN four times in five, a reserved bit one time
    /// in ten.
    static func firstByte(_ random: inout SplitMix64) -> UInt8 {
        var byte = UInt8(truncatingIfNeeded: random.next()) & 0x0F
        if random.int(0...4) > 0 { byte |= 0x80 }
        if random.int(0...9) == 0 { byte |= UInt8(random.int(1...7)) << 4 }
        return byte
    }
}

extension SplitMix64 {
    fileprivate mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    fileprivate mutating func pick<T>(_ options: [T]) -> T { options[int(0...(options.count - 1))] }
    fileprivate mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
