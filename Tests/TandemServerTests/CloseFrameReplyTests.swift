import NIOCore
import NIOWebSocket
import Testing

@testable import TandemServer

/// What a client's close frame is answered with (RFC 6455 §7.4), including the codes the network fuzzer
/// got echoed back before.
@Suite struct CloseFrameReplyTests {
    private func payload(_ code: UInt16?, reason: [UInt8] = []) -> ByteBuffer {
        var buffer = ByteBuffer()
        if let code { buffer.writeInteger(code) }
        buffer.writeBytes(reason)
        return buffer
    }

    @Test func validCodesAreEchoedAndAnEmptyCloseGets1000() {
        #expect(CloseFrameReply.code(for: payload(nil)) == .normalClosure)
        for code: UInt16 in [1000, 1001, 1003, 1008, 1011, 1013, 3000, 4000, 4999] {
            #expect(CloseFrameReply.code(for: payload(code, reason: Array("bye".utf8))) == WebSocketErrorCode(codeNumber: Int(code)))
        }
    }

    @Test func invalidOrReservedCodesAndAOneBytePayloadAreProtocolErrors() {
        for code: UInt16 in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            #expect(CloseFrameReply.code(for: payload(code)) == .protocolError, "code \(code)")
        }
        var oneByte = ByteBuffer()
        oneByte.writeInteger(UInt8(3))
        #expect(CloseFrameReply.code(for: oneByte) == .protocolError)
    }

    @Test func aReasonThatIsNotUTF8Gets1007() {
        #expect(CloseFrameReply.code(for: payload(1000, reason: [0xff, 0xfe])) == .dataInconsistentWithMessage)
    }
}
