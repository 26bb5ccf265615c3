import NIOCore
import TandemClient

/// A control measurement next to the scenario's own: one extra connection (no doc) sends the protocol's
/// `{"t":"ping"}` every 100 ms and times the `pong`. The round trip crosses the server's and the bench's
/// event loops but no tick, no Redis and no fan-out, so when the scenario's latency is high and this is
/// low, the time is spent in the server's pipeline; when both are high, the event loops (or the CPU,
/// shared with the bench) are saturated.
final class PingProbe: @unchecked Sendable {
    // @unchecked: everything below is used on `loop` only.
    let loop: any EventLoop
    private var client: WebSocketClient?
    private var outstanding: [UInt64] = []
    private var head = 0
    private var window = Window(start: 0, end: 0)
    private var histogram = makeLatencyHistogram()
    private var task: RepeatedTask?

    init(loop: any EventLoop) { self.loop = loop }

    /// Connects (as its own user) and starts pinging; recording only inside `window`.
    func start(connector: Connector, runID: String, window: Window) async {
        let callbacks = WebSocketClient.Callbacks(onText: { [self] buffer in self.received(buffer) })
        let url = connector.url([("user", "\(runID)-probe"), ("name", "probe")])
        guard let client = await connector.connectPaced(url: url, on: loop, callbacks: callbacks) else { return }
        loop.execute { [self] in
            self.client = client
            self.window = window
            self.task = loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [self] _ in
                self.ping()
            }
        }
    }

    private func ping() {
        guard let client, !client.isClosed else { return }
        outstanding.append(monotonicNanos())
        client.send(text: #"{"t":"ping"}"#)
    }

    private func received(_ buffer: ByteBuffer) {
        let now = monotonicNanos()
        let isPong = buffer.withUnsafeReadableBytes { MessageType.of(ByteScanner($0)) == .pong }
        guard isPong, head < outstanding.count else { return }
        let sent = outstanding[head]
        head += 1
        if head > 1024 {
            outstanding.removeFirst(head)
            head = 0
        }
        if window.contains(sent) { histogram.recordNanos(now - sent) }
    }

    /// Stops pinging, closes, returns the round trips.
    func finish() async -> LatencySummary {
        let (summary, client) = (try? await loop.submit { [self] in
            self.task?.cancel()
            return (LatencySummary(self.histogram), self.client)
        }.get()) ?? (LatencySummary(makeLatencyHistogram()), nil)
        await client?.close()
        return summary
    }
}
