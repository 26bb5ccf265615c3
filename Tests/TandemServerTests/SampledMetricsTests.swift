import Foundation
import TandemCore
@testable import TandemServer
import TandemTestSupport
import Testing

/// The status sampler reads the node's metrics from copies kept next to them (`SampledCounter` and friends)
/// instead of parsing the Prometheus exposition every second. These tests read the exposition the way the
/// sampler used to and require the same numbers, so the status page and Prometheus can never drift apart.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SampledMetricsTests {
    /// The exposition read back as the old sampler did: every series `name{labels}` → value.
    private struct Exposition {
        var series: [String: Double] = [:]

        init(_ bytes: [UInt8]) {
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
                series[String(line[..<space])] = value
            }
        }

        /// Sum over all label sets of `name` (or the exact series when `name` has labels).
        func total(_ name: String) -> Double {
            if let exact = series[name] { return exact }
            return series.filter { $0.key.hasPrefix(name + "{") }.values.reduce(0, +)
        }

        func histogram(_ name: String) -> HistogramBuckets {
            var buckets: [(le: Double, count: Int)] = []
            for (key, value) in series where key.hasPrefix(name + "_bucket{") {
                guard let range = key.range(of: "le=\""), let end = key[range.upperBound...].firstIndex(of: "\"") else { continue }
                let bound = key[range.upperBound..<end]
                buckets.append((bound == "+Inf" ? .infinity : Double(bound)!, Int(value)))
            }
            buckets.sort { $0.le < $1.le }
            return HistogramBuckets(bounds: buckets.map(\.le), counts: buckets.map(\.count))
        }

        var snapshot: MetricsSnapshot {
            MetricsSnapshot(
                connections: total("tandem_connections"),
                connectionsOpened: total("tandem_connections_opened_total"),
                connectionsClosed: total("tandem_connections_closed_total"),
                reconnects: total("tandem_reconnects_total"),
                presenceUpdates: total("tandem_presence_updates_total"),
                presenceFanoutMessages: total("tandem_presence_fanout_messages_total"),
                syncPushes: total("tandem_sync_pushes_total"),
                syncConflicts: total("tandem_sync_conflicts_total"),
                syncLag: histogram("tandem_sync_lag_seconds"),
                outboundQueueBytes: total(#"tandem_queue_depth{queue="outbound"}"#),
                redisQueue: total(#"tandem_queue_depth{queue="redis"}"#),
                pushQueue: total(#"tandem_queue_depth{queue="push"}"#),
                reconnectStorm: total("tandem_reconnect_storm"))
        }
    }

    /// The sampled values and the exposition read at one moment: two equal direct readings around the
    /// exposition (the node's housekeeping may set a gauge in between; then it tries again).
    private func readTogether(_ metrics: TandemMetrics) async throws -> (direct: MetricsSnapshot, exposition: MetricsSnapshot) {
        var reading: (MetricsSnapshot, MetricsSnapshot)?
        try await waitUntil("two equal readings around the exposition") {
            let before = metrics.statusSnapshot()
            let exposition = Exposition(metrics.exposition()).snapshot
            guard metrics.statusSnapshot() == before else { return false }
            reading = (before, exposition)
            return true
        }
        return try #require(reading)
    }

    @Test func aBusyNodesSampledValuesEqualItsExposition() async throws {
        let cluster = try await SyncCluster.start(nodes: 1)
        let node = cluster.nodes[0]
        let metrics = node.node.metrics
        let doc = "sampled:1"
        let alice = try await cluster.client("alice")
        let bob = try await cluster.client("bob")
        let carol = try await cluster.client("carol")
        for client in [alice, bob, carol] { try await client.join(doc) }
        // Pushes, one of them a rebase (a conflict), each delivered to the other two (sync lag).
        alice.push(doc, id: 1, ops: #"{"r":["put",{"text":"ab"}]}"#)
        let c1 = try #require(try await alice.answer(doc, id: 1).clock())
        try await bob.waitHead(doc, c1)
        alice.push(doc, id: 2, ops: #"{"r":["patch",{"text":["append","cd",2]}]}"#)
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")
        bob.push(doc, id: 1, base: c1, ops: #"{"r":["patch",{"text":["append","x",2]}]}"#)
        #expect(try await bob.answer(doc, id: 1).string("action") == "rebase")
        // Presence updates, delivered to the others.
        for (index, client) in [alice, bob].enumerated() {
            client.sendJSON(json(#"{"t":"presence","doc":"\#(doc)","state":{"cursor":\#(index)}}"#))
        }
        // A connection closed.
        await carol.socket.close()
        try await waitUntil("the activity is counted") {
            let now = metrics.statusSnapshot()
            // (Presence updates are added to their counter at the shard's next tick.)
            return now.connectionsClosed >= 1 && now.presenceFanoutMessages >= 2 && now.presenceUpdates >= 2
                && (now.syncLag.counts.last ?? 0) >= 3
        }

        let (direct, exposition) = try await readTogether(metrics)
        #expect(direct == exposition)
        // Not a comparison of zeros.
        #expect(direct.connections == 2 && direct.connectionsOpened == 3 && direct.connectionsClosed == 1)
        #expect(direct.syncPushes == 3 && direct.syncConflicts == 1 && direct.presenceUpdates >= 2)
        #expect(direct.syncLag.bounds.count == 15 && direct.syncLag.bounds.last == .infinity)
    }

    @Test func everyKindOfUpdateReadsAsTheExpositionShowsIt() throws {
        let metrics = TandemMetrics(nodeID: "sampled")
        // Bucket edges (a value equal to a bound is in that bucket), beyond the last bound, NaN, negative.
        for value in [0, 0.0005, 0.0007, 0.001, 9.99, 10, 11, .nan, -1] { metrics.syncLagSeconds.record(value) }
        metrics.connections.increment()
        metrics.connections.increment()
        metrics.connections.decrement()
        metrics.pushQueueDepth.increment(by: 3)
        metrics.pushQueueDepth.increment(by: -1)
        metrics.outboundQueueBytes.set(to: 12_345.5)
        metrics.redisQueueDepth.set(to: 7)
        metrics.reconnectStorm.set(to: 1)
        metrics.fanoutMessages.increment(by: 40)
        metrics.fanoutMessages.increment()
        for reason in CloseReason.allCases { metrics.connectionClosed(reason) }
        metrics.presenceUpdate(.accepted)
        metrics.presenceUpdate(.rateLimited)
        metrics.syncPush("commit")
        metrics.syncPush("discard")
        metrics.syncPush("not-an-action")  // not exported, so not counted either

        let direct = metrics.statusSnapshot()
        #expect(direct == Exposition(metrics.exposition()).snapshot)
        #expect(direct.syncLag.counts == [3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 7, 9])
        #expect(direct.connections == 1 && direct.pushQueue == 2 && direct.outboundQueueBytes == 12_345.5)
        #expect(direct.connectionsClosed == Double(CloseReason.allCases.count) && direct.syncPushes == 2)
    }

    @Test func quantilesInterpolateWithinBucketsOverTheInterval() {
        let previous = HistogramBuckets(bounds: [0.1, 0.5, 1, .infinity], counts: [10, 10, 10, 10])
        // Since `previous`: 10 at most 0.1, 10 in (0.1, 0.5], none above.
        let current = HistogramBuckets(bounds: [0.1, 0.5, 1, .infinity], counts: [20, 30, 30, 30])
        #expect(current.quantile(0.5, since: previous) == 0.1)
        #expect(abs(current.quantile(0.95, since: previous)! - 0.46) < 1e-12)
        #expect(current.quantile(0.95, since: HistogramBuckets()).map { abs($0 - 0.44) < 1e-12 } == true, "no earlier reading: from zero")
        #expect(current.quantile(0.95, since: current) == nil, "nothing observed in the interval")
        // Above the last finite bound: that bound, as histogram_quantile answers.
        let overflowing = HistogramBuckets(bounds: [0.1, 0.5, 1, .infinity], counts: [0, 0, 1, 10])
        #expect(overflowing.quantile(0.95, since: HistogramBuckets()) == 1)
    }
}
