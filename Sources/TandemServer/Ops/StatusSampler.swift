import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Once a second, turns the node's metrics and its docs' counters into rates and keeps the last five
/// minutes, so the status page has history the moment it opens. Lock-protected: the housekeeping task
/// writes, libmicrohttpd's threads read.
final class StatusSampler: Sendable {
    static let historySeconds = 300

    /// One second of the node's life (the status page's charts).
    struct Sample: Codable, Sendable {
        var t: Double
        var connections: Double
        var openedPerSecond: Double
        var closedPerSecond: Double
        var reconnectsPerSecond: Double
        var presenceUpdatesPerSecond: Double
        var presenceDeliveriesPerSecond: Double
        var pushesPerSecond: Double
        /// Conflicts / pushes over the last 10 s (0 without pushes).
        var conflictRate: Double
        var syncLagP95Ms: Double?
        var outboundQueueBytes: Double
        var redisQueue: Double
        var pushQueue: Double
        var storm: Bool
    }

    /// Per-doc rates.
    struct DocRates: Sendable {
        var presenceUpdatesPerSecond = 0.0
        var pushesPerSecond = 0.0
        var conflictRate = 0.0
        var largestOutboundBytes = 0
    }

    private struct State {
        var previous = MetricsSnapshot()
        /// Monotonic (a wall-clock step must not turn into a burst of rates).
        var previousAtNanos = NIODeadline.now().uptimeNanoseconds
        var history: [Sample] = []
        var pushWindow: [(pushes: Double, conflicts: Double)] = []
        var docCounters: [String: (updates: UInt64, pushes: UInt64, conflicts: UInt64)] = [:]
        var docRates: [String: DocRates] = [:]
        var docPushWindow: [String: [(pushes: Double, conflicts: Double)]] = [:]
    }

    /// How much a per-doc counter grew since the previous sample.
    ///
    /// These counters live in the doc's in-memory state, which starts from zero again when the doc is
    /// unloaded (its last local member left) and loaded again — possibly between two samples. A value
    /// below the previous one is such a restart: the growth is then the new value, as Prometheus's
    /// `rate()` treats counter resets. (Computing `current &- previous` instead turned a restart into a
    /// number near 2^64, and summing a window of them trapped: issue 7.) Returned as a Double, so sums
    /// over windows cannot overflow.
    static func growth(from previous: UInt64, to current: UInt64) -> Double {
        current >= previous ? Double(current - previous) : Double(current)
    }

    private let state = NIOLockedValueBox(State())

    /// Conflict rates are over the last this many samples (seconds): long enough that one conflicting
    /// push does not read as a storm, short enough to show a change within a glance at the page.
    static let conflictWindowSamples = 10

    /// Takes one sample. `docs` are the shards' doc figures; `outbound` maps connections to queued bytes.
    func sample(metrics: TandemMetrics, docs: [DocStatus], outbound: [ObjectIdentifier: Int]) {
        let now = Date()
        let nowNanos = NIODeadline.now().uptimeNanoseconds
        let current = metrics.statusSnapshot()
        state.withLockedValue { state in
            let elapsedNanos = nowNanos >= state.previousAtNanos ? nowNanos - state.previousAtNanos : 0
            let elapsed = max(0.001, Double(elapsedNanos) / 1e9)
            let previous = state.previous
            func rate(_ value: KeyPath<MetricsSnapshot, Double>) -> Double { max(0, current[keyPath: value] - previous[keyPath: value]) / elapsed }
            let pushes = max(0, current.syncPushes - previous.syncPushes)
            let conflicts = max(0, current.syncConflicts - previous.syncConflicts)
            state.pushWindow.append((pushes, conflicts))
            if state.pushWindow.count > Self.conflictWindowSamples { state.pushWindow.removeFirst() }
            let windowPushes = state.pushWindow.reduce(0) { $0 + $1.pushes }
            let windowConflicts = state.pushWindow.reduce(0) { $0 + $1.conflicts }
            let sample = Sample(
                t: now.timeIntervalSince1970,
                connections: current.connections,
                openedPerSecond: rate(\.connectionsOpened),
                closedPerSecond: rate(\.connectionsClosed),
                reconnectsPerSecond: rate(\.reconnects),
                presenceUpdatesPerSecond: rate(\.presenceUpdates),
                presenceDeliveriesPerSecond: rate(\.presenceFanoutMessages),
                pushesPerSecond: pushes / elapsed,
                conflictRate: windowPushes > 0 ? windowConflicts / windowPushes : 0,
                syncLagP95Ms: current.syncLag.quantile(0.95, since: previous.syncLag).map { $0 * 1000 },
                outboundQueueBytes: current.outboundQueueBytes,
                redisQueue: current.redisQueue,
                pushQueue: current.pushQueue,
                storm: current.reconnectStorm > 0)
            state.history.append(sample)
            if state.history.count > Self.historySeconds { state.history.removeFirst(state.history.count - Self.historySeconds) }

            var rates: [String: DocRates] = [:]
            var counters: [String: (UInt64, UInt64, UInt64)] = [:]
            for doc in docs {
                let before = state.docCounters[doc.doc] ?? (doc.presenceUpdates, doc.pushes, doc.conflicts)
                let pushes = Self.growth(from: before.pushes, to: doc.pushes)
                let conflicts = Self.growth(from: before.conflicts, to: doc.conflicts)
                var window = state.docPushWindow[doc.doc] ?? []
                window.append((pushes, conflicts))
                if window.count > Self.conflictWindowSamples { window.removeFirst() }
                state.docPushWindow[doc.doc] = window
                let windowPushes = window.reduce(0.0) { $0 + $1.pushes }
                let windowConflicts = window.reduce(0.0) { $0 + $1.conflicts }
                rates[doc.doc] = DocRates(
                    presenceUpdatesPerSecond: Self.growth(from: before.updates, to: doc.presenceUpdates) / elapsed,
                    pushesPerSecond: pushes / elapsed,
                    conflictRate: windowPushes > 0 ? windowConflicts / windowPushes : 0,
                    largestOutboundBytes: doc.memberConnections.map { outbound[ObjectIdentifier($0)] ?? 0 }.max() ?? 0)
                counters[doc.doc] = (doc.presenceUpdates, doc.pushes, doc.conflicts)
            }
            state.docCounters = counters.mapValues { (updates: $0.0, pushes: $0.1, conflicts: $0.2) }
            state.docPushWindow = state.docPushWindow.filter { counters[$0.key] != nil }
            state.docRates = rates
            state.previous = current
            state.previousAtNanos = nowNanos
        }
    }

    var history: [Sample] { state.withLockedValue { $0.history } }
    var latest: Sample? { state.withLockedValue { $0.history.last } }
    func rates(for doc: String) -> DocRates { state.withLockedValue { $0.docRates[doc] ?? DocRates() } }
}
