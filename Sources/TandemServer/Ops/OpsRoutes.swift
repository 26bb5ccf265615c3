import Foundation
import NIOCore
import TandemCore
import TandemOpsHTTP

/// The ops plane's routes, called on libmicrohttpd's threads (so waiting briefly on a shard's or Redis's
/// future is fine here — never on an event loop).
///
/// | route | |
/// | --- | --- |
/// | `/metrics` | Prometheus text |
/// | `/healthz` | 200 while the process runs |
/// | `/readyz` | 200 when Redis (commands and pub/sub) is reachable, else 503 |
/// | `/api/status` | this node, every node of the cluster, docs, rates, 5 minutes of history |
/// | `/api/docs/{id}` | one doc: head clock, record and tombstone counts, members |
/// | `/api/docs/{id}/log?from=N&limit=L` | log entries after clock N |
/// | `/`, `/…` | the status page (`Web/status`) |
struct OpsRoutes: Sendable {
    let node: NodeContext
    let staticFiles: StaticFiles?

    init(node: NodeContext, webRoot: String?) {
        self.node = node
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
            // `?history=N` keeps the last N one-second samples (0: none) — a page that already has the
            // history only needs the newest.
            var status = status()
            if let limit = request.query["history"].flatMap(Int.init), limit >= 0 {
                status.history = Array(status.history.suffix(limit))
            }
            return json(status)
        default:
            if request.path.hasPrefix("/api/docs/") { return docRoute(request) }
            if request.path.hasPrefix("/api/") { return error(404, "not_found", "no such API route") }
            if let file = staticFiles?.response(for: request.path) { return file }
            return .notFound()
        }
    }

    /// Ready when Redis (commands and pub/sub) is reachable: without it this node serves only its own
    /// clients' presence, so a load balancer should prefer others.
    func readiness() -> (Bool, [String]) {
        var reasons: [String] = []
        if !node.redis.isConnected { reasons.append("redis unreachable") }
        if !node.subscriber.isConnected { reasons.append("redis pub/sub unreachable") }
        return (reasons.isEmpty, reasons)
    }

    // MARK: /api/status

    func status() -> NodeStatus {
        let docs = node.shards.map { $0.status() }.compactMap { try? $0.wait() }.flatMap { $0 }
            .sorted { $0.doc < $1.doc }
        let storm = node.storm.snapshot()
        let latest = node.sampler.latest
        let nodes = node.directory.nodes
        return NodeStatus(
            node: node.config.nodeID, protocolVersion: 1, uptimeSeconds: Date().timeIntervalSince(node.startedAt),
            startedAt: node.startedAt, ready: readiness().0, connections: node.registry.count,
            presenceSessions: docs.reduce(0) { $0 + $1.localMembers },
            redis: .init(
                up: node.redis.isConnected, subscriberUp: node.subscriber.isConnected,
                endpoint: "\(node.redis.configuration.endpoint)", pendingCommands: node.redis.pendingCommandCount),
            reconnects: .init(
                ratePerSecond: storm.rate, storm: storm.inStorm, stormThreshold: node.config.stormThreshold,
                stormPeakRate: storm.inStorm ? storm.peak : nil, stormStartedAt: storm.startedAt, lastStorm: storm.last),
            rates: latest,
            nodes: nodes.isEmpty ? [node.directoryEntry(docs: docs.count, sessions: 0)] : nodes,
            docs: docs.map { DocSummary($0, rates: node.sampler.rates(for: $0.doc)) },
            history: node.sampler.history)
    }

    // MARK: /api/docs

    private func docRoute(_ request: OpsRequest) -> OpsResponse {
        let rest = request.path.dropFirst("/api/docs/".count)
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard let first = parts.first, DocID.isValid(String(first)) else {
            return error(400, "bad_doc_id", "doc ids are 1–128 characters of [A-Za-z0-9._:-]")
        }
        let doc = String(first)
        guard node.redis.isConnected else { return error(503, "unavailable", "Redis is unreachable") }
        let loop = node.shards[0].eventLoop
        switch parts.count {
        case 1:
            do {
                let counts = try node.syncStore.counts(doc: doc, on: loop).wait()
                let members = try node.presenceStore.snapshot(doc: doc, on: loop).wait()
                let retainedFrom = try node.syncStore.log(doc: doc, from: 0, count: 1, on: loop).wait().first?.clock
                return json(
                    DocInfo(
                        doc: doc, head: counts.head, records: counts.records, tombstones: counts.tombstones,
                        retainedFrom: retainedFrom ?? counts.head + 1,
                        members: members.sorted { $0.sid < $1.sid }.map {
                            .init(sid: $0.sid, user: $0.user, name: $0.name, role: $0.role.rawValue, node: $0.node)
                        }))
            } catch {
                return self.error(503, "unavailable", "Redis read failed: \(error)")
            }
        case 2 where parts[1] == "log":
            guard let from = UInt64(request.query["from"] ?? "0") else {
                return error(400, "bad_request", "from must be a non-negative integer clock")
            }
            guard let limit = Int(request.query["limit"] ?? "100"), (1...ServerMessage.maxChunkItems).contains(limit) else {
                return error(400, "bad_request", "limit must be 1–\(ServerMessage.maxChunkItems)")
            }
            do {
                let head = try node.syncStore.head(doc: doc, on: loop).wait()
                let entries = try node.syncStore.log(doc: doc, from: from + 1, count: limit, on: loop).wait()
                var w = JSONWriter(capacity: 256 + entries.count * 128)
                w.openObject()
                w.key("doc"); w.string(doc); w.comma()
                w.key("head"); w.integer(head); w.comma()
                w.key("entries")
                w.array(entries) { w, entry in
                    w.openObject()
                    w.key("clock"); w.integer(entry.clock); w.comma()
                    w.key("ops"); w.write(entry.ops); w.comma()
                    w.key("by"); w.string(entry.by); w.comma()
                    w.key("id"); w.write(entry.pushID ?? .null); w.comma()
                    w.key("node"); w.string(entry.node); w.comma()
                    w.key("at"); w.integer(entry.committedAtMs)
                    w.closeObject()
                }
                w.comma()
                w.key("more"); w.bool((entries.last?.clock ?? from) < head)
                w.closeObject()
                return .json(w.bytes)
            } catch {
                return self.error(503, "unavailable", "Redis read failed: \(error)")
            }
        default:
            return error(404, "not_found", "use /api/docs/{id} or /api/docs/{id}/log")
        }
    }

    // MARK: Helpers

    private func error(_ status: Int, _ code: String, _ message: String) -> OpsResponse {
        var w = JSONWriter()
        w.openObject()
        w.key("error"); w.string(code); w.comma()
        w.key("message"); w.string(message)
        w.closeObject()
        return .json(w.bytes, status: status)
    }

    private func json(_ value: some Encodable) -> OpsResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        guard let data = try? encoder.encode(value) else { return .text("encoding failed", status: 500) }
        return .json(Array(data))
    }
}

