import Foundation
import NIOCore
import TandemCore
import TandemOpsHTTP
import TandemRedis

/// The ops plane's routes. They run on libmicrohttpd's polling threads, each shared by many connections,
/// so nothing here waits: whatever needs Redis or the shards is answered with `OpsReply.deferred` (the
/// connection is suspended, the future's callback answers, the HTTP server bounds how many wait and for
/// how long), and large JSON is encoded on the ops thread (`respond(building:)`), never on an event loop.
///
/// | route | |
/// | --- | --- |
/// | `/metrics` | Prometheus text: Tandem's metrics and the standard process metrics |
/// | `/healthz` | 200 while the process runs (touches nothing shared) |
/// | `/readyz` | 200 when Redis (commands and pub/sub) is reachable, else 503 |
/// | `/api/status?history=N` | this node, every node of the cluster, docs, rates, 5 minutes of history |
/// | `/api/docs/{id}` | one doc: head clock, record and tombstone counts, members (`--ops-token`) |
/// | `/api/docs/{id}/log?from=N&limit=L` | log entries after clock N (`--ops-token`) |
/// | `/`, `/…` | the status page (`Web/status`) |
///
/// URL parsing and range checks are `OpsRoute.parse` (TandemCore, pure); errors are JSON
/// `{"error":code,"message":…}` with 400, 401, 404, 421 or 503.
struct OpsRoutes: Sendable {
    /// What the routes read and call, handed over explicitly: they hold no `NodeContext`.
    struct Dependencies: Sendable {
        var settings: Settings
        /// Tandem's metrics, for `/metrics`.
        var nodeMetrics: TandemMetrics
        var redis: any RedisCommandClient
        var subscriber: any RedisChannelSubscriber
        var stores: Stores
        var status: StatusSource
    }

    /// The configuration the routes enforce and show (a slice of `ServerConfiguration`).
    struct Settings: Sendable {
        /// `--web-root`: served at `/`.
        var webRoot: String?
        /// `--ops-token`: required by the document routes when set.
        var token: String?
        /// `--ops-max-list-items`: docs in /api/status, members in /api/docs/{id}.
        var maxListItems = 1_000
        /// `--storm-threshold`, shown with the reconnect rate.
        var stormThreshold: Double

        init(_ config: ServerConfiguration) {
            webRoot = config.webRoot
            token = config.opsToken
            maxListItems = config.opsMaxListItems
            stormThreshold = config.stormThreshold
        }
    }

    /// Where the document routes read (and restore and fork write).
    struct Stores: Sendable {
        var sync: SyncStore
        var presence: PresenceStore
        var history: HistoryStore
        var historyService: HistoryService
        /// Told about commits the ops port writes (restore, fork): no node may hold those docs open, so
        /// this node seals them (docs/history.md). `/api/status` reads each doc's history size from it.
        var sealer: HistorySealer
    }

    /// What `/api/status` shows besides Redis: the node itself, its shards and rooms (asked on their
    /// loops), and what housekeeping samples.
    struct StatusSource: Sendable {
        var local: LocalNode
        var clock: NodeClock
        var shards: DocShards
        var yjsRooms: YjsRooms
        var sampler: StatusSampler
        var directory: NodeDirectory
        var schemas: SchemaStore
    }

    /// The web root's files, tried in order: for the whole `Web/` tree, `Web/status` first (the status page
    /// at `/`, its assets beside it) and then `Web/` itself (`/demo/`, `/client/tandem.js`, `/status/`);
    /// for any other directory, that directory alone.
    let staticFiles: [StaticFiles]
    let metrics: OpsMetrics
    /// `--ops-token`: required by the document routes when set.
    let token: String?
    /// `--ops-max-list-items`: docs in /api/status, members in /api/docs/{id}.
    let maxListItems: Int
    private let stormThreshold: Double
    private let nodeMetrics: TandemMetrics
    private let redis: any RedisCommandClient
    private let subscriber: any RedisChannelSubscriber
    let stores: Stores
    private let source: StatusSource
    private let statusCache = DocStatusCache()
    private let routeLimits = OpsRoute.Limits(maxHistory: StatusSampler.historySeconds)

    /// Log entries read from Redis per round trip of `/log`: with entries of up to `--max-push-bytes`
    /// each, this bounds what one request holds in memory before the byte budget stops it.
    static let logBatch = 16
    /// A `/log` page stops after about this many bytes of entries (`more` is then true), like the data
    /// plane's catch-up chunks.
    static let logPageBytes = ServerMessage.maxChunkBytes

