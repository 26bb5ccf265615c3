import NIOCore
import TandemCore
import Testing

@testable import TandemServer

/// The frame a connection refuses an early push with (`ClientConnection.earlyRefusalFrame`) is the text
/// frame of the usual error message, byte for byte, whatever the id and the hint's digits.
@Suite struct EarlyRefusalFrameTests {
    @Test func theFrameIsTheUsualErrorFrame() {
        var backoff = PushBackoff()
        let ms: UInt64 = 1_000_000
        // A long doc id makes the payload need the 16-bit length header; a short one fits the 7-bit one
        // only if the message were short, so both header forms are covered by the two payload sizes.
        for doc in ["d", String(repeating: "long-doc-", count: 30)] {
            backoff.refused(doc: doc, retryAfterMs: 30_000, now: ms)
            for (left, id) in [(1, JSONValue.number("7")), (9, .number("10")), (10, .number("123456789")), (29_999, .string("s"))] {
                let now = ms + (30_000 - UInt64(left)) * ms
                guard let refusal = backoff.refusal(doc: doc, now: now) else {
                    Issue.record("\(doc): no refusal \(left) ms before the deadline")
                    continue
                }
                #expect(refusal.retryAfterMs == UInt64(left))
                let allocator = ByteBufferAllocator()
                let frame = ClientConnection.earlyRefusalFrame(refusal, id: id, allocator: allocator)
                let expected = ServerFrame.text(
                    ServerMessage.error(
                        ProtocolError(.unavailable, PushBackoff.message, doc: doc, pushID: id, retryAfterMs: UInt64(left))),
                    allocator: allocator)
                #expect(frame == expected, "\(doc) \(id) \(left)")
            }
        }
    }
}