/// `/api/status` body.
public struct NodeStatus: Encodable, Sendable {
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
        public var stormPeakRate: Double?
        public var stormStartedAt: Date?
        /// The last storm that ended (kept until the next one ends).
        var lastStorm: ReconnectStormMonitor.PastStorm?
    }

    public var node: String
    public var protocolVersion: Int
    public var uptimeSeconds: Double
    public var startedAt: Date
    public var ready: Bool
    public var connections: Int
    public var presenceSessions: Int
    public var redis: Redis
    var reconnects: Reconnects
    /// The latest one-second sample (rates).
    var rates: StatusSampler.Sample?
    /// Every node sharing this Redis (from their heartbeats).
    var nodes: [NodeDirectory.Entry]
    var docs: [DocSummary]
    /// The last five minutes, one sample per second.
    var history: [StatusSampler.Sample]
}

/// One doc in /api/status.
struct DocSummary: Encodable, Sendable {
    var doc: String
    var members: Int
    var editors: Int
    var viewers: Int
    var localMembers: Int
    var large: Bool
    var headClock: UInt64?
    var records: Int?
    var tombstones: Int?
    var presenceUpdatesPerSecond: Double
    var pushesPerSecond: Double
    var conflictRate: Double
    var syncLagP95Ms: Double?
    var largestOutboundBytes: Int

    init(_ status: DocStatus, rates: StatusSampler.DocRates) {
        doc = status.doc
        members = status.members
        editors = status.editors
        viewers = status.viewers
        localMembers = status.localMembers
        large = status.large
        headClock = status.headClock
        records = status.records
        tombstones = status.tombstones
        presenceUpdatesPerSecond = rates.presenceUpdatesPerSecond
        pushesPerSecond = rates.pushesPerSecond
        conflictRate = rates.conflictRate
        syncLagP95Ms = status.syncLagP95Ms
        largestOutboundBytes = rates.largestOutboundBytes
    }
}

/// `/api/docs/{id}` body.
struct DocInfo: Encodable {
    struct Member: Encodable {
        var sid: String
        var user: String
        var name: String
        var role: String
        var node: String
    }

    var doc: String
    var head: UInt64
    var records: Int
    var tombstones: Int
    var retainedFrom: UInt64
    var members: [Member]
}
