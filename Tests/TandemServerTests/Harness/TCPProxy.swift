import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP relay in front of a node, so a test can take a client's network away and give it back: ``cut()``
/// drops every relayed connection without a close frame (as a lost network does: the node sees the socket
/// end, the client sees TCP close) and refuses new ones until ``restore()``.
final class TCPProxy: Sendable {
    let port: Int
    private let server: any Channel
    private let state: NIOLockedValueBox<(accepting: Bool, channels: [any Channel])>

    private init(server: any Channel, state: NIOLockedValueBox<(accepting: Bool, channels: [any Channel])>) {
        self.server = server
        self.port = server.localAddress?.port ?? 0
        self.state = state
    }

    static func start(to targetPort: Int) async throws -> TCPProxy {
        let state = NIOLockedValueBox<(accepting: Bool, channels: [any Channel])>((true, []))
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                guard state.withLockedValue({ $0.accepting }) else { return inbound.close() }
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: targetPort)
                    .flatMap { outbound in
                        state.withLockedValue { $0.channels += [inbound, outbound] }
                        return inbound.pipeline.addHandler(Relay(peer: outbound))
                            .flatMap { outbound.pipeline.addHandler(Relay(peer: inbound)) }
                            .flatMap { inbound.setOption(.autoRead, value: true) }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let proxy = TCPProxy(server: server, state: state)
        Cleanup.current.add { try? await proxy.server.close() }
        Cleanup.current.add { proxy.cut() }
        return proxy
    }

    /// `ws://…/v1/ws` through the proxy.
    var wsURL: String { "ws://127.0.0.1:\(port)/v1/ws" }

    /// Drops every relayed connection (no close frame) and refuses new ones.
    func cut() {
        let channels = state.withLockedValue { state in
            state.accepting = false
            defer { state.channels = [] }
            return state.channels
        }
        for channel in channels { channel.close(promise: nil) }
    }

    /// Accepts connections again.
    func restore() {
        state.withLockedValue { $0.accepting = true }
    }

    /// Copies bytes to the peer; either side ending ends both.
    private final class Relay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        init(peer: any Channel) { self.peer = peer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer.writeAndFlush(Self.unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
