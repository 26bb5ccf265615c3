import FuzzSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
@testable import TandemClient

// `ServerTextFrameReader`, the client's shortcut for the server's plain text frames (issue 8, stop 27), against
// the pipeline without it: what a hostile or broken server sends must reach the application exactly as NIO's
// decoder, protocol-error handler and aggregator deliver it. The fuzzer's bytes choose the frame size limit
// and how the stream is cut into reads; the rest is the stream (server frames: unmasked, or not).
//
// Invariants: never traps; the two pipelines deliver the same text and binary messages in the same order,
// write the same frames back (pongs, close frames; compared unmasked: each client frame has its own random
// masking key), end in the same close state (code, reason, closed or not, first error) with the same
// statistics, and stop accepting reads at the same read — up to the server's first close frame (see
// `upToTheFirstClose`).

private let limits = [1, 2, 125, 126, 300, 1 << 16]  // the client's Configuration takes 1...UInt32.max

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let limit = input.pick(limits)
    // Up to eight read sizes (1...256), used in turn.
    let sizes = input.bytes(maxCount: 8).map { Int($0) + 1 }
    let stream = upToTheFirstClose(input.rest())
    let chunks = reads(of: stream, sizes: sizes)

    let withReader = ClientPipeline(maxFrameSize: limit, withReader: true)
    let plain = ClientPipeline(maxFrameSize: limit, withReader: false)
    for (index, chunk) in chunks.enumerated() {
        let a = withReader.feed(chunk)
        let b = plain.feed(chunk)
        require(a == b, "read \(index): accepted \(a) with the reader, \(b) without")
        require(withReader.outcome == plain.outcome, "after read \(index): \(withReader.outcome) against \(plain.outcome)")
        if !a { break }
    }
    withReader.finish()
    plain.finish()
    require(withReader.outcome == plain.outcome, "at the end: \(withReader.outcome) against \(plain.outcome)")
    return 0
}

/// The stream up to and including its first close frame. What a server sends after its close frame is not
/// read by either pipeline as a message (the client has echoed the close and drops the connection); NIO's
/// decoder still decodes the rest of the read that carried the close and may answer a bad frame there with
/// a second close frame, which the reader's pipeline, fed the rest as a read of its own, does not write.
/// Neither is observable as a message, so the comparison stops at the close.
private func upToTheFirstClose(_ stream: [UInt8]) -> [UInt8] {
    var at = 0
    while at + 2 <= stream.count {
        let masked = stream[at + 1] & 0x80 != 0
        var header = 2
        var length = UInt64(stream[at + 1] & 0x7F)
        if length == 126 {
            guard at + 4 <= stream.count else { break }
            length = UInt64(stream[at + 2]) << 8 | UInt64(stream[at + 3])
            header = 4
        } else if length == 127 {
            guard at + 10 <= stream.count else { break }
            length = (2..<10).reduce(UInt64(0)) { $0 << 8 | UInt64(stream[at + $1]) }
            header = 10
        }
        guard length <= UInt64(stream.count) else { break }
        let end = at + header + (masked ? 4 : 0) + Int(length)
        guard end <= stream.count else { break }
        if stream[at] & 0x0F == 0x8 { return Array(stream[..<end]) }
        at = end
    }
    return stream
}

/// Everything an application or the server could observe of a client connection.
private struct Outcome: Equatable, CustomStringConvertible {
    var messages: [String] = []
    var written: [String] = []
    var closeCode: Int?
    var closeReason = ""
    var isClosed = false
    var firstError = ""
    var statistics = WebSocketClient.Statistics()

    var description: String {
        "messages \(messages.count) (last \(messages.last.map { String($0.prefix(40)) } ?? "-")), written \(written), "
            + "close \(String(describing: closeCode)) '\(closeReason)' closed \(isClosed), error '\(firstError)', \(statistics)"
    }
}

/// The client's inbound pipeline after the upgrade (`WebSocketClientHandler`'s order), on an `EmbeddedChannel`.
private final class ClientPipeline {
    let channel = EmbeddedChannel()
    let messages = NIOLockedValueBox<[String]>([])
    let shared = NIOLockedValueBox(ConnectionState())
    var written: [String] = []
    let maxFrameSize: Int

    init(maxFrameSize: Int, withReader: Bool) {
        self.maxFrameSize = maxFrameSize
        // Connected first: the handler treats a channel that is not active when it is added as ended.
        try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        let messages = self.messages
        let handler = WebSocketClientHandler(
            configuration: .init(maxFrameSize: maxFrameSize),
            callbacks: .init(
                onText: { buffer in messages.withLockedValue { $0.append("t:" + String(buffer: buffer)) } },
                onBinary: { buffer in messages.withLockedValue { $0.append("b:\(Array(buffer.readableBytesView))") } }),
            continuation: nil, shared: shared)
        let decoder = ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize))
        try! channel.pipeline.syncOperations.addHandlers(
            WebSocketFrameEncoder(), decoder, WebSocketProtocolErrorHandler(isServer: false),
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: max(maxFrameSize, 1),
                maxAccumulatedFrameSize: maxFrameSize),
            handler)
        if withReader {
            try! channel.pipeline.syncOperations.addHandler(
                ServerTextFrameReader(maxFrameSize: maxFrameSize, handler: handler), position: .before(decoder))
        }
    }

    /// One read; false once the channel no longer takes reads (closed).
    func feed(_ chunk: [UInt8]) -> Bool {
        guard channel.isActive else { return false }
        do {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
        } catch {
            // Errors reach the handler's `errorCaught` first; what is thrown here is what passed it.
            shared.withLockedValue { if $0.firstError == nil { $0.firstError = error } }
        }
        channel.pipeline.fireChannelReadComplete()
        collectWritten()
        return channel.isActive
    }

    func finish() {
        _ = try? channel.finish(acceptAlreadyClosed: true)
        collectWritten()
    }

    private var pendingOut: [UInt8] = []

    /// The client's frames as written, unmasked: "opcode:fin:payload".
    private func collectWritten() {
        while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
            pendingOut += buffer.readableBytesView
        }
        while let (frame, used) = Self.clientFrame(in: pendingOut) {
            written.append(frame)
            pendingOut.removeFirst(used)
        }
    }

    /// A masked client frame at the front of `bytes` and its size, if all of it is there.
    private static func clientFrame(in bytes: [UInt8]) -> (String, Int)? {
        guard bytes.count >= 2 else { return nil }
        var at = 2
        var length = Int(bytes[1] & 0x7F)
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            at = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = (2..<10).reduce(0) { $0 << 8 | Int(bytes[$1]) }
            at = 10
        }
        require(bytes[1] & 0x80 != 0, "the client wrote an unmasked frame")
        guard bytes.count >= at + 4 + length else { return nil }
        let key = Array(bytes[at..<(at + 4)])
        var payload = [UInt8]()
        payload.reserveCapacity(length)
        for index in 0..<length { payload.append(bytes[at + 4 + index] ^ key[index % 4]) }
        return ("\(bytes[0] & 0x0F):\(bytes[0] >> 7):\(payload)", at + 4 + length)
    }

    var outcome: Outcome {
        let state = shared.withLockedValue { $0 }
        return Outcome(
            messages: messages.withLockedValue { $0 }, written: written, closeCode: state.closeCode,
            closeReason: state.closeReason, isClosed: state.isClosed,
            firstError: state.firstError.map { String(describing: $0) } ?? "", statistics: state.statistics)
    }
}
