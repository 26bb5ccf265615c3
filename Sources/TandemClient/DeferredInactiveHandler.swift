import NIOCore

/// The first handler of a client pipeline: passes `channelInactive` on one loop tick later.
///
/// A server may answer the upgrade, send a close frame and drop the connection at once (Tandem closes with
/// 4400/4401 when it does not speak the client's protocol version), so the client reads the 101, the close
/// frame and the EOF together. NIO's HTTP decoder is taken out of the pipeline (which runs the upgrade and
/// forwards the bytes after the 101 to the WebSocket decoder) only on the next loop tick; if the EOF reached
/// it first, it would drop those bytes as a truncated response, and the WebSocket handler, added after
/// `channelInactive` went by, would never learn that the connection ended. Passing the EOF on after the
/// decoder's removal (queued earlier, while reading the 101, and run first) lets the upgrade finish, the close
/// frame reach `WebSocketClientHandler`, and then the end of the connection.
final class DeferredInactiveHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    func channelInactive(context: ChannelHandlerContext) {
        context.eventLoop.assumeIsolated().execute {
            context.fireChannelInactive()
        }
    }
}

@available(*, unavailable)
extension DeferredInactiveHandler: Sendable {}
