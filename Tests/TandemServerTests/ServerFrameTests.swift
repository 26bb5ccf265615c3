import NIOCore
@testable import TandemServer
import Testing

/// `ServerFrame.text` writes header and payload in one pass (issue 8 stop 28): every length class of RFC 6455
/// §5.2 must still come out as NIO's own encoder frames the same text, and as a decoder reads it back.
@Suite struct ServerFrameTests {
    @Test(arguments: [0, 1, 125, 126, 127, 1_000, 65_535, 65_536, 70_000])
    func aFrameIsWhatNIOsEncoderWrites(length: Int) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: 0x20 + $0 % 90) }
        let framed = ServerFrame.text(payload, allocator: ByteBufferAllocator())

        var expected = ByteBufferAllocator().buffer(capacity: length + 10)
        ServerFrame.writeHeader(length: length, into: &expected)
        expected.writeBytes(payload)
        #expect(framed == expected)
        #expect(framed.readableBytes == ServerFrame.headerBytes(length) + length)

        // Read back as a WebSocket frame: FIN, text, unmasked, the same payload.
        var bytes = framed
        let first = bytes.readInteger(as: UInt8.self)
        #expect(first == 0x81)
        let second = bytes.readInteger(as: UInt8.self) ?? 0xFF
        #expect(second & 0x80 == 0)
        let declared: Int?
        switch second {
        case 126: declared = bytes.readInteger(as: UInt16.self).map(Int.init)
        case 127: declared = bytes.readInteger(as: UInt64.self).map(Int.init)
        default: declared = Int(second)
        }
        #expect(declared == length)
        #expect(bytes.readBytes(length: bytes.readableBytes) == payload)
    }
}
