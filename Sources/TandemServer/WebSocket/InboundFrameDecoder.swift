import NIOCore
import NIOWebSocket

/// One client frame as `InboundFrameDecoder` found it: the header's first byte, the masking key, and the
/// payload still masked, as a slice of the bytes read (no copy, no `WebSocketFrame`).
struct InboundFrame {
    /// FIN, RSV1–3 and the opcode (RFC 6455 §5.2).
    let firstByte: UInt8
    /// The masking key's four bytes as they lay in the frame (so, loaded as they lie in memory, a word
    /// to XOR with words of the payload loaded the same way: `FrameUnmasker`); nil for an unmasked frame.
    let maskBits: UInt32?
    /// The payload as it came, masked if `maskBits` is set.
    let payload: ByteBuffer

    /// The masking key as NIO holds it.
    var maskKey: WebSocketMaskingKey? {
        maskBits.map { bits in withUnsafeBytes(of: bits) { WebSocketMaskingKey($0)! } }
    }

    var fin: Bool { firstByte & 0x80 != 0 }
    /// The opcode's four bits.
    var opcodeBits: UInt8 { firstByte & 0x0F }

    /// A whole (unfragmented) text message: FIN set and opcode 1, whatever the reserved bits say (NIO's
    /// decoder does not look at them either: no extension is ever negotiated).
    var isWholeText: Bool { firstByte & 0x8F == 0x81 }

    /// The frame as NIO's decoder hands it on (for the paths that are not the hot one: fragments,
    /// control frames).
    var webSocketFrame: WebSocketFrame {
        WebSocketFrame(
            fin: fin, rsv1: firstByte & 0x40 != 0, rsv2: firstByte & 0x20 != 0, rsv3: firstByte & 0x10 != 0,
            opcode: WebSocketOpcode(encodedWebSocketOpcode: opcodeBits)!, maskKey: maskKey, data: payload)
    }
}

/// The WebSocket frame decoder of `/v1/ws` (issue 14): frames parsed straight off the bytes read, in the
/// connection's own handler, with the rules and errors of NIO's `WebSocketFrameDecoder` (the one `/yjs`
/// still uses), and nothing more:
/// - a frame longer than `maxFrameSize` is refused with `NIOWebSocketError.invalidFrameLength` (answered
///   with 1009) as soon as its header has arrived, before any payload;
/// - a control frame (opcode 8 and up) without FIN is refused with `.fragmentedControlFrame`, one longer
///   than 125 bytes with `.multiByteControlFrameLength` (both answered with 1002, RFC 6455 §5.5);
/// - the reserved bits, unknown opcodes and unmasked frames pass, as NIO passes them (what the connection
///   does with them is its business; tightening them is a protocol change of its own).
///
/// Through NIO, each read went through `ByteToMessageHandler` (its buffer, state and re-entrancy checks,
/// ~3,000 instructions per read), the decoder's incremental `WSParser` and its `WebSocketFrame` in an
/// `NIOAny` (~1,700 per frame), two pass-through handlers, and the dynamic cast that unwrapped the frame
/// again (~440): about 5,000 instructions per presence update in the callgrind profile. Here a frame is
/// one look at its header. `InboundFrameDecoderTests` and the `fuzz-ws-frames` harness check it against
/// NIO's decoder, frame for frame and error for error, for any bytes split at any points.
struct InboundFrameDecoder {
    /// Payload bytes per frame at most (`--max-frame-bytes`).
    let maxFrameSize: Int

    /// The start of a frame that had not arrived in full by the end of a read, until the rest does (at
    /// most a header and `maxFrameSize` bytes of payload: a longer frame is refused once its header is in).
    private var partial: ByteBuffer?

    init(maxFrameSize: Int) {
        precondition(maxFrameSize <= UInt32.max, "invalid overlarge max frame size")  // as NIO's
        self.maxFrameSize = maxFrameSize
    }

    /// The bytes to decode after a read: `read` itself, or, after a read that ended inside a frame, what
    /// was kept of that frame followed by `read`.
    mutating func joined(_ read: ByteBuffer) -> ByteBuffer {
        guard var earlier = partial.take() else { return read }
        var read = read
        earlier.writeBuffer(&read)
        return earlier
    }

    /// Keeps what is left of `bytes` once `nextFrame` found no more whole frames in them (the start of a
    /// frame), for `joined` to put in front of the next read.
    mutating func keep(_ bytes: ByteBuffer) {
        partial = bytes.readableBytes > 0 ? bytes : nil
    }

    /// What the header at the start of some bytes says.
    enum Header: Equatable {
        /// Not all of the frame has arrived yet (and what has is not refused).
        case incomplete
        /// The frame is refused (its header is enough to tell).
        case refused(NIOWebSocketError)
        /// A whole frame: its payload is `length` bytes from `payloadOffset`.
        case frame(firstByte: UInt8, maskBits: UInt32?, payloadOffset: Int, length: Int)
    }

    /// The next whole frame at `buffer`'s reader index, which moves past it; nil, with `buffer` unchanged,
    /// while the frame has not arrived in full. Throws as soon as the bytes there are a refused header
    /// (the caller stops decoding: the connection is closed).
    func nextFrame(in buffer: inout ByteBuffer) throws(NIOWebSocketError) -> InboundFrame? {
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

    /// Reads the header at the start of `bytes` (RFC 6455 §5.2). Checks in the order NIO's decoder does,
    /// at the same moment: once the payload length is known (the 7-bit length, or the 16- or 64-bit one
    /// after it), whatever has or has not arrived of the masking key and the payload.
    static func header(of bytes: UnsafeRawBufferPointer, maxFrameSize: Int) -> Header {
        let available = bytes.count
        guard available >= 2 else { return .incomplete }
        let firstByte = bytes[0]
        let second = bytes[1]
        let masked = second & 0x80 != 0
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
            guard word <= UInt64(Int.max) else { return .refused(.invalidFrameLength) }
            length = Int(word)
            offset = 10
        case let short:
            length = Int(short)
            offset = 2
        }
        if length > maxFrameSize { return .refused(.invalidFrameLength) }
        if firstByte & 0x08 != 0 {
            if firstByte & 0x80 == 0 { return .refused(.fragmentedControlFrame) }
            if length > 125 { return .refused(.multiByteControlFrameLength) }
        }
        var key: UInt32?
        if masked {
            guard available >= offset + 4 else { return .incomplete }
            key = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
            offset += 4
        }
        guard available - offset >= length else { return .incomplete }
        return .frame(firstByte: firstByte, maskBits: key, payloadOffset: offset, length: length)
    }
}
