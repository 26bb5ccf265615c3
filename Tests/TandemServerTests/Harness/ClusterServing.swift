import Foundation
import TandemRedis
import TandemServer
import TandemTestSupport
import Testing

/// A real Redis Cluster (3 primaries, 3 replicas: `RedisClusterProcess`) with in-process Tandem nodes on
/// it, given every node of the cluster as seeds, plus the `SyncClient`s made through it (ordering is
/// checked on all of them at the end, as `SyncCluster` does for one Redis).
final class ClusterServing: @unchecked Sendable {
    // @unchecked: `clientStore` is guarded by `lock`; the rest is immutable.
    let cluster: RedisClusterProcess
    let nodes: [InProcessNode]
    private let lock = NSLock()
    private var clientStore: [SyncClient] = []

    private init(cluster: RedisClusterProcess, nodes: [InProcessNode]) {
        self.cluster = cluster
        self.nodes = nodes
    }

    /// Starts the cluster and `count` nodes; the test's `Cleanup.current` stops them (nodes first).
    static func start(nodes count: Int = 2, configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> ClusterServing {
        let cluster = try await offPool { try RedisClusterProcess() }
        Cleanup.current.add { await offPool { cluster.stop() } }
        var nodes: [InProcessNode] = []
        for index in 0..<count {
            let node = try await InProcessNode.start(
                redis: cluster.seedURLs.joined(separator: ","), nodeID: "node-\(index)", configure: configure)
            Cleanup.current.add { await node.stop() }
            nodes.append(node)
        }
        let serving = ClusterServing(cluster: cluster, nodes: nodes)
        Cleanup.current.add { serving.dropClients() }
        return serving
    }

    /// Ports of the primaries serving slots, sorted.
    func primaryPorts() async -> [Int] {
        await offPool { self.cluster.clusterNodes().filter { $0.isPrimary && !$0.isFailing && !$0.slots.isEmpty }.map(\.port).sorted() }
    }

    /// `count` doc ids (`prefix0`, `prefix1`, …) whose slot the primary on `port` serves.
    func docs(ownedBy port: Int, count: Int, prefix: String) async -> [String] {
        await offPool {
            let ranges = self.cluster.clusterNodes().first { $0.port == port }?.slots ?? []
            var docs: [String] = []
            var index = 0
            while docs.count < count {
                let doc = "\(prefix)\(index)"
                if ranges.contains(where: { $0.contains(Self.slot(of: doc)) }) { docs.append(doc) }
                index += 1
            }
            return docs
        }
    }

    /// `count` doc ids on each primary serving slots, in `primaryPorts()` order (`docs(ownedBy:)` of each).
    func docsOnEveryPrimary(count: Int = 1, prefix: String) async -> [String] {
        var docs: [String] = []
        for port in await primaryPorts() { docs += await self.docs(ownedBy: port, count: count, prefix: prefix) }
        return docs
    }

    /// The port of a replica of the primary on `port`.
    func replica(of port: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Int {
        try #require(await offPool { self.cluster.replicaPorts(ofPrimary: port) }.first, sourceLocation: sourceLocation)
    }

    /// Kills the primary on `port` once its replica on `replica` has all of its writes (replication is
    /// asynchronous: a write the primary acknowledged and died with before its replica had it is lost, and
    /// these tests are about continuity). Callers pause that primary's writers first.
    func kill(primary port: Int, replicatedTo replica: Int) async throws {
        let primaryNode = try #require(cluster.node(port: port))
        try await waitUntil("the replica has all of its primary's writes", timeout: .seconds(20)) {
            await offPool { self.cluster.replicaHasAllWrites(primary: port, replica: replica) }
        }
        await offPool { primaryNode.kill() }
    }

    /// Waits until the replica on `port` has been promoted: a primary serving slots.
    func waitPromoted(_ port: Int) async throws {
        try await waitUntil("replica \(port) promoted", timeout: .seconds(60), poll: .milliseconds(100)) {
            await offPool { self.cluster.isServingPrimary(port: port) }
        }
    }

    /// Migrates `slot` from the primary on `source` to the one on `target`: `CLUSTER SETSLOT`
    /// IMPORTING/MIGRATING, `MIGRATE` of its keys, `SETSLOT NODE` (`RedisClusterProcess.migrateSlot`).
    func migrate(slot: Int, from source: Int, to target: Int) async throws {
        try await offPool { try self.cluster.migrateSlot(slot, from: source, to: target) }
    }

    /// How many connections subscribe the sharded channel `channel` on the primary that serves `doc`.
    func shardSubscribers(_ channel: String, of doc: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Int? {
        let owner = try #require(await owner(of: doc), sourceLocation: sourceLocation)
        let reply = await offPool { owner.command("PUBSUB", "SHARDNUMSUB", channel) }
        return reply.split(whereSeparator: \.isNewline).last.flatMap { Int($0) }
    }

    /// Expects that every primary on `ports` published sharded (`SPUBLISH`, from the scripts) and none ran
    /// a classic `PUBLISH`.
    func expectShardedPublishingOnly(_ ports: [Int], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for port in ports {
            let node = try #require(cluster.node(port: port), sourceLocation: sourceLocation)
            let stats = await offPool { node.command("INFO", "commandstats") }
            #expect(stats.contains("cmdstat_spublish:"), "primary \(port) published sharded", sourceLocation: sourceLocation)
            #expect(!stats.contains("cmdstat_publish:"), "primary \(port) ran a classic PUBLISH", sourceLocation: sourceLocation)
        }
    }

    /// The slot of every key and of the channel of `doc` (all hash-tagged `{doc}`).
    static func slot(of doc: String) -> Int { ClusterSlot.slot(forKey: RedisKeys.channel(doc)) }

    /// The redis-server that serves `doc` now (as the cluster's map says).
    func owner(of doc: String) async -> RedisServerProcess? {
        await offPool { self.cluster.primaryPort(forSlot: Self.slot(of: doc)).flatMap { self.cluster.node(port: $0) } }
    }

    /// Redis's head of `doc` on its owner.
    func head(_ doc: String) async -> UInt64 {
        guard let owner = await owner(of: doc) else { return 0 }
        return await offPool { SyncRedis.head(owner, doc) }
    }

    /// Connects `user` (development mode) to node `node`.
    func client(_ user: String, node: Int) async throws -> SyncClient {
        let client = try await SyncClient.connect(nodes[node].url(user: user), name: user)
        lock.withLock { clientStore.append(client) }
        return client
    }

    var clients: [SyncClient] { lock.withLock { clientStore } }

    /// Waits until every client of `doc` is at Redis's head.
    func waitConverged(_ doc: String, clients: [SyncClient], timeout: Duration = .seconds(30)) async throws {
        var head: UInt64 = 0
        try await waitUntil("every client of \(doc) at Redis's head \(head): \(clients.map { "\($0.name)=\($0.view(doc).head)" })", timeout: timeout) {
            head = await self.head(doc)
            return head > 0 && clients.allSatisfy { $0.view(doc).head == head }
        }
    }

    /// Checks `doc`'s log on its owner: clocks 1…head exactly once each, no push committed twice, and the
    /// records every client holds are Redis's.
    func expectIntactLog(_ doc: String, clients: [SyncClient], sourceLocation: SourceLocation = #_sourceLocation) async {
        guard let owner = await owner(of: doc) else {
            Issue.record("no owner for \(doc)", sourceLocation: sourceLocation)
            return
        }
        let (head, log, twice, records) = await offPool {
            (SyncRedis.head(owner, doc), SyncRedis.log(owner, doc), SyncRedis.pushesCommittedTwice(owner, doc), SyncRedis.records(owner, doc))
        }
        #expect(head > 0, "\(doc) has commits", sourceLocation: sourceLocation)
        #expect(log.map(\.clock) == Array(1...max(1, head)), "\(doc): the log holds clocks 1…\(head) once each", sourceLocation: sourceLocation)
        #expect(twice.isEmpty, "\(doc): pushes committed twice: \(twice)", sourceLocation: sourceLocation)
        for client in clients {
            #expect(client.view(doc).serializedRecords == records, "\(client.name)'s records of \(doc) are Redis's", sourceLocation: sourceLocation)
            #expect(client.view(doc).liveClocks.count == Int(head), "\(client.name) got every clock of \(doc) once", sourceLocation: sourceLocation)
        }
    }

    /// Records every ordering violation any client saw as a test issue and drops the clients.
    func finish(sourceLocation: SourceLocation = #_sourceLocation) {
        for violation in clients.flatMap({ $0.orderingViolations() }) {
            Issue.record("ordering guarantee broken: \(violation)", sourceLocation: sourceLocation)
        }
        dropClients()
    }

    func dropClients() {
        for client in clients where !client.socket.isClosed { client.socket.abort() }
    }
}

/// Runs blocking work (redis-cli, process start-up) on a thread of its own, off the cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}
