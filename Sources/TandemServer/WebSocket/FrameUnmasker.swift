import NIOCore
import NIOWebSocket

/// Unmasks client frames' payloads into one buffer that a connection keeps between frames (issue 14:
/// `WebSocketFrame.unmaskedData` copies each payload into a new buffer and unmasks it a byte at a time:
/// an allocation and about 2,900 instructions per presence update, more than the update's decoding).
/// Here the payload is copied into the kept buffer (a `memcpy`) and unmasked eight bytes at a time.
///
/// The caller hands the buffer back with `recycle` once it is done with it; as long as nothing else keeps
/// a reference by then, the next frame reuses its storage in place. A buffer that grew past
/// `maxKeptCapacity` (a large message) is not kept: a connection holds at most that much between frames.
struct FrameUnmasker {
    private var kept: ByteBuffer?

    /// The most a connection keeps between frames (presence messages are about 100 bytes).
    static let maxKeptCapacity = 1024

    /// The frame's payload, unmasked. A frame without a mask (the aggregator's reassembled message) or with
    /// extension data (none is negotiated) is returned as NIO gives it.
    mutating func payload(of frame: WebSocketFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard let key = frame.maskKey else { return frame.data }
        guard frame.extensionData == nil else { return frame.unmaskedData }
        let masked = frame.data
        var buffer = kept.take() ?? allocator.buffer(capacity: max(256, masked.readableBytes))
        buffer.clear(minimumCapacity: masked.readableBytes)
        buffer.writeImmutableBuffer(masked)
        buffer.withUnsafeMutableReadableBytes { Self.unmask($0, key: key) }
        return buffer
    }

    /// Takes back a buffer `payload` returned, for the next frame.
    mutating func recycle(_ buffer: ByteBuffer) {
        guard buffer.capacity <= Self.maxKeptCapacity else { return }
        kept = buffer
    }

    /// XORs `bytes` with the masking key repeated (RFC 6455 §5.3), eight bytes at a time.
    static func unmask(_ bytes: UnsafeMutableRawBufferPointer, key: WebSocketMaskingKey) {
        guard let base = bytes.baseAddress else { return }
        let count = bytes.count
        // The key's bytes in memory order, twice: byte i of an 8-byte word is at an offset ≡ i (mod 4).
        let key32 = UInt32(key[0]) | UInt32(key[1]) << 8 | UInt32(key[2]) << 16 | UInt32(key[3]) << 24
        let key64 = UInt64(key32) | UInt64(key32) << 32
        var offset = 0
        while offset + 8 <= count {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            base.storeBytes(of: (word ^ key64).littleEndian, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < count {
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            base.storeBytes(of: byte ^ key[offset % 4], toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }
}
