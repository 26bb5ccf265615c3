import Prometheus
import TandemOpsHTTP

/// The ops plane's own metrics (issue 7): its connections, what it refused and why, and how long each
/// class of request takes. Created once with fixed label values, like `TandemMetrics`.
final class OpsMetrics: Sendable {
    /// Route classes of `tandem_ops_request_duration_seconds` (`OpsRoute.label`, plus `other` for 400,
    /// 404 and 405 answers and `server` for answers the HTTP server gave itself: 413, 421).
    static let routeLabels = ["metrics", "health", "ready", "status", "docs", "history", "history_write", "static", "other", "server"]

    /// Why a request got an error instead of an answer (`tandem_ops_requests_rejected_total{reason}`).
    enum Rejection: String, CaseIterable {
        /// 421: its Host is not allowed (DNS rebinding).
        case hostNotAllowed = "host_not_allowed"
        /// 401: a document route without the right `--ops-token`.
        case unauthorized
        /// 400: a malformed or out-of-range URL parameter.
        case badRequest = "bad_request"
        /// 503: `--ops-max-pending-requests` Redis-backed requests were already waiting.
        case busy
        /// 503: no answer within `--ops-request-timeout-ms` (Redis or the shards too slow).
        case timeout
    }

    let connections: Gauge
    let pendingRequests: Gauge
    private let refused: [OpsConnectionRefusal: Counter]
    let evicted: Counter
    private let rejected: [Rejection: Counter]
    private let durations: [String: ValueHistogram]

    init(registry: PrometheusCollectorRegistry) {
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "tandem", metricName: metric, unitName: unit, helpText: help)
        }
        connections = registry.makeGauge(descriptor: name("ops_connections", "", "Open connections to the ops port."))
        pendingRequests = registry.makeGauge(
            descriptor: name(
                "ops_pending_requests", "",
                "Ops requests waiting for Redis or the shards (503 busy beyond --ops-max-pending-requests)."))
        let refusedName = name(
            "ops_connections_refused", "total",
            "Ops-port connections closed as soon as they were accepted, by reason (per_address: over "
                + "--ops-max-connections-per-ip; full: over --ops-max-connections with every connection busy).")
        refused = Dictionary(uniqueKeysWithValues: OpsConnectionRefusal.allCases.map {
            ($0, registry.makeCounter(descriptor: refusedName, labels: [("reason", $0.rawValue)]))
        })
        evicted = registry.makeCounter(
            descriptor: name(
                "ops_connections_evicted", "total",
                "Idle ops-port connections closed to make room for a new one at --ops-max-connections."))
        let rejectedName = name("ops_requests_rejected", "total", "Ops requests answered with an error, by reason.")
        rejected = Dictionary(uniqueKeysWithValues: Rejection.allCases.map {
            ($0, registry.makeCounter(descriptor: rejectedName, labels: [("reason", $0.rawValue)]))
        })
        let durationName = name(
            "ops_request_duration", "seconds", "Ops request complete to response queued, by route class.")
        let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
        durations = Dictionary(uniqueKeysWithValues: Self.routeLabels.map {
            ($0, registry.makeValueHistogram(descriptor: durationName, labels: [("route", $0)], buckets: buckets))
        })
    }

    func rejected(_ reason: Rejection) { rejected[reason]?.increment() }

    /// The ops HTTP server's events.
    func observe(_ event: OpsHTTPEvent) {
        switch event {
        case .openConnections(let count): connections.set(to: Double(count))
        case .pendingResponses(let count): pendingRequests.set(to: Double(count))
        case .connectionRefused(let reason): refused[reason]?.increment()
        case .connectionEvicted: evicted.increment()
        case .hostRejected: rejected(.hostNotAllowed)
        case .pendingLimitReached: rejected(.busy)
        case .responseTimedOut: rejected(.timeout)
        case .requestFinished(let label, _, let seconds):
            let route = label.flatMap { durations[$0] != nil ? $0 : nil } ?? (label == nil ? "server" : "other")
            durations[route]?.record(max(0, seconds))
        }
    }
}