    init(dependencies: Dependencies, metrics: OpsMetrics) {
        let settings = dependencies.settings
        self.staticFiles = settings.webRoot.map(Self.staticLayers(webRoot:)) ?? []
        self.metrics = metrics
        self.token = settings.token
        self.maxListItems = settings.maxListItems
        self.stormThreshold = settings.stormThreshold
        self.nodeMetrics = dependencies.nodeMetrics
        self.redis = dependencies.redis
        self.subscriber = dependencies.subscriber
        self.stores = dependencies.stores
        self.source = dependencies.status
    }

    /// The layers of ``staticFiles`` for `webRoot` (issue 12: `make run` serves the demo next to the status page).
    static func staticLayers(webRoot: String) -> [StaticFiles] {
        let status = webRoot + "/status"
        if FileManager.default.fileExists(atPath: status + "/index.html") {
            return [StaticFiles(root: status), StaticFiles(root: webRoot)]
        }
        return [StaticFiles(root: webRoot)]
    }

    func handle(_ request: OpsRequest) -> OpsReply {
        guard request.method == "GET" || request.method == "HEAD" || request.method == "POST" else {
            return .response(.methodNotAllowed(allowed: ["GET", "HEAD"]), label: "other")
        }
        let route: OpsRoute
        switch OpsRoute.parse(path: request.path, query: request.query, limits: routeLimits) {
        case .failure(let failure):
            if failure.status == 400 { metrics.rejected(.badRequest) }
            return .response(.jsonError(status: failure.status, code: failure.code, message: failure.message), label: "other")
        case .success(let parsed):
            route = parsed
        }
        // Restore and fork change docs: POST only; everything else is read with GET or HEAD.
        guard route.isWrite == (request.method == "POST") else {
            return .response(.methodNotAllowed(allowed: route.isWrite ? ["POST"] : ["GET", "HEAD"]), label: "other")
        }
        if route.isWrite, token == nil {
            return .response(
                .jsonError(status: 403, code: "read_only", message: "restore and fork need an --ops-token: without one the ops API is read-only"),
                label: route.label)
        }
        if route.isDocumentRoute, let token,
           !OpsAuthorization.allows(authorization: request.header("authorization"), token: token)
        {
            metrics.rejected(.unauthorized)
            var response = OpsResponse.jsonError(
                status: 401, code: "unauthorized", message: "the document API needs Authorization: Bearer <the --ops-token>")
            response.headers.append(("WWW-Authenticate", "Bearer realm=\"tandem-ops\""))
            return .response(response, label: route.label)
        }

        switch route {
        case .metrics:
            var response = OpsResponse(status: 200, body: nodeMetrics.exposition() + ProcessMetrics.exposition())
            response.headers = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Cache-Control", "no-store")]
            return .response(response, label: route.label)
        case .health:
            return .response(.text("ok\n"), label: route.label)
        case .ready:
            let (ready, reasons) = readiness()
            let response: OpsResponse = ready ? .text("ready\n") : .text("not ready: \(reasons.joined(separator: ", "))\n", status: 503)
            return .response(response, label: route.label)
        case .status(let history):
            return .deferred(label: route.label) { responder in status(history: history, responder) }
        case .doc(let doc):
            guard redis.isAvailable(forKey: RedisKeys.channel(doc)) else { return .response(redisDown, label: route.label) }
            return .deferred(label: route.label) { responder in docInfo(doc, responder) }
        case .docLog(let doc, let from, let limit):
            guard redis.isAvailable(forKey: RedisKeys.channel(doc)) else { return .response(redisDown, label: route.label) }
            return .deferred(label: route.label) { responder in docLog(doc, from: from, limit: limit, responder) }
        case .docAt, .docVersions, .docRestore, .docFork:
            guard redis.isConnected else { return .response(redisDown, label: route.label) }
            return .deferred(label: route.label) { responder in historyRoute(route, responder) }
        case .file(let path):
            // A layer answers 404 itself for a path it rejects (`..`, dotfiles), so a later layer never
            // sees it; nil means "no such file here", and the next layer is asked.
            for files in staticFiles {
                if let file = files.response(for: path) { return .response(file, label: route.label) }
            }
            return .response(.notFound(), label: "other")
        }
    }

