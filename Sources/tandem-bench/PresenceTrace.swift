import NIOConcurrencyHelpers
import TandemRedis

// `tandem-bench presence --second-url … --trace-pubsub`: where a cross-node cursor spends its time
// (issue 11 item 4). The bench subscribes to every doc's channel on the nodes' Redis itself and notes
// when each cursor update (sender, n) first appears there — published by the sender node's tick. A
// sample of cross-node receipts (receiver index divisible by --trace-every) keeps (sender, n, sent,
// received); joined at the end, each is split in two:
//
//   send → on pub/sub:  the sender node's read, its wait for its tick, the tick, the Redis write that
//                       publishes, and Redis handing the message to a subscriber (this one);
//   pub/sub → client:   the receiving node's subscriber read, the hop onto the doc's shard, the forward,
//                       the write to the member, and the bench's own read of it.
//
// Same-node receipts of the same sample date the sender node's own delivery of the update (the first
// one read): send → that delivery is the tick wait, the tick, the local write and the bench's read, and
// that delivery → on pub/sub is how far the publishing write trails the local fan-out.
//
// The bench's subscriber reads the same message as the receiving node's, on its own thread; both are
// processes on the same cores, so the split is as good as the scheduler is fair to them.

/// A sampled receipt (kept on the receiver's loop, joined after the run).
struct TraceReceipt: Sendable {
    /// `sender << 32 | n`.
    var key: UInt64
    var sentAt: UInt64
    var receivedAt: UInt64
    /// Received from the sender's own node: the first such receipt of an update dates the sender node's
    /// local delivery of its tick, against which its appearance on pub/sub is compared.
    var sameNode = false

    static func key(sender: UInt64, n: UInt64) -> UInt64 { sender << 32 | (n & 0xFFFF_FFFF) }
}

/// The bench's own subscriber to the docs' channels: when each cursor update was first published.
final class PubSubTrace: Sendable {
    private struct State {
        var window = Window(start: 0, end: 0)
        /// `TraceReceipt.key` → first seen on pub/sub (monotonic ns), for updates sent in the window.
        var firstSeen: [UInt64: UInt64] = [:]
        var messages = 0
    }

    private let state = NIOLockedValueBox(State())
    private let subscriber: RedisSubscriber

    init(redisURL: String, channels: [String]) throws {
        let endpoint = try RedisEndpoint(url: redisURL)
        let state = self.state
        subscriber = RedisSubscriber(
            configuration: .init(endpoint: endpoint) { _, payload in
                let now = monotonicNanos()
                // Runs on the subscriber's thread; a few hundred messages a second, one lock each.
                state.withLockedValue { s in
                    s.messages += 1
                    payload.withUnsafeBytes { raw in
                        var scanner = ByteScanner(raw)
                        while scanner.skip(past: Patterns.stateB) {
                            guard let sender = scanner.readUInt(), scanner.consume(Patterns.commaN), let n = scanner.readUInt(),
                                scanner.consume(Patterns.commaTs), let ts = scanner.readUInt(), ts > 0, s.window.contains(ts)
                            else { continue }
                            let key = TraceReceipt.key(sender: sender, n: n)
                            if s.firstSeen[key] == nil { s.firstSeen[key] = now }
                        }
                    }
                }
            })
        for channel in channels { subscriber.subscribe(channel) }
        subscriber.start()
    }

    func begin(window: Window) { state.withLockedValue { $0.window = window } }

