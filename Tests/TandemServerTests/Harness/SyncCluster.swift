import Foundation
import TandemCore
import TandemServer
import TandemTestSupport
import Testing

/// One redis-server and in-process Tandem nodes on it, plus every `SyncClient` made through it, so a
/// test can check the ordering guarantee on all of them at the end (`finish`).
final class SyncCluster: @unchecked Sendable {
    // @unchecked: `clients` is guarded by `lock`; the rest is immutable.
    let redis: RedisServerProcess
    let nodes: [InProcessNode]
    private let lock = NSLock()
    private var clientStore: [SyncClient] = []

    private init(redis: RedisServerProcess, nodes: [InProcessNode]) {
        self.redis = redis
        self.nodes = nodes
    }

    /// Starts Redis and `count` nodes. In suites marked `.cleanup`, the nodes are stopped and the clients
    /// dropped when the test ends, also when it fails before `finish`.
    static func start(
        nodes count: Int = 1, redisArguments: [String] = [], configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws -> SyncCluster {
        let redis = try RedisServerProcess(extraArguments: redisArguments)
        var nodes: [InProcessNode] = []
        for index in 0..<count {
            let node = try await InProcessNode.start(redis: redis.url, nodeID: "node-\(index)", configure: configure)
            Cleanup.current.add { await node.stop() }
            nodes.append(node)
        }
        let cluster = SyncCluster(redis: redis, nodes: nodes)
        Cleanup.current.add { cluster.dropClients() }
        return cluster
    }

    var clients: [SyncClient] { lock.withLock { clientStore } }

    /// Connects `user` (development mode) to node `node`.
    func client(_ user: String, node: Int = 0, query: String = "", receiveBufferBytes: Int? = nil) async throws
        -> SyncClient
    {
        let client = try await SyncClient.connect(
            nodes[node].url(user: user, query: query), name: user, receiveBufferBytes: receiveBufferBytes)
        track(client)
        return client
    }

    func track(_ client: SyncClient) { lock.withLock { clientStore.append(client) } }

    /// Every ordering violation seen by any client of the cluster.
    func orderingViolations() -> [String] { clients.flatMap { $0.orderingViolations() } }

    /// Records every ordering violation as a test issue and drops the clients (the `.cleanup` trait stops
    /// the nodes).
    func finish(sourceLocation: SourceLocation = #_sourceLocation) async {
        for violation in orderingViolations() {
            Issue.record("ordering guarantee broken: \(violation)", sourceLocation: sourceLocation)
        }
        dropClients()
    }

    func dropClients() {
        for client in clients where !client.socket.isClosed { client.socket.abort() }
    }

    /// Waits until every client's confirmed head of `doc` equals Redis's head.
    func waitConverged(_ doc: String, clients: [SyncClient]? = nil, timeout: Duration = .seconds(20)) async throws {
        let clients = clients ?? self.clients
        try await waitUntil(
            "every client at Redis's head \(SyncRedis.head(redis, doc)): \(clients.map { "\($0.name)=\($0.view(doc).head)" })",
            timeout: timeout
        ) {
            let head = SyncRedis.head(redis, doc)
            return clients.allSatisfy { $0.view(doc).head == head }
        }
    }

    /// Redis's records of `doc`, and checks (as test issues) that `client`'s equal them byte for byte.
    func expectRecordsEqualRedis(
        _ client: SyncClient, _ doc: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let stored = SyncRedis.records(redis, doc)
        let view = client.view(doc)
        #expect(view.complete, "\(client.name) knows \(doc) in full", sourceLocation: sourceLocation)
        let mine = view.serializedRecords
        if mine != stored {
            let differing = Set(mine.keys).union(stored.keys).filter { mine[$0] != stored[$0] }.sorted()
            let examples = differing.prefix(3).map { id in
                "\(id): client \(mine[id] ?? "-") vs redis \(stored[id] ?? "-")"
            }
            Issue.record(
                "\(client.name)'s records of \(doc) differ from Redis in \(differing.count) records, e.g. \(examples.joined(separator: "; "))",
                sourceLocation: sourceLocation)
        }
    }
}
