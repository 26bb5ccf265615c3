import Foundation
import NIOCore
import TandemCore
import TandemOpsHTTP

/// `/api/status` body.
public struct NodeStatus: Codable, Sendable {
    public struct Redis: Codable, Sendable {
        public var up: Bool
        public var subscriberUp: Bool
        public var endpoint: String
        public var pendingCommands: Int
    }

    public struct Reconnects: Codable, Sendable {
        public var ratePerSecond: Double
        public var storm: Bool
        public var stormThreshold: Double
    }

    public var node: String
    public var protocolVersion: Int
    public var uptimeSeconds: Double
    public var startedAt: Date
    public var ready: Bool
    public var connections: Int
    public var presenceSessions: Int
    public var redis: Redis
    public var reconnects: Reconnects
    public var docs: [DocSummary]
}

/// One doc in /api/status.
public struct DocSummary: Codable, Sendable {
    public var doc: String
    public var members: Int
    public var editors: Int
    public var viewers: Int
    public var localMembers: Int
    public var large: Bool
    public var headClock: UInt64?
    public var records: Int?
    public var tombstones: Int?
    public var syncLagP95Ms: Double?

    init(_ status: DocStatus) {
        doc = status.doc
        members = status.members
        editors = status.editors
        viewers = status.viewers
        localMembers = status.localMembers
        large = status.large
        headClock = status.headClock
        records = status.records
        tombstones = status.tombstones
        syncLagP95Ms = status.syncLagP95Ms
    }
}

/// The ops plane's routes, called on libmicrohttpd's threads (so blocking briefly on a shard's future is
/// fine here, never on an event loop).
struct OpsRoutes: Sendable {
    let node: NodeContext
    let startedAt: Date
    let staticFiles: StaticFiles?

    init(node: NodeContext, startedAt: Date, webRoot: String?) {
        self.node = node
        self.startedAt = startedAt
        self.staticFiles = webRoot.map(StaticFiles.init(root:))
    }

    func handle(_ request: OpsRequest) -> OpsResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return .methodNotAllowed(allowed: ["GET", "HEAD"])
        }
        switch request.path {
        case "/metrics":
            var response = OpsResponse(status: 200, body: node.metrics.exposition())
            response.headers = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Cache-Control", "no-store")]
            return response
        case "/healthz":
            return .text("ok\n")
        case "/readyz":
            let (ready, reasons) = readiness()
            return ready ? .text("ready\n") : .text("not ready: \(reasons.joined(separator: ", "))\n", status: 503)
        case "/api/status":
            return json(status())
        default:
            if let file = staticFiles?.response(for: request.path) { return file }
            return .notFound()
        }
    }

    /// Ready when Redis (commands and pub/sub) is reachable: without it this node serves only its own
    /// clients, so a load balancer should prefer others.
    func readiness() -> (Bool, [String]) {
        var reasons: [String] = []
        if !node.redis.isConnected { reasons.append("redis unreachable") }
        if !node.subscriber.isConnected { reasons.append("redis pub/sub unreachable") }
        return (reasons.isEmpty, reasons)
    }

    func status() -> NodeStatus {
        let docs = node.shards.map { $0.status() }.compactMap { try? $0.wait() }.flatMap { $0 }
            .sorted { $0.doc < $1.doc }
        let storm = node.storm.snapshot()
        return NodeStatus(
            node: node.config.nodeID, protocolVersion: 1, uptimeSeconds: Date().timeIntervalSince(startedAt),
            startedAt: startedAt, ready: readiness().0, connections: node.registry.count,
            presenceSessions: docs.reduce(0) { $0 + $1.localMembers },
            redis: .init(
                up: node.redis.isConnected, subscriberUp: node.subscriber.isConnected,
                endpoint: "\(node.redis.configuration.endpoint)", pendingCommands: node.redis.pendingCommandCount),
            reconnects: .init(ratePerSecond: storm.rate, storm: storm.inStorm, stormThreshold: node.config.stormThreshold),
            docs: docs.map(DocSummary.init))
    }

    private func json(_ value: some Encodable) -> OpsResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(value) else { return .text("encoding failed", status: 500) }
        return .json(Array(data))
    }
}
