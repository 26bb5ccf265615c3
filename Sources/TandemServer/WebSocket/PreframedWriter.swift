import NIOCore

/// Writes text frames the server has framed itself, past the WebSocket frame encoder.
///
/// The same message often goes to many sockets: a commit's `patch` to every member of the doc, a presence
/// delta to every member of the doc. Through the encoder, every socket cost a `WebSocketFrame`, a trip
/// through the encoder and a header buffer allocated for it (the payload is shared, so the header cannot
/// go in front of it). Framed once (`ServerFrame.text`), one buffer is written to every socket as it is,
/// from this handler's context next to the socket. Writes issued here and through the encoder are queued in
/// the order they are issued (both reach the socket's pending writes synchronously, on its event loop).
///
/// Added first in the pipeline (next to the head) when a connection is upgraded; confined to the
/// channel's event loop like the connection that uses it.
final class PreframedWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Writes a complete frame (see `ServerFrame`). Does nothing once the handler left the pipeline.
    func write(frame: ByteBuffer) {
        context?.write(wrapOutboundOut(frame), promise: nil)
    }

    /// Flushes from next to the head. The handlers behind this one (frame encoder and decoder, the
    /// connection's) write through and hold nothing back, so this flushes everything written; a
    /// `channel.flush()` walked the whole pipeline, retaining each context on the way, for every member of
    /// every presence delta (issue 14).
    func flush() {
        context?.flush()
    }
}

/// RFC 6455 §5.2 framing of the text frames the server sends: FIN, opcode 1 (text), no mask, one frame
/// per message.
enum ServerFrame {
    /// Bytes of header a payload of `length` bytes needs.
    static func headerBytes(_ length: Int) -> Int { length < 126 ? 2 : (length <= 0xFFFF ? 4 : 10) }

    /// A complete text frame holding `payload`.
    ///
    /// Header and payload go in with one write into storage of the exact size: the header's
    /// `writeInteger`s and the payload's `writeBytes` were ~1,500 instructions a frame (each a bounds check,
    /// a uniqueness check and an index update on the buffer; callgrind, issue 8 stop 28) — twice per commit
    /// (its patch and its result), once per presence delta. The bytes are the same.
    static func text(_ payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        let header = headerBytes(payload.count)
        let total = header + payload.count
        var buffer = allocator.buffer(capacity: total)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { raw in
            let out = raw.bindMemory(to: UInt8.self)
            writeHeader(length: payload.count, into: out)
            payload.withUnsafeBufferPointer { bytes in
                guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
                (out.baseAddress! + header).update(from: source, count: bytes.count)
            }
            return total
        }
        return buffer
    }

    /// The header of a frame of `length` bytes at the start of `out` (`headerBytes(length)` of them).
    private static func writeHeader(length: Int, into out: UnsafeMutableBufferPointer<UInt8>) {
        out[0] = 0x81
        if length < 126 {
            out[1] = UInt8(length)
        } else if length <= 0xFFFF {
            out[1] = 126
            out[2] = UInt8(truncatingIfNeeded: length >> 8)
            out[3] = UInt8(truncatingIfNeeded: length)
        } else {
            out[1] = 127
            for i in 0..<8 { out[2 + i] = UInt8(truncatingIfNeeded: UInt64(length) >> (56 - 8 * UInt64(i))) }
        }
    }

    static func writeHeader(length: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0x81))
        if length < 126 {
            buffer.writeInteger(UInt8(length))
        } else if length <= 0xFFFF {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }
}
