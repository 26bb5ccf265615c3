import NIOCore
import NIOWebSocket

/// One client frame as `InboundFrameDecoder` found it: the header's first byte, the masking key, and the
/// payload still masked, as a slice of the bytes read (no copy, no `WebSocketFrame`).
package struct InboundFrame {
    /// FIN, RSV1–3 and the opcode (RFC 6455 §5.2).
    package let firstByte: UInt8
    /// The masking key's four bytes as they lay in the frame (so, loaded as they lie in memory, a word
    /// to XOR with words of the payload loaded the same way: `FrameUnmasker`). Every client frame has one
    /// (the decoder refuses unmasked frames).
    package let maskBits: UInt32
    /// The payload as it came, masked with `maskBits`.
    package let payload: ByteBuffer

    /// The masking key as NIO holds it.
    package var maskKey: WebSocketMaskingKey { withUnsafeBytes(of: maskBits) { WebSocketMaskingKey($0)! } }

    package var fin: Bool { firstByte & 0x80 != 0 }
    /// The opcode's four bits.
    package var opcodeBits: UInt8 { firstByte & 0x0F }

    /// A whole (unfragmented) text message: FIN set and opcode 1 (the decoder refuses reserved bits).
    package var isWholeText: Bool { firstByte == 0x81 }

    /// The frame as NIO's decoder hands it on (for the paths that are not the hot one: fragments,
    /// control frames).
    package var webSocketFrame: WebSocketFrame {
        WebSocketFrame(
            fin: fin, rsv1: firstByte & 0x40 != 0, rsv2: firstByte & 0x20 != 0, rsv3: firstByte & 0x10 != 0,
            opcode: WebSocketOpcode(encodedWebSocketOpcode: opcodeBits)!, maskKey: maskKey, data: payload)
    }
}

/// Why `InboundFrameDecoder` refused a frame. The connection is failed (RFC 6455 §7.1.7): a close frame
/// with the code and text below, and the socket closed.
package enum InboundFrameError: Error, Equatable, CaseIterable {
    /// Longer than `maxFrameSize` (or a 64-bit length past `Int.max`): NIO's `.invalidFrameLength`.
    case tooLarge
    /// A control frame without FIN (§5.5): NIO's `.fragmentedControlFrame`.
    case fragmentedControlFrame
    /// A control frame over 125 bytes (§5.5): NIO's `.multiByteControlFrameLength`.
    case controlFrameTooLong
    /// RSV1, RSV2 or RSV3 set: no extension is ever negotiated, so none gives them a meaning (§5.2).
    case reservedBits
    /// Opcode 3–7 or 0xB–0xF (§5.2).
    case unknownOpcode
    /// A client frame without a masking key (§5.1: a server MUST close the connection).
    case unmasked

    /// The close code: 1009 for a frame over the size limit, 1002 (protocol error) for the rest.
    package var closeCode: WebSocketErrorCode { self == .tooLarge ? .messageTooLarge : .protocolError }

    /// The close frame's text (documented in docs/protocol.md).
    package var closeText: String {
        switch self {
        case .tooLarge: "frame over the size limit"
        case .fragmentedControlFrame: "fragmented control frame"
        case .controlFrameTooLong: "control frame over 125 bytes"
        case .reservedBits: "reserved bits set; no extension was negotiated"
        case .unknownOpcode: "unknown opcode"
        case .unmasked: "client frames must be masked"
        }
    }

    /// The same refusal as NIO's `WebSocketFrameDecoder` words it, for the rules NIO enforces too (nil for
    /// the three it does not: reserved bits, unknown opcodes, unmasked frames).
    package var nioError: NIOWebSocketError? {
        switch self {
        case .tooLarge: .invalidFrameLength
        case .fragmentedControlFrame: .fragmentedControlFrame
        case .controlFrameTooLong: .multiByteControlFrameLength
        case .reservedBits, .unknownOpcode, .unmasked: nil
        }
    }
}

extension InboundFrameError {
    /// The rules NIO's decoder leaves to the application, decided by a frame's first byte and its mask
    /// bit, in this order: reserved bits, an unknown opcode, no mask. `InboundFrameDecoder` applies them
    /// to the first two bytes of each frame; `/yjs`, which keeps NIO's decoder, to each frame NIO made
    /// (`FramingErrorRecorder`).
    package static func strictRefusal(firstByte: UInt8, masked: Bool) -> InboundFrameError? {
        if firstByte & 0x70 != 0 { return .reservedBits }
        // Known opcodes: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong.
        if (UInt16(1) << (firstByte & 0x0F)) & 0b0000_0111_0000_0111 == 0 { return .unknownOpcode }
        return masked ? nil : .unmasked
    }

    package static func strictRefusal(of frame: WebSocketFrame) -> InboundFrameError? {
        let rsv: UInt8 = (frame.rsv1 ? 0x40 : 0) | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0)
        return strictRefusal(firstByte: rsv | UInt8(webSocketOpcode: frame.opcode), masked: frame.maskKey != nil)
    }
}

