import NIOCore
import NIOWebSocket
@testable import TandemServer
import Testing

/// `FrameAssembler` (issue 14: fragments put back together in the connection's handler instead of by
/// `NIOWebSocketFrameAggregator` in front of it) keeps the aggregator's rules: whole messages and control
/// frames pass as they are, fragments come out as one unmasked message, and what the aggregator refused
/// (with its errors, which `FramingErrorRecorder` classifies as protocol errors) is refused.
@Suite struct FrameAssemblerTests {
    let allocator = ByteBufferAllocator()

    func frame(_ text: String, opcode: WebSocketOpcode = .text, fin: Bool = true, key: [UInt8]? = [1, 2, 3, 4]) -> WebSocketFrame {
        var data = allocator.buffer(capacity: text.utf8.count)
        data.writeString(text)
        let maskKey = key.flatMap { WebSocketMaskingKey($0) }
        if let maskKey { data.webSocketMask(maskKey) }
        return WebSocketFrame(fin: fin, opcode: opcode, maskKey: maskKey, data: data)
    }

    func text(_ frame: WebSocketFrame?) -> String? {
        frame.map { String(decoding: $0.unmaskedData.readableBytesView, as: UTF8.self) }
    }

    @Test func wholeMessagesAndControlFramesPassAsTheyAre() throws {
        var assembler = FrameAssembler(maxFragments: 4, maxMessageBytes: 100)
        let whole = frame(#"{"t":"ping"}"#)
        let passed = try #require(try assembler.assemble(whole, allocator: allocator))
        #expect(passed == whole, "the same frame, still masked")
        let ping = frame("p", opcode: .ping)
        #expect(try assembler.assemble(ping, allocator: allocator) == ping)
    }

    @Test func fragmentsComeOutAsOneUnmaskedMessageWithControlFramesBetween() throws {
        var assembler = FrameAssembler(maxFragments: 4, maxMessageBytes: 100)
        #expect(try assembler.assemble(frame(#"{"t":"#, fin: false, key: [9, 8, 7, 6]), allocator: allocator) == nil)
        let ping = frame("p", opcode: .ping)
        #expect(try assembler.assemble(ping, allocator: allocator) == ping)
        #expect(try assembler.assemble(frame(#""pi"#, opcode: .continuation, fin: false, key: [5, 5, 5, 5]), allocator: allocator) == nil)
        let message = try #require(try assembler.assemble(frame(#"ng"}"#, opcode: .continuation), allocator: allocator))
        #expect(message.opcode == .text && message.fin && message.maskKey == nil)
        #expect(text(message) == #"{"t":"ping"}"#)
        // And the next message starts afresh.
        #expect(text(try assembler.assemble(frame("x"), allocator: allocator)) == "x")
    }

    @Test func whatTheAggregatorRefusedIsRefused() throws {
        var assembler = FrameAssembler(maxFragments: 3, maxMessageBytes: 10)
        #expect(throws: NIOWebSocketFrameAggregator.Error.didReceiveFragmentBeforeReceivingTextOrBinaryFrame) {
            try assembler.assemble(frame("a", opcode: .continuation), allocator: allocator)
        }
        _ = try assembler.assemble(frame("a", fin: false), allocator: allocator)
        #expect(throws: NIOWebSocketFrameAggregator.Error.receivedNewFrameWithoutFinishingPrevious) {
            try assembler.assemble(frame("b"), allocator: allocator)
        }
        // The error dropped the fragments: a whole message passes again.
        #expect(text(try assembler.assemble(frame("c"), allocator: allocator)) == "c")

        _ = try assembler.assemble(frame("a", fin: false), allocator: allocator)
        _ = try assembler.assemble(frame("b", opcode: .continuation, fin: false), allocator: allocator)
        #expect(throws: NIOWebSocketFrameAggregator.Error.tooManyFragments, "a third fragment that is not the last") {
            try assembler.assemble(frame("c", opcode: .continuation, fin: false), allocator: allocator)
        }
        _ = try assembler.assemble(frame("a", fin: false), allocator: allocator)
        _ = try assembler.assemble(frame("b", opcode: .continuation, fin: false), allocator: allocator)
        #expect(text(try assembler.assemble(frame("c", opcode: .continuation), allocator: allocator)) == "abc", "three is the limit")

        _ = try assembler.assemble(frame("12345", fin: false), allocator: allocator)
        #expect(throws: NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge) {
            try assembler.assemble(frame("678901", opcode: .continuation), allocator: allocator)
        }
        #expect(FramingErrorRecorder.isProtocolError(NIOWebSocketFrameAggregator.Error.tooManyFragments))
    }
}
