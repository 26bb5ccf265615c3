import NIOCore
import NIOWebSocket

/// Fragmented client messages put back together (RFC 6455 §5.4) inside the connection's own handler:
/// what `NIOWebSocketFrameAggregator` does as a handler of its own in the pipeline, with the same limits
/// and the same errors (so `FramingErrorRecorder.isProtocolError` classifies them as before). As a
/// handler it cost every unfragmented frame a channel read, the `NIOAny` cast and a hop to the next
/// handler, about 700 instructions per presence update (issue 14); here such a frame is one check.
struct FrameAssembler {
    /// At most this many fragments per message (`WebSocketServer.maxFragmentsPerMessage`).
    let maxFragments: Int
    /// At most this many payload bytes per message, all fragments together (`--max-frame-bytes`).
    let maxMessageBytes: Int
    private var fragments: [WebSocketFrame] = []
    private var accumulatedBytes = 0

    /// No fragments held: a whole text or binary message may come next (and may skip `assemble`).
    var isIdle: Bool { fragments.isEmpty }

    init(maxFragments: Int, maxMessageBytes: Int) {
        self.maxFragments = maxFragments
        self.maxMessageBytes = maxMessageBytes
    }

    /// The frame to handle now: `frame` itself (a whole message or a control frame), the reassembled
    /// message (unmasked, without a mask key) when `frame` is its last fragment, or nil while fragments
    /// are outstanding. Throws, dropping what it held, when the client breaks the fragmentation rules or
    /// the limits.
    mutating func assemble(
        _ frame: WebSocketFrame, allocator: ByteBufferAllocator
    ) throws(NIOWebSocketFrameAggregator.Error) -> WebSocketFrame? {
        do throws(NIOWebSocketFrameAggregator.Error) {
            switch frame.opcode {
            case .continuation:
                guard let opcode = fragments.first?.opcode else { throw NIOWebSocketFrameAggregator.Error.didReceiveFragmentBeforeReceivingTextOrBinaryFrame }
                try buffer(frame)
                guard frame.fin else { return nil }
                var data = allocator.buffer(capacity: accumulatedBytes)
                for index in fragments.indices {
                    var unmasked = fragments[index].unmaskedData
                    data.writeBuffer(&unmasked)
                }
                clear()
                return WebSocketFrame(fin: true, opcode: opcode, data: data)
            case .text, .binary:
                guard !frame.fin else {
                    guard fragments.isEmpty else { throw NIOWebSocketFrameAggregator.Error.receivedNewFrameWithoutFinishingPrevious }
                    return frame
                }
                try buffer(frame)
                return nil
            default:
                // Control frames are never fragmented (the decoder refuses them) and may come between fragments.
                return frame
            }
        } catch {
            clear()
            throw error
        }
    }

    private mutating func buffer(_ frame: WebSocketFrame) throws(NIOWebSocketFrameAggregator.Error) {
        guard fragments.isEmpty || frame.opcode == .continuation else { throw .receivedNewFrameWithoutFinishingPrevious }
        // A fragment that is not the last needs room for at least one more.
        guard fragments.count < maxFragments, frame.fin || fragments.count + 1 < maxFragments else { throw .tooManyFragments }
        fragments.append(frame)
        accumulatedBytes += frame.length
        guard accumulatedBytes <= maxMessageBytes else { throw .accumulatedFrameSizeIsTooLarge }
    }

    private mutating func clear() {
        fragments.removeAll(keepingCapacity: true)
        accumulatedBytes = 0
    }
}