/// The WebSocket frame decoder of `/v1/ws` (issue 14): frames parsed straight off the bytes read, in the
/// connection's own handler. It enforces NIO's `WebSocketFrameDecoder`'s rules (the decoder `/yjs` still
/// uses) at the same moment, and three more that RFC 6455 requires of a server and NIO leaves to the
/// application:
/// - a frame with a reserved bit set (§5.2: nothing was negotiated that defines one), with an unknown
///   opcode (§5.2), or without a mask (§5.1) is refused as soon as its first two bytes are in, before
///   anything else about it (1002);
/// - a frame longer than `maxFrameSize` is refused as soon as its header has arrived, before any payload
///   (1009);
/// - a control frame (opcode 8 and up) without FIN is refused, and one longer than 125 bytes (both 1002,
///   RFC 6455 §5.5).
/// (Text that is not UTF-8 — §8.1 — is the handler's check: it needs the unmasked payload, 1007.)
///
/// Through NIO, each read went through `ByteToMessageHandler` (its buffer, state and re-entrancy checks,
/// ~3,000 instructions per read), the decoder's incremental `WSParser` and its `WebSocketFrame` in an
/// `NIOAny` (~1,700 per frame), two pass-through handlers, and the dynamic cast that unwrapped the frame
/// again (~440): about 5,000 instructions per presence update in the callgrind profile. Here a frame is
/// one look at its header. `InboundFrameDecoderTests` and the `fuzz-ws-frames` harness check it against
/// NIO's decoder (and the three stricter rules against an independent reading of the headers), frame for
/// frame and error for error, for any bytes split at any points.
package struct InboundFrameDecoder {
    /// Payload bytes per frame at most (`--max-frame-bytes`).
    package let maxFrameSize: Int

    /// The start of a frame that had not arrived in full by the end of a read, until the rest does (at
    /// most a header and `maxFrameSize` bytes of payload: a longer frame is refused once its header is in).
    private var partial: ByteBuffer?

    package init(maxFrameSize: Int) {
        precondition(maxFrameSize <= UInt32.max, "invalid overlarge max frame size")  // as NIO's
        self.maxFrameSize = maxFrameSize
    }

    /// The bytes to decode after a read: `read` itself, or, after a read that ended inside a frame, what
    /// was kept of that frame followed by `read`.
    package mutating func joined(_ read: ByteBuffer) -> ByteBuffer {
        guard var earlier = partial.take() else { return read }
        var read = read
        earlier.writeBuffer(&read)
        return earlier
    }

    /// Keeps what is left of `bytes` once `nextFrame` found no more whole frames in them (the start of a
    /// frame), for `joined` to put in front of the next read.
    package mutating func keep(_ bytes: ByteBuffer) {
        partial = bytes.readableBytes > 0 ? bytes : nil
    }

    /// What the header at the start of some bytes says.
    package enum Header: Equatable {
        /// Not all of the frame has arrived yet (and what has is not refused).
        case incomplete
        /// The frame is refused (its header is enough to tell).
        case refused(InboundFrameError)
        /// A whole frame: its payload is `length` bytes from `payloadOffset`.
        case frame(firstByte: UInt8, maskBits: UInt32, payloadOffset: Int, length: Int)
    }

    /// The next whole frame at `buffer`'s reader index, which moves past it; nil, with `buffer` unchanged,
    /// while the frame has not arrived in full. Throws as soon as the bytes there are a refused header
    /// (the caller stops decoding: the connection is closed).
    package func nextFrame(in buffer: inout ByteBuffer) throws(InboundFrameError) -> InboundFrame? {
        let header = buffer.withUnsafeReadableBytes { Self.header(of: $0, maxFrameSize: maxFrameSize) }
        switch header {
        case .incomplete:
            return nil
        case .refused(let error):
            throw error
        case .frame(let firstByte, let key, let offset, let length):
            buffer.moveReaderIndex(forwardBy: offset)
            let payload = buffer.readSlice(length: length)!  // there: `header` checked
            return InboundFrame(firstByte: firstByte, maskBits: key, payload: payload)
        }
    }

    /// Reads the header at the start of `bytes` (RFC 6455 §5.2). First the rules the first two bytes
    /// decide (reserved bits, opcode, mask: in that order); then NIO's, in the order NIO's decoder checks
    /// them and at the same moment: once the payload length is known (the 7-bit length, or the 16- or
    /// 64-bit one after it), whatever has or has not arrived of the masking key and the payload.
    package static func header(of bytes: UnsafeRawBufferPointer, maxFrameSize: Int) -> Header {
        let available = bytes.count
        guard available >= 2 else { return .incomplete }
        let firstByte = bytes[0]
        let second = bytes[1]
        if let refusal = InboundFrameError.strictRefusal(firstByte: firstByte, masked: second & 0x80 != 0) { return .refused(refusal) }
        var length: Int
        var offset: Int
        switch second & 0x7F {
        case 126:
            guard available >= 4 else { return .incomplete }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            offset = 4
        case 127:
            guard available >= 10 else { return .incomplete }
            let word = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            guard word <= UInt64(Int.max) else { return .refused(.tooLarge) }
            length = Int(word)
            offset = 10
        case let short:
            length = Int(short)
            offset = 2
        }
        if length > maxFrameSize { return .refused(.tooLarge) }
        if firstByte & 0x08 != 0 {
            if firstByte & 0x80 == 0 { return .refused(.fragmentedControlFrame) }
            if length > 125 { return .refused(.controlFrameTooLong) }
        }
        guard available >= offset + 4 else { return .incomplete }
        let key = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        offset += 4
        guard available - offset >= length else { return .incomplete }
        return .frame(firstByte: firstByte, maskBits: key, payloadOffset: offset, length: length)
    }
}