    /// Ready when Redis (commands and pub/sub) is reachable: without it this node serves only its own
    /// clients' presence, so a load balancer should prefer others. In a cluster, while at least one
    /// shard is: a shard failing over makes only its own docs unavailable, on every node alike, and
    /// taking every node out of the balancer for it would refuse every doc (issue 11).
    func readiness() -> (Bool, [String]) {
        var reasons: [String] = []
        let commands = redis.isConnected || ((redis as? RedisClusterClient)?.shards.contains(where: \.connected) ?? false)
        let pubsub = subscriber.isConnected
            || (redis.isClusterMode && ((subscriber as? RedisClusterSubscriber)?.isPartlyConnected ?? false))
        if !commands { reasons.append("redis unreachable") }
        if !pubsub { reasons.append("redis pub/sub unreachable") }
        return (reasons.isEmpty, reasons)
    }

    var redisDown: OpsResponse {
        .jsonError(status: 503, code: "unavailable", message: "Redis is unreachable")
    }

    var loop: EventLoop { source.shards.all[0].eventLoop }

    // MARK: /api/status

    private func status(history: Int?, _ responder: OpsResponder) {
        let yjsRooms = EventLoopFuture.whenAllSucceed(source.yjsRooms.shards.map { $0.status() }, on: loop).map { $0.flatMap { $0 } }
        statusCache.docs(shards: source.shards.all, nowMs: source.clock.nowMs(), on: loop).and(yjsRooms).whenComplete { result in
            switch result {
            case .success(let (docs, rooms)):
                // Sorting and encoding (O(docs)) happen on the ops thread, not on this event loop.
                responder.respond { json(status(docs: docs, yjsRooms: rooms, history: history)) }
            case .failure(let failure):
                responder.respond(.jsonError(status: 503, code: "unavailable", message: "shards did not answer: \(failure)"))
            }
        }
    }

    func status(docs: [DocStatus], yjsRooms: [YjsRoomStatus] = [], history: Int?) -> NodeStatus {
        // The largest docs first when there are more than the list may hold; shown sorted by id.
        let listed = docs.count <= maxListItems
            ? docs.sorted { $0.doc < $1.doc }
            : docs.sorted { ($0.members, $1.doc) > ($1.members, $0.doc) }.prefix(maxListItems).sorted { $0.doc < $1.doc }
        let storm = source.local.storm.snapshot()
        let nodes = source.directory.nodes
        var samples = source.sampler.history
        if let history { samples = Array(samples.suffix(history)) }
        return NodeStatus(
            node: source.local.nodeID, protocolVersion: 1, uptimeSeconds: Date().timeIntervalSince(source.local.startedAt),
            startedAt: source.local.startedAt, ready: readiness().0,
            connections: source.local.connections,
            // Counts of sessions in memory: the sum cannot approach Int.max.
            presenceSessions: docs.reduce(0) { $0 + $1.localMembers } + yjsRooms.reduce(0) { $0 + $1.localAwareness },
            redis: .init(
                up: redis.isConnected, subscriberUp: subscriber.isConnected,
                endpoint: redis.endpointDescription, pendingCommands: redis.pendingCommandCount,
                cluster: redis.isClusterMode,
                shards: ((redis as? RedisClusterClient)?.shards ?? []).prefix(maxListItems).map(NodeStatus.Redis.Shard.init)),
            reconnects: .init(
                ratePerSecond: storm.rate, storm: storm.inStorm, stormThreshold: stormThreshold,
                stormPeakRate: storm.inStorm ? storm.peak : nil, stormStartedAt: storm.startedAt, lastStorm: storm.last),
            rates: source.sampler.latest,
            nodes: nodes.isEmpty ? [source.local.directoryEntry(docs: docs.count, sessions: 0)] : nodes,
            docs: listed.map { doc in
                var summary = DocSummary(doc, rates: source.sampler.rates(for: doc.doc))
                summary.historyBytes = stores.sealer.historyBytes(doc.doc)
                return summary
            },
            docsTotal: docs.count,
            schemas: source.schemas.current.schemas.map(SchemaSummary.init),
            yjsRooms: Array(yjsRooms.sorted { ($0.localMembers, $1.room) > ($1.localMembers, $0.room) }.prefix(maxListItems))
                .sorted { $0.room < $1.room },
            yjsRoomsTotal: yjsRooms.count,
            history: samples)
    }

    // MARK: /api/docs

