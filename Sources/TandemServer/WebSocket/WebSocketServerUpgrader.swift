import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The WebSocket upgrade: NIO's `NIOWebSocketServerUpgrader` checks the request and answers it (the key,
/// the version, `shouldUpgrade`), and the pipeline after the upgrade is set up here. NIO's upgrader puts
/// its frame decoder (`ByteToMessageHandler(WebSocketFrameDecoder)`) and `WebSocketProtocolErrorHandler`
/// into every upgraded pipeline; `/v1/ws` decodes frames in its own handler instead
/// (`InboundFrameDecoder`, issue 14), so this one adds only the frame encoder and leaves the decoder to
/// `upgradePipelineHandler`, which adds NIO's (`addNIODecoder`) where it is still wanted (`/yjs`).
final class WebSocketServerUpgrader: HTTPServerProtocolUpgrader, Sendable {
    private let handshake: NIOWebSocketServerUpgrader
    private let upgradePipelineHandler: @Sendable (Channel, HTTPRequestHead) -> EventLoopFuture<Void>

    var supportedProtocol: String { handshake.supportedProtocol }
    var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    /// - Parameters:
    ///   - shouldUpgrade: as for `NIOWebSocketServerUpgrader`.
    ///   - upgradePipelineHandler: sets up the upgraded pipeline after the frame encoder: its frame
    ///     decoding included.
    init(
        shouldUpgrade: @escaping @Sendable (Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>,
        upgradePipelineHandler: @escaping @Sendable (Channel, HTTPRequestHead) -> EventLoopFuture<Void>
    ) {
        // Only its handshake is used: its `upgrade` (and so its pipeline handler) is never called.
        self.handshake = NIOWebSocketServerUpgrader(
            shouldUpgrade: shouldUpgrade, upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededVoidFuture() })
        self.upgradePipelineHandler = upgradePipelineHandler
    }

    func buildUpgradeResponse(
        channel: Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        handshake.buildUpgradeResponse(channel: channel, upgradeRequest: upgradeRequest, initialResponseHeaders: initialResponseHeaders)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        let channel = context.channel
        do {
            try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return upgradePipelineHandler(channel, upgradeRequest)
    }

    /// What NIO's upgrader adds after the encoder: its frame decoder, refusing frames over `maxFrameSize`,
    /// and the handler that answers the decoder's errors with a close frame.
    static func addNIODecoder(to channel: Channel, maxFrameSize: Int) throws {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
        try channel.pipeline.syncOperations.addHandler(WebSocketProtocolErrorHandler())
    }
}
