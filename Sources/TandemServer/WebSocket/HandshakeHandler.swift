import Foundation
import NIOCore
import NIOHTTP1
import TandemCore

/// The outcome of one handshake, shared by the upgrader's callbacks and the fallback handler of the same
/// channel, in a `NIOLoopBoundBox` of that channel's event loop (`HandshakeState.Box`): touched there only,
/// checked at run time.
struct HandshakeState {
    typealias Box = NIOLoopBoundBox<HandshakeState>

    struct Accepted {
        var identity: Identity
        var sessionID: String
        var resumed: Bool
    }

    struct Rejected {
        var status: HTTPResponseStatus
        var error: String
        var message: String
        var headers: [(String, String)] = []
    }

    /// An accepted `/yjs/{room}` handshake.
    struct AcceptedYjs {
        var identity: Identity
        var room: String
        var role: Role
    }

    enum Decision {
        case accepted(Accepted)
        case acceptedYjs(AcceptedYjs)
        case rejected(Rejected)
        /// A protocol version this server does not speak: upgraded, then closed with 4400/4401 (a browser
        /// cannot read an HTTP refusal, but it can read a close code).
        case unsupportedVersion(code: Int, reason: String)
    }

    var decision: Decision?
    /// Counted in the server's pending handshakes (until upgraded or closed).
    var isPending = true
    /// Its place in the server's pending-handshake queue.
    var pendingID: UInt64 = 0
    /// Closes the socket if it is still pending after `--handshake-timeout-ms`.
    var timeout: Scheduled<Void>?
}

/// Answers HTTP requests on the client port that do not become WebSockets: refused handshakes (401,
/// 429, 503 with `Retry-After`), plain requests to `/v1/ws` (426) and anything else (404). Always a JSON
/// body `{"error":…,"message":…}` and `Connection: close`.
///
/// On its channel's loop alone (the upgrader's callbacks reach it through a `NIOLoopBound`).
final class HandshakeFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: HandshakeState.Box
    private var responded = false

    init(state: HandshakeState.Box) { self.state = state }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data), !responded else { return }
        responded = true
        let rejection: HandshakeState.Rejected
        if case .rejected(let rejected)? = state.value.decision {
            rejection = rejected
        } else if ProtocolVersion.requested(inPath: QueryString.parse(uri: head.uri).path) != nil
            || YjsPath.room(inPath: QueryString.parse(uri: head.uri).path) != nil
        {
            rejection = .init(
                status: .upgradeRequired, error: "upgrade_required", message: "connect with a WebSocket handshake",
                headers: [("Upgrade", "websocket")])
        } else {
            rejection = .init(status: .notFound, error: "not_found", message: "the client endpoints are /v1/ws and /yjs/{room}")
        }
        var body = JSONWriter()
        body.openObject()
        body.key("error"); body.string(rejection.error); body.comma()
        body.key("message"); body.string(rejection.message)
        body.closeObject()
        var headers = HTTPHeaders(rejection.headers)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(body.bytes.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: rejection.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body.bytes)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