    private func docInfo(_ doc: String, _ responder: OpsResponder) {
        let loop = self.loop
        let counts = stores.sync.counts(doc: doc, on: loop)
        let members = stores.presence.snapshot(doc: doc, on: loop)
        let first = stores.sync.log(doc: doc, from: 0, count: 1, on: loop)
        let history = stores.history.size(doc: doc, on: loop)
        counts.and(members).and(first).and(history).whenComplete { result in
            switch result {
            case .success(let (((counts, members), first), history)):
                responder.respond {
                    let listed = members.sorted { $0.sid < $1.sid }.prefix(maxListItems)
                    return json(
                        DocInfo(
                            doc: doc, head: counts.head, records: counts.records, tombstones: counts.tombstones,
                            // A head from Redis is not trusted to leave room for + 1.
                            retainedFrom: first.entries.first?.clock ?? Self.after(counts.head),
                            members: listed.map {
                                .init(sid: $0.sid, user: $0.user, name: $0.name, role: $0.role.rawValue, node: $0.node)
                            },
                            membersTotal: members.count,
                            history: .init(
                                bytes: history.bytes, segments: history.segments, versions: history.checkpoints,
                                sealedThrough: history.sealed)))
                }
            case .failure(let failure):
                responder.respond(readFailed(failure))
            }
        }
    }

    /// `clock + 1`, or `clock` itself at the top of the range (a corrupt value in Redis must not trap).
    static func after(_ clock: UInt64) -> UInt64 {
        clock < OpsRoute.maxClock ? clock + 1 : clock
    }

    private func docLog(_ doc: String, from: UInt64, limit: Int, _ responder: OpsResponder) {
        let loop = self.loop
        stores.sync.head(doc: doc, on: loop).whenComplete { result in
            switch result {
            case .success(let head):
                var page = LogPage(doc: doc, head: head, from: from, limit: limit, byteBudget: Self.logPageBytes)
                readLog(into: &page, responder)
            case .failure(let failure):
                responder.respond(readFailed(failure))
            }
        }
    }

    /// Reads `logBatch` entries at a time until the page is full (by count or bytes) or the log ends —
    /// or until nobody waits for the page any more (timed out): a request that got its 503 must not keep
    /// reading from Redis behind the pending limit's back.
    private func readLog(into page: inout LogPage, _ responder: OpsResponder) {
        guard responder.isWaiting else { return }
        guard let (start, count) = page.nextRead(batch: Self.logBatch) else {
            let finished = page
            responder.respond(building: { .json(finished.encoded()) })
            return
        }
        let current = page
        let (loop, history, doc, head) = (self.loop, stores.history, page.doc, page.head)
        stores.sync.log(doc: page.doc, from: start, count: count, on: loop).flatMap { read -> EventLoopFuture<SyncStore.LogRead> in
            // Before the live log's start (trimmed): the sealed history holds it (issue 15).
            if let first = read.entries.first?.clock, first <= start { return loop.makeSucceededFuture(read) }
            if read.entries.isEmpty, start > head { return loop.makeSucceededFuture(read) }
            history.metrics.read("log")
            return history.sealedLog(doc: doc, from: start, count: count, on: loop).map { sealed in
                sealed.isEmpty ? read : SyncStore.LogRead(entries: sealed, truncated: true)
            }
        }.whenComplete { result in
            switch result {
            case .success(let read):
                var next = current
                next.append(read.entries, batch: count, truncated: read.truncated)
                readLog(into: &next, responder)
            case .failure(let failure):
                responder.respond(readFailed(failure))
            }
        }
    }

    func readFailed(_ failure: Error) -> OpsResponse {
        .jsonError(status: 503, code: "unavailable", message: "Redis read failed: \(failure)")
    }

    // MARK: Helpers

    func json(_ value: some Encodable) -> OpsResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        guard let data = try? encoder.encode(value) else { return .text("encoding failed", status: 500) }
        return .json(Array(data))
    }
}

/// One page of `/api/docs/{id}/log`, filled batch by batch: stops at `limit` entries, at about
/// `byteBudget` bytes of encoded entries (always at least one entry), or at the end of the log. Pure.
struct LogPage: Sendable {
    let doc: String
    let head: UInt64
    let limit: Int
    let byteBudget: Int
    /// The clock the next read starts after.
    private(set) var after: UInt64
    private(set) var entries: [UInt8] = []
    private(set) var count = 0
    private(set) var done = false

    init(doc: String, head: UInt64, from: UInt64, limit: Int, byteBudget: Int) {
        self.doc = doc
        self.head = head
        self.limit = limit
        self.byteBudget = byteBudget
        self.after = from
    }

    /// Where and how much to read next (`from` inclusive), or nil when the page is complete.
    func nextRead(batch: Int) -> (from: UInt64, count: Int)? {
        // `after` is at most OpsRoute.maxClock (checked by the parser, or a clock read back), so + 1 is safe;
        // a corrupt clock from Redis at the top of the range ends the page instead.
        guard !done, count < limit, after < OpsRoute.maxClock else { return nil }
        return (after + 1, min(batch, limit - count))
    }

