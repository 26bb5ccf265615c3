import NIOCore
import NIOHTTP1

/// The whole HTTP response to an upgrade request the server did not accept.
struct RejectedResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: String
}

/// Added to the pipeline when the upgrade response is not 101: collects the status, headers and
/// (the first 64 KiB of) the body so `connect` can report them in
/// ``WebSocketClientError/handshakeRejected(status:headers:body:)``.
final class RejectedResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    static let maxBodyBytes = 64 * 1024

    private let promise: EventLoopPromise<RejectedResponse>
    private var head: HTTPResponseHead?
    private var body: ByteBuffer

    init(promise: EventLoopPromise<RejectedResponse>) {
        self.promise = promise
        self.body = ByteBuffer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var part):
            let room = Self.maxBodyBytes - self.body.readableBytes
            if room > 0, let slice = part.readSlice(length: min(room, part.readableBytes)) {
                var slice = slice
                self.body.writeBuffer(&slice)
            }
        case .end:
            self.finish()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A response without Content-Length ends at EOF; a truncated one still says enough.
        self.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if self.head != nil {
            self.finish()
        } else {
            self.promise.fail(error)
        }
        context.fireErrorCaught(error)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.finish()
    }

    /// Completes the promise once; later calls do nothing (NIO ignores a second completion).
    private func finish() {
        guard let head = self.head else {
            self.promise.fail(WebSocketClientError.handshakeFailed(reason: "connection closed during the upgrade response"))
            return
        }
        let headers = head.headers.map { ($0.name, $0.value) }
        self.promise.succeed(
            RejectedResponse(status: Int(head.status.code), headers: headers, body: String(buffer: self.body))
        )
    }
}

@available(*, unavailable)
extension RejectedResponseCollector: Sendable {}
