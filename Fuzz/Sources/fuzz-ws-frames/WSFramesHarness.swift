import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOWebSocket
@testable import TandemServer

// `InboundFrameDecoder`, the frame decoder of `/v1/ws` (issue 14), differentially against NIO's
// `WebSocketFrameDecoder` (what `/yjs` and, before, `/v1/ws` ran behind `ByteToMessageHandler`): the
// fuzzer's bytes choose the frame size limit and how the stream is cut into reads; the rest is the stream.
//
// Invariants: never traps; every read is decoded as `ConnectionHandler` decodes it (`joined`, `nextFrame`
// until nil, `keep`), and gives exactly NIO's frames (FIN, RSV bits, opcode, masking key, payload) in
// NIO's order, then NIO's error (`invalidFrameLength`, `fragmentedControlFrame`,
// `multiByteControlFrameLength`) at the same frame, or none where NIO has none; a kept partial frame is
// never more than a header and the limit's payload; the fused copy-and-unmask gives NIO's unmasked bytes.

private let limits = [0, 125, 300, 1 << 14]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWSFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let limit = input.pick(limits)
    // Up to eight read sizes (1...256), used in turn.
    let sizes = input.bytes(maxCount: 8).map { Int($0) + 1 }
    let stream = input.rest()
    var chunks: [[UInt8]] = []
    var start = 0
    var turn = 0
    while start < stream.count {
        let size = sizes.isEmpty ? stream.count : sizes[turn % sizes.count]
        chunks.append(Array(stream[start..<min(stream.count, start + size)]))
        start += size
        turn += 1
    }

    let ours = decodeOurs(chunks, limit: limit)
    let nio = decodeWithNIO(chunks, limit: limit)
    guard ours.error == nio.error else { fatalError("error \(String(describing: ours.error)) against NIO's \(String(describing: nio.error))") }
    guard ours.frames == nio.frames else { fatalError("\(ours.frames.count) frames against NIO's \(nio.frames.count): \(ours.frames) / \(nio.frames)") }
    return 0
}

private func decodeOurs(_ chunks: [[UInt8]], limit: Int) -> (frames: [WebSocketFrame], error: NIOWebSocketError?) {
    var decoder = InboundFrameDecoder(maxFrameSize: limit)
    var unmasker = FrameUnmasker()
    let allocator = ByteBufferAllocator()
    var frames: [WebSocketFrame] = []
    for chunk in chunks {
        var bytes = decoder.joined(ByteBuffer(bytes: chunk))
        do {
            while let frame = try decoder.nextFrame(in: &bytes) {
                let nioFrame = frame.webSocketFrame
                let unmasked = unmasker.payload(masked: frame.payload, maskBits: frame.maskBits, allocator: allocator)
                guard unmasked == nioFrame.unmaskedData else { fatalError("unmasked bytes differ from NIO's") }
                unmasker.recycle(unmasked)
                frames.append(nioFrame)
            }
        } catch {
            return (frames, error)
        }
        // At most a header (14 bytes) and the limit's payload is kept.
        guard bytes.readableBytes <= 14 + limit else { fatalError("kept \(bytes.readableBytes) bytes with a limit of \(limit)") }
        decoder.keep(bytes)
    }
    return (frames, nil)
}

private func decodeWithNIO(_ chunks: [[UInt8]], limit: Int) -> (frames: [WebSocketFrame], error: NIOWebSocketError?) {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: limit)))
    defer { _ = try? channel.finish() }
    var frames: [WebSocketFrame] = []
    for chunk in chunks {
        var failure: NIOWebSocketError?
        do {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
        } catch let error as NIOWebSocketError {
            failure = error
        } catch {
            fatalError("NIO's decoder: \(error)")
        }
        while let frame = try! channel.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
        if let failure { return (frames, failure) }
    }
    return (frames, nil)
}