    /// Adds a batch read with `nextRead` (asked for `batch` entries; `truncated`: the read stopped at its
    /// byte budget, so fewer entries do not mean the log ended).
    mutating func append(_ batch: [CommitNotice], batch asked: Int, truncated: Bool = false) {
        for entry in batch {
            guard count < limit, entry.clock > after else { continue }
            var w = JSONWriter(capacity: 256)
            w.openObject()
            w.key("clock"); w.integer(entry.clock); w.comma()
            w.key("ops"); w.write(entry.ops); w.comma()
            w.key("by"); w.string(entry.by); w.comma()
            w.key("id"); w.write(entry.pushID ?? .null); w.comma()
            w.key("node"); w.string(entry.node); w.comma()
            w.key("at"); w.integer(entry.committedAtMs)
            w.closeObject()
            if count > 0, entries.count + 1 + w.bytes.count > byteBudget {
                done = true
                return
            }
            if count > 0 { entries.append(UInt8(ascii: ",")) }
            entries.append(contentsOf: w.bytes)
            count += 1
            after = min(entry.clock, OpsRoute.maxClock)
        }
        if batch.count < asked && !truncated { done = true }  // the log ended
    }

    /// The response body: `{"doc":…,"head":…,"entries":[…],"more":…}`.
    func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: entries.count + 128)
        w.openObject()
        w.key("doc"); w.string(doc); w.comma()
        w.key("head"); w.integer(head); w.comma()
        w.key("entries"); w.openArray(); w.raw(entries); w.closeArray(); w.comma()
        w.key("more"); w.bool(after < head)
        w.closeObject()
        return w.bytes
    }
}

/// `/api/status` body.
public struct NodeStatus: Encodable, Sendable {
    public struct Redis: Codable, Sendable {
        public var up: Bool
        public var subscriberUp: Bool
        public var endpoint: String
        public var pendingCommands: Int
        /// A Redis Cluster (sharded pub/sub), not a single server.
        public var cluster: Bool
        /// A cluster's shards in slot-map order (the `shard` label of `tandem_redis_shard_*`), each with
        /// its primary and whether this node's connection to it is up; empty for a single server. A shard
        /// that is down (failing over) makes only its own docs refuse pushes.
        public var shards: [Shard]

        public struct Shard: Codable, Sendable {
            public var index: Int
            public var primary: String
            public var slots: Int
            public var up: Bool

            init(_ state: ClusterShardState) {
                index = state.index
                primary = state.primary.description
                slots = state.slots
                up = state.connected
            }
        }
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
    /// At most `--ops-max-list-items` docs (the largest by members when there are more).
    var docs: [DocSummary]
    /// Docs with members on this node, listed or not.
    var docsTotal: Int
    /// The record schemas in force (`--schema-dir`), in the order docs are matched against them.
    var schemas: [SchemaSummary]
    /// Yjs rooms (`/yjs/{room}`, separate from the docs of the same ids) with clients on this node: at most
    /// `--ops-max-list-items` (the most clients first), and how many there are.
    var yjsRooms: [YjsRoomStatus]
    var yjsRoomsTotal: Int
    /// The last five minutes, one sample per second.
    var history: [StatusSampler.Sample]
}

/// One record-schema file in /api/status: which docs it applies to, its version and its record types.
struct SchemaSummary: Encodable, Sendable {
    struct RecordType: Encodable, Sendable {
        var name: String
        var idPrefix: String?
        var type: String?
    }

    var file: String
    var docs: [String]
    var version: Int
    var recordTypes: [RecordType]
    var otherRecords: String

    init(_ schema: DocSchema) {
        file = schema.source
        docs = schema.docs
        version = schema.version
        recordTypes = schema.recordTypes.map { RecordType(name: $0.name, idPrefix: $0.idPrefix, type: $0.typeField) }
        otherRecords = schema.allowsOtherRecords ? "allow" : "reject"
    }
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
    /// Bytes of Redis memory the doc's version history takes (after this node's last seal of it; sampled).
    var historyBytes: Int?

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
    /// At most `--ops-max-list-items` members (by session id).
    var members: [Member]
    var membersTotal: Int
    /// Version history (docs/history.md): Redis bytes (sampled), sealed segments, versions (checkpoints),
    /// and the last sealed clock (nil: no history yet).
    struct History: Encodable {
        var bytes: Int
        var segments: Int
        var versions: Int
        var sealedThrough: UInt64?
    }

    var history: History
}
