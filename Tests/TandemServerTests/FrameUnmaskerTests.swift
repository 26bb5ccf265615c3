import NIOCore
import NIOWebSocket
import TandemFraming
import Testing

/// `FrameUnmasker` (issue 14: text payloads unmasked eight bytes at a time into a buffer kept between
/// frames) gives exactly NIO's `unmaskedData`, whatever the length and key, while it reuses its buffer.
@Suite struct FrameUnmaskerTests {
    @Test func unmasksLikeNIOAndReusesItsBuffer() {
        let allocator = ByteBufferAllocator()
        var unmasker = FrameUnmasker()
        var generator = SystemRandomNumberGenerator()
        // Every length up to a few words past the kept capacity, in a random order, with random keys, each
        // payload sliced out of a larger read buffer (as the frame decoder hands it over).
        for length in (0...FrameUnmasker.maxKeptCapacity + 40).shuffled() {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let key = WebSocketMaskingKey((0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) })!
            var read = allocator.buffer(capacity: length + 16)
            read.writeBytes([1, 2, 3])
            read.writeBytes(bytes)
            read.writeBytes([4, 5])
            read.moveReaderIndex(forwardBy: 3)
            let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: read.getSlice(at: 3, length: length)!)
            let payload = unmasker.payload(of: frame, allocator: allocator)
            #expect(Array(payload.readableBytesView) == Array(frame.unmaskedData.readableBytesView), "length \(length)")
            unmasker.recycle(payload)
        }
        // Payloads that fit go into the kept buffer's storage, in place, frame after frame.
        var storages: Set<UInt> = []
        for length in 1...200 {
            let key = WebSocketMaskingKey((0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) })!
            var data = allocator.buffer(capacity: length)
            data.writeBytes((0..<length).map { UInt8(truncatingIfNeeded: $0) })
            let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: data)
            let payload = unmasker.payload(of: frame, allocator: allocator)
            #expect(Array(payload.readableBytesView) == Array(frame.unmaskedData.readableBytesView))
            storages.insert(payload.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) })
            unmasker.recycle(payload)
        }
        #expect(storages.count == 1, "\(storages.count) buffers for 200 small payloads")
        // A frame without a mask is passed through as it is.
        var plain = allocator.buffer(capacity: 8)
        plain.writeString("{}")
        let payload = unmasker.payload(of: WebSocketFrame(fin: true, opcode: .text, data: plain), allocator: allocator)
        #expect(payload == plain)
    }
}
