import NIOCore
import NIOWebSocket

/// The keep-alive of one WebSocket connection, for `/v1/ws` and `/yjs/{room}` alike: pings the client every
/// `--ping-interval-ms` and reports it once it let two pings go by without sending any frame, and answers
/// its pings with at most one pong in flight (`PongResponder`: a client that pings without reading cannot
/// grow the send buffer). Confined to the channel's loop, like the connection that owns it.
final class KeepAlive {
    private let channel: Channel
    private let metrics: TandemMetrics
    private var missedPings = 0
    private var pongs = PongResponder()
    private var task: RepeatedTask?
    private var stopped = false
    private var timedOut: () -> Void = {}
    private var wrotePong: () -> Void = {}

    /// A client that missed this many pings in a row is reported (`timedOut`).
    static let missedPingLimit = 2

    init(channel: Channel, metrics: TandemMetrics) {
        self.channel = channel
        self.metrics = metrics
    }

    deinit { task?.cancel() }

    /// Starts pinging every `interval`.
    /// - Parameters:
    ///   - timedOut: the client missed `missedPingLimit` pings; the connection closes it (and calls `stop`).
    ///     Held until then: capture the connection weakly.
    ///   - wrotePong: a pong was written (not flushed): the connection schedules its flush and checks its
    ///     outbound limit.
    func start(interval: TimeAmount, timedOut: @escaping () -> Void, wrotePong: @escaping () -> Void) {
        self.timedOut = timedOut
        self.wrotePong = wrotePong
        let this = NIOLoopBound(Weak(self), eventLoop: channel.eventLoop)
        task = channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            this.value.keepAlive?.pingDue()
        }
    }

    /// The connection is closing or closed: no more pings, and no more pongs.
    func stop() {
        stopped = true
        task?.cancel()
        task = nil
    }

    /// Any frame from the client proves it is alive.
    func heard() { missedPings = 0 }

    /// A WebSocket ping: answered with a pong carrying the same data (RFC 6455 §5.5.2), at most one being
    /// written at a time. Pings that arrive meanwhile are answered once, for the latest only, as RFC 6455
    /// §5.5.3 allows.
    func receivedPing(_ data: ByteBuffer) {
        missedPings = 0
        guard !stopped else { return }
        let (write, coalesced) = pongs.ping(data)
        if coalesced { metrics.pongsCoalesced.increment() }
        if let write { writePong(write) }
    }

    private func writePong(_ data: ByteBuffer) {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenComplete { [self] _ in
            if let next = pongs.written(closing: stopped) { writePong(next) }
        }
        channel.write(WebSocketFrame(fin: true, opcode: .pong, data: data), promise: promise)
        wrotePong()
    }

    private func pingDue() {
        guard !stopped else { return }
        if missedPings >= Self.missedPingLimit {
            timedOut()
            return
        }
        missedPings += 1
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .ping, data: channel.allocator.buffer(capacity: 0)), promise: nil)
    }

    /// The repeated ping task must not keep the keep-alive (and what its hooks reach) alive.
    private struct Weak {
        weak var keepAlive: KeepAlive?
        init(_ keepAlive: KeepAlive) { self.keepAlive = keepAlive }
    }
}