    /// Stops the subscriber and splits the receipts.
    func finish(_ receipts: [TraceReceipt]) async -> PubSubTraceResult {
        await subscriber.shutdown()
        let (firstSeen, messages) = state.withLockedValue { ($0.firstSeen, $0.messages) }
        var toPubSub = makeLatencyHistogram()
        var fromPubSub = makeLatencyHistogram()
        var total = makeLatencyHistogram()
        var joined: [(total: UInt64, toPubSub: UInt64, fromPubSub: UInt64, toLocal: UInt64?)] = []
        joined.reserveCapacity(receipts.count)
        var unmatched = 0
        // The sender node's own delivery of each update: its first same-node receipt.
        var firstLocal: [UInt64: UInt64] = [:]
        for r in receipts where r.sameNode {
            firstLocal[r.key] = min(firstLocal[r.key] ?? .max, r.receivedAt)
        }
        var toLocal = makeLatencyHistogram()
        var localToPubSub = makeLatencyHistogram()
        var pubSubFirst = 0
        for (key, local) in firstLocal {
            guard let seen = firstSeen[key] else { continue }
            if seen < local { pubSubFirst += 1 }
            localToPubSub.recordNanos(seen > local ? seen - local : 0)
        }
        for r in receipts where !r.sameNode {
            guard let seen = firstSeen[r.key] else {
                unmatched += 1
                continue
            }
            let a = seen > r.sentAt ? seen - r.sentAt : 0
            let b = r.receivedAt > seen ? r.receivedAt - seen : 0
            let t = r.receivedAt > r.sentAt ? r.receivedAt - r.sentAt : 0
            toPubSub.recordNanos(a)
            fromPubSub.recordNanos(b)
            total.recordNanos(t)
            let local = firstLocal[r.key].map { $0 > r.sentAt ? $0 - r.sentAt : 0 }
            if let local { toLocal.recordNanos(local) }
            joined.append((t, a, b, local))
        }
        // The tail: the slowest 1 % of the sampled deliveries, and where their time went on average.
        joined.sort { $0.total > $1.total }
        let tail = joined.prefix(max(1, joined.count / 100))
        func meanMs(_ values: some Sequence<UInt64>) -> Double {
            var sum = 0.0
            var n = 0.0
            for v in values {
                sum += Double(v)
                n += 1
            }
            return n > 0 ? sum / n / 1e6 : 0
        }
        let tailLocal = tail.compactMap(\.toLocal)
        return PubSubTraceResult(
            pubSubMessages: messages, sampledReceipts: receipts.count, unmatched: unmatched,
            sendToPubSubMs: LatencySummary(toPubSub), pubSubToClientMs: LatencySummary(fromPubSub),
            totalMs: LatencySummary(total),
            slowestPercentMeanMs: joined.isEmpty
                ? nil
                : .init(
                    total: meanMs(tail.map(\.total)), sendToPubSub: meanMs(tail.map(\.toPubSub)), pubSubToClient: meanMs(tail.map(\.fromPubSub)),
                    sendToSameNode: tailLocal.isEmpty ? nil : meanMs(tailLocal)),
            sendToSameNodeMs: toLocal.totalCount > 0 ? LatencySummary(toLocal) : nil,
            sameNodeToPubSubMs: localToPubSub.totalCount > 0 ? LatencySummary(localToPubSub) : nil,
            pubSubFirstPercent: localToPubSub.totalCount > 0 ? 100 * Double(pubSubFirst) / Double(localToPubSub.totalCount) : nil)
    }
}

struct PubSubTraceResult: Codable, Sendable {
    struct Split: Codable, Sendable {
        var total: Double
        var sendToPubSub: Double
        var pubSubToClient: Double
        /// Of `sendToPubSub`: to the sender node's own delivery (where one was sampled).
        var sendToSameNode: Double?
    }

    var pubSubMessages: Int
    var sampledReceipts: Int
    /// Receipts whose update the bench's subscriber never saw (it connects once; should be 0).
    var unmatched: Int
    var sendToPubSubMs: LatencySummary
    var pubSubToClientMs: LatencySummary
    /// The same sampled deliveries end to end (comparable with the cross-node row).
    var totalMs: LatencySummary
    /// Mean of each stage over the slowest 1 % of the sampled deliveries.
    var slowestPercentMeanMs: Split?
    /// Cross-node sample: send → the sender node's own delivery of the update (tick wait, tick, local
    /// write, bench read).
    var sendToSameNodeMs: LatencySummary?
    /// Per update: its first same-node receipt → on pub/sub (0 where pub/sub came first).
    var sameNodeToPubSubMs: LatencySummary?
    /// Share of updates seen on pub/sub before the sender node's own delivery was read.
    var pubSubFirstPercent: Double?
}
