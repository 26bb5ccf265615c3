import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real Redis Cluster for tests: `primaries × (1 + replicasPerPrimary)` `redis-server
/// --cluster-enabled yes` children (each a ``RedisServerProcess``: free port, temporary folder, stopped
/// on `deinit` and killed at exit), joined with `redis-cli --cluster create … --cluster-replicas N
/// --cluster-yes`, and returned only once every node says `cluster_state:ok`, agrees on the slot map,
/// and every replica's link to its primary is up (a replica that never synced cannot be promoted).
///
/// ```swift
/// let cluster = try RedisClusterProcess()          // 3 primaries, 3 replicas
/// let client = try RedisClusterClient(urls: cluster.seedURLs)
/// cluster.node(port: cluster.primaryPort(forSlot: 42)!)!.kill()
/// ```
///
/// Every method blocks (redis-cli, waits): call them off the cooperative pool.
public final class RedisClusterProcess: @unchecked Sendable {
    // @unchecked: every stored property is an immutable `let`; RedisServerProcess is thread-safe.

    /// One line of `CLUSTER NODES`.
    public struct NodeInfo: Sendable, Equatable {
        public var id: String
        public var port: Int
        public var isPrimary: Bool
        /// `fail` or `fail?` is among the flags.
        public var isFailing: Bool
        /// The primary's id for a replica, else `nil`.
        public var primaryID: String?
        /// Slot ranges served (primaries), without migration markers.
        public var slots: [ClosedRange<Int>]
    }

    /// Every node, in creation order (the first `primaries` were created as primaries).
    public let nodes: [RedisServerProcess]
    /// `cluster-node-timeout` in milliseconds: failure detection takes about this long.
    public let nodeTimeoutMs: Int
    private let primaryCount: Int

    /// `redis://127.0.0.1:PORT` of every node.
    public var seedURLs: [String] { nodes.map(\.url) }

    /// Starts the nodes, creates the cluster and waits (up to 30 s) until it is healthy.
    /// - Parameters:
    ///   - primaries: Primaries (at least 3: `redis-cli --cluster create` requires it).
    ///   - replicasPerPrimary: Replicas of each primary.
    ///   - nodeTimeoutMs: `cluster-node-timeout`; small so failovers in tests take seconds, large
    ///     enough that a loaded machine does not fail nodes spuriously.
    public init(primaries: Int = 3, replicasPerPrimary: Int = 1, nodeTimeoutMs: Int = 2000) throws {
        precondition(primaries >= 3, "redis-cli --cluster create needs at least 3 primaries")
        self.nodeTimeoutMs = nodeTimeoutMs
        self.primaryCount = primaries
        let arguments = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "\(nodeTimeoutMs)",
            // Replicas sync at once instead of after the default 5 s, so they can be promoted sooner.
            "--repl-diskless-sync-delay", "0",
        ]
        var started: [RedisServerProcess] = []
        for _ in 0..<(primaries * (1 + replicasPerPrimary)) {
            started.append(try RedisServerProcess(extraArguments: arguments))
        }
        nodes = started
        let create =
            ["--cluster", "create"] + started.map { "127.0.0.1:\($0.port)" }
            + ["--cluster-replicas", "\(replicasPerPrimary)", "--cluster-yes"]
        let output = started[0].command(arguments: create)
        guard output.contains("[OK] All 16384 slots covered") else {
            throw RedisServerProcess.StartError(description: "redis-cli --cluster create failed:\n\(output)")
        }
        guard waitUntilHealthy(timeout: 30) else {
            throw RedisServerProcess.StartError(description: "the cluster did not become healthy:\n\(describe())")
        }
    }

    /// Stops every node gracefully.
    public func stop() {
        for node in nodes { node.stop() }
    }

    /// The node listening on `port`.
    public func node(port: Int) -> RedisServerProcess? {
        nodes.first { $0.port == port }
    }

    /// The nodes that are running.
    public var runningNodes: [RedisServerProcess] { nodes.filter { $0.pid != nil } }

    /// `CLUSTER NODES` as seen by the first running node (or `via`).
    public func clusterNodes(via: RedisServerProcess? = nil) -> [NodeInfo] {
        guard let source = via ?? runningNodes.first else { return [] }
        return Self.parseNodes(source.command("CLUSTER", "NODES"))
    }

    /// The port of the primary serving `slot`, as the first running node sees it.
    public func primaryPort(forSlot slot: Int) -> Int? {
        clusterNodes().first { $0.isPrimary && !$0.isFailing && $0.slots.contains { $0.contains(slot) } }?.port
    }

    /// The ports of the replicas of the primary on `port`.
    public func replicaPorts(ofPrimary port: Int) -> [Int] {
        let nodes = clusterNodes()
        guard let primary = nodes.first(where: { $0.port == port }) else { return [] }
        return nodes.filter { $0.primaryID == primary.id && !$0.isFailing }.map(\.port)
    }

    /// Whether the node on `port` is a primary serving slots, as the first running node sees it (a
    /// promoted replica, once gossip has reached that node).
    public func isServingPrimary(port: Int) -> Bool {
        clusterNodes().contains { $0.port == port && $0.isPrimary && !$0.slots.isEmpty }
    }

    /// Whether the replica on `replica` has every write of its primary on `primary` (their replication
    /// offsets are equal). Replication is asynchronous: a write the primary acknowledged and died with
    /// before its replica had it is lost, so a test about continuity waits for this before a kill.
    public func replicaHasAllWrites(primary: Int, replica: Int) -> Bool {
        guard let primaryNode = node(port: primary), let replicaNode = node(port: replica) else { return false }
        let offset = RedisInfo.field(primaryNode.command("INFO", "replication"), "master_repl_offset")
        return offset != nil && offset == RedisInfo.field(replicaNode.command("INFO", "replication"), "slave_repl_offset")
    }

    /// The node id of the node on `port`.
    public func nodeID(port: Int) -> String? {
        node(port: port)?.command("CLUSTER", "MYID")
    }

    /// Whether every running node reports `cluster_state:ok`, all of them agree on every non-failed
    /// node's role, primary and slots (gossip has converged: right after `--cluster create` or a
    /// failover some nodes still list replicas as slot-less primaries), exactly `primaries` primaries
    /// serve all 16384 slots, and every running replica's link to its primary is up.
    public func isHealthy() -> Bool {
        let running = runningNodes
        guard !running.isEmpty else { return false }
        var views: Set<String> = []
        for node in running {
            guard node.command("CLUSTER", "INFO").contains("cluster_state:ok") else { return false }
            let infos = Self.parseNodes(node.command("CLUSTER", "NODES")).filter { !$0.isFailing }
            let primaries = infos.filter(\.isPrimary)
            guard primaries.count == primaryCount, primaries.allSatisfy({ !$0.slots.isEmpty }),
                primaries.reduce(0, { $0 + $1.slots.reduce(0) { $0 + $1.count } }) == 16384
            else { return false }
            views.insert(
                infos.map { "\($0.port):\($0.isPrimary ? "primary" : $0.primaryID ?? "?"):\($0.slots)" }.sorted()
                    .joined(separator: " "))
            let replication = node.command("INFO", "replication")
            if replication.contains("role:slave") && !replication.contains("master_link_status:up") { return false }
        }
        return views.count == 1
    }

    /// Polls ``isHealthy()`` until it holds or `timeout` seconds pass.
    @discardableResult
    public func waitUntilHealthy(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if isHealthy() { return true }
            usleep(50_000)
        }
        return isHealthy()
    }

    /// What every running node says, for failure messages.
    public func describe() -> String {
        runningNodes.map { "node \($0.port):\n\($0.command("CLUSTER", "NODES"))" }.joined(separator: "\n")
    }

    // MARK: - Resharding by hand

    /// Opens the migration of `slot` from the primary on `source` to the one on `target`:
    /// `CLUSTER SETSLOT slot IMPORTING` on the target, then `MIGRATING` on the source.
    public func beginMigration(slot: Int, from source: Int, to target: Int) throws {
        guard let sourceID = nodeID(port: source), let targetID = nodeID(port: target) else {
            throw RedisServerProcess.StartError(description: "unknown node \(source) or \(target)")
        }
        try expectOK(node(port: target)?.command("CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", sourceID))
        try expectOK(node(port: source)?.command("CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", targetID))
    }

    /// Moves `keys` (all in a migrating slot) from `source` to `target` with `MIGRATE`.
    public func migrateKeys(_ keys: [String], from source: Int, to target: Int) throws {
        guard !keys.isEmpty else { return }
        let reply = node(port: source)?.command(
            arguments: ["MIGRATE", "127.0.0.1", "\(target)", "", "0", "5000", "KEYS"] + keys)
        try expectOK(reply)
    }

    /// Moves every key still in `slot` from `source` to `target`.
    public func migrateAllKeys(slot: Int, from source: Int, to target: Int) throws {
        while true {
            let keys = node(port: source)?.command("CLUSTER", "GETKEYSINSLOT", "\(slot)", "100")
                .split(whereSeparator: \.isNewline).map(String.init) ?? []
            if keys.isEmpty { return }
            try migrateKeys(keys, from: source, to: target)
        }
    }

    /// Closes the migration: `CLUSTER SETSLOT slot NODE target` on the target, the source, then every
    /// other primary (the order the Redis Cluster specification gives).
    public func finishMigration(slot: Int, from source: Int, to target: Int) throws {
        guard let targetID = nodeID(port: target) else {
            throw RedisServerProcess.StartError(description: "unknown node \(target)")
        }
        let others = clusterNodes().filter {
            $0.isPrimary && !$0.isFailing && !$0.slots.isEmpty && $0.port != source && $0.port != target
        }
        for port in [target, source] + others.map(\.port) {
            try expectOK(node(port: port)?.command("CLUSTER", "SETSLOT", "\(slot)", "NODE", targetID))
        }
    }

    /// A whole migration of `slot` from `source` to `target`.
    public func migrateSlot(_ slot: Int, from source: Int, to target: Int) throws {
        try beginMigration(slot: slot, from: source, to: target)
        try migrateAllKeys(slot: slot, from: source, to: target)
        try finishMigration(slot: slot, from: source, to: target)
    }

    private func expectOK(_ reply: String?) throws {
        guard reply == "OK" || reply == "NOKEY" else {
            throw RedisServerProcess.StartError(description: "expected OK, got \(reply ?? "no node")")
        }
    }

    // MARK: - Parsing

    /// Parses `CLUSTER NODES`: `id ip:port@cport flags primary ping pong epoch link slot…`.
    static func parseNodes(_ text: String) -> [NodeInfo] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 8, let colon = fields[1].lastIndex(of: ":") else { return nil }
            let portText = fields[1][fields[1].index(after: colon)...].prefix { $0.isNumber }
            guard let port = Int(portText) else { return nil }
            let flags = fields[2].split(separator: ",")
            var slots: [ClosedRange<Int>] = []
            for item in fields.dropFirst(8) where !item.hasPrefix("[") {
                let bounds = item.split(separator: "-").compactMap { Int($0) }
                if bounds.count == 2 { slots.append(bounds[0]...bounds[1]) } else if bounds.count == 1 { slots.append(bounds[0]...bounds[0]) }
            }
            return NodeInfo(
                id: String(fields[0]), port: port, isPrimary: flags.contains("master"),
                isFailing: flags.contains("fail") || flags.contains("fail?"),
                primaryID: fields[3] == "-" ? nil : String(fields[3]), slots: slots)
        }
    }
}

/// `field:value` lines of an INFO reply.
public enum RedisInfo {
    public static func field(_ info: String, _ name: String) -> String? {
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(name + ":") {
            return String(line.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
