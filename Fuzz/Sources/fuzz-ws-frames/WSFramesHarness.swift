import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOWebSocket
@testable import TandemFraming

// `InboundFrameDecoder`, the frame decoder of `/v1/ws` (issue 14), differentially against NIO's
// `WebSocketFrameDecoder` (what `/yjs` and, before, `/v1/ws` ran behind `ByteToMessageHandler`): the
// fuzzer's bytes choose the frame size limit and how the stream is cut into reads; the rest is the stream.
//
// Invariants: never traps; every read is decoded as `ConnectionHandler` decodes it (`joined`, `nextFrame`
// until nil, `keep`), and gives exactly NIO's frames (FIN, RSV bits, opcode, masking key, payload) in
// NIO's order, then NIO's error (`invalidFrameLength`, `fragmentedControlFrame`,
// `multiByteControlFrameLength`) at the same frame, or none where NIO has none — except that the first
// frame whose first two bytes break a rule NIO does not enforce (reserved bits, then an unknown opcode,
// then no mask; read here from the stream, header after header, independently of the decoder) is
// refused with that rule, even before the rest of it has arrived; a kept partial frame is never more than
// a header and the limit's payload; the fused copy-and-unmask gives NIO's unmasked bytes.

private let limits = [0, 125, 300, 1 << 14]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWSFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let limit = input.pick(limits)
    // Up to eight read sizes (1...256), used in turn.
    let sizes = input.bytes(maxCount: 8).map { Int($0) + 1 }
    let stream = input.rest()
    let chunks = reads(of: stream, sizes: sizes)

    let ours = decodeOurs(chunks, limit: limit)
    let expected = expectedResult(stream: stream, nio: decodeWithNIO(chunks, limit: limit))
    guard ours.error == expected.error else { fatalError("error \(String(describing: ours.error)) against \(String(describing: expected.error))") }
    guard ours.frames == expected.frames else { fatalError("\(ours.frames.count) frames against \(expected.frames.count): \(ours.frames) / \(expected.frames)") }
    return 0
}

/// NIO's result, cut at the first frame that breaks one of the rules NIO does not enforce.
private func expectedResult(
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
    return (nio.frames, nio.error.map { error in InboundFrameError.allCases.first { $0.nioError == error }! })
}

private func decodeOurs(_ chunks: [[UInt8]], limit: Int) -> (frames: [WebSocketFrame], error: InboundFrameError?) {
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
