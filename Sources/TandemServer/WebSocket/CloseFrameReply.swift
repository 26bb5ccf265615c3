import NIOCore
import NIOWebSocket

/// The close code to answer a client's close frame with (RFC 6455 §5.5.1, §7.4).
///
/// A close frame carries nothing, or a two-byte code and a UTF-8 reason. Codes a peer may send are
/// 1000–1003, 1007–1014 (1004 is reserved; 1005, 1006 and 1015 are never sent on the wire) and
/// 3000–4999 (registered and private); anything else — and a one-byte payload — is a protocol error, answered
/// with 1002; a reason that is not UTF-8 gets 1007. A valid code is echoed, an empty close gets 1000.
/// (Echoing whatever arrived answered 0, 999, 1005 or 65535 back: found by the network fuzzer.)
enum CloseFrameReply {
    static func code(for payload: ByteBuffer) -> WebSocketErrorCode {
        var payload = payload
        guard payload.readableBytes > 0 else { return .normalClosure }
        guard let raw = payload.readInteger(as: UInt16.self) else { return .protocolError }
        guard isValidReceived(raw) else { return .protocolError }
        let reason = payload.readBytes(length: payload.readableBytes) ?? []
        guard String(validating: reason, as: UTF8.self) != nil else { return .dataInconsistentWithMessage }
        return WebSocketErrorCode(codeNumber: Int(raw))
    }

    /// A close frame the server sends: the code and the text saying why (every close the server starts
    /// carries one: docs/protocol.md lists them).
    static func frame(code: WebSocketErrorCode, text: String, allocator: ByteBufferAllocator) -> WebSocketFrame {
        var data = allocator.buffer(capacity: 2 + text.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(text)
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }

    static func isValidReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}
