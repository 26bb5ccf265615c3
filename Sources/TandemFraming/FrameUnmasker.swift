import NIOCore
import NIOWebSocket

/// Unmasks client frames' payloads into one buffer that a connection keeps between frames (issue 14:
/// `WebSocketFrame.unmaskedData` copies each payload into a new buffer and unmasks it a byte at a time:
/// an allocation and about 2,900 instructions per presence update, more than the update's decoding).
/// Here the payload is copied into the kept buffer and unmasked in the same pass, eight bytes at a time.
///
/// The caller hands the buffer back with `recycle` once it is done with it; as long as nothing else keeps
/// a reference by then, the next frame reuses its storage in place. A buffer that grew past
/// `maxKeptCapacity` (a large message) is not kept: a connection holds at most that much between frames.
package struct FrameUnmasker {
    private var kept: ByteBuffer?

    /// The most a connection keeps between frames (presence messages are about 100 bytes).
    package static let maxKeptCapacity = 1024

    package init() {}

    /// The frame's payload, unmasked. A frame without a mask (the aggregator's reassembled message) or with
    /// extension data (none is negotiated) is returned as NIO gives it.
    package mutating func payload(of frame: WebSocketFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard let key = frame.maskKey else { return frame.data }
        guard frame.extensionData == nil else { return frame.unmaskedData }
        return payload(masked: frame.data, maskBits: Self.maskBits(of: key), allocator: allocator)
    }

    /// NIO's masking key as `payload(masked:maskBits:allocator:)` takes it: its four bytes in memory order.
    package static func maskBits(of key: WebSocketMaskingKey) -> UInt32 {
        var bits: UInt32 = 0
        withUnsafeMutableBytes(of: &bits) { $0.copyBytes(from: key) }
        return bits
    }

    /// A payload as `InboundFrameDecoder` found it (masked with `maskBits`: the decoder refuses unmasked
    /// frames), unmasked: copied and unmasked in one pass, eight bytes at a time, into the kept buffer.
    package mutating func payload(masked: ByteBuffer, maskBits: UInt32, allocator: ByteBufferAllocator) -> ByteBuffer {
        let count = masked.readableBytes
        var buffer = kept.take() ?? allocator.buffer(capacity: max(256, count))
        buffer.clear(minimumCapacity: count)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { target in
            masked.withUnsafeReadableBytes { source in Self.copyUnmasked(source, to: target, maskBits: maskBits) }
            return count
        }
        return buffer
    }

    /// Writes `source` XORed with the masking key repeated (RFC 6455 §5.3) to the start of `target`, eight
    /// bytes at a time. `maskBits` is the key's four bytes as they lie in memory, so a word loaded from
    /// the payload meets each key byte at its offset mod 4 on any byte order.
    package static func copyUnmasked(_ source: UnsafeRawBufferPointer, to target: UnsafeMutableRawBufferPointer, maskBits: UInt32) {
        let count = source.count
        precondition(target.count >= count)
        guard count > 0, let from = source.baseAddress, let to = target.baseAddress else { return }
        // The key's bytes twice in memory order: byte i of a loaded word is at an offset ≡ i (mod 4).
        var key64: UInt64 = 0
        withUnsafeMutableBytes(of: &key64) { word in
            word.storeBytes(of: maskBits, as: UInt32.self)
            word.storeBytes(of: maskBits, toByteOffset: 4, as: UInt32.self)
        }
        var offset = 0
        while offset + 8 <= count {
            let word = from.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            to.storeBytes(of: word ^ key64, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        // The tail, a byte at a time.
        withUnsafeBytes(of: maskBits) { key in
            while offset < count {
                to.storeBytes(of: from.load(fromByteOffset: offset, as: UInt8.self) ^ key[offset & 3], toByteOffset: offset, as: UInt8.self)
                offset += 1
            }
        }
    }

    /// Takes back a buffer `payload` returned, for the next frame.
    package mutating func recycle(_ buffer: ByteBuffer) {
        guard buffer.capacity <= Self.maxKeptCapacity else { return }
        kept = buffer
    }
}
