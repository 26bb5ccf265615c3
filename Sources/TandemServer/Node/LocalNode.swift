import Foundation
import NIOConcurrencyHelpers
import TandemRedis

/// This node as the node directory and `/api/status` describe it: its id, ports, connections, Redis state
/// and reconnect rate. Housekeeping heartbeats it and the ops routes show it, neither through the node.
struct LocalNode: Sendable {
    let nodeID: String
    let startedAt: Date
    /// Bound ports, set once listening (a shared box: the node sets it, the directory entry reads it).
    let ports: NIOLockedValueBox<(ws: Int, ops: Int)>
    let registry: SessionRegistry
    let yjsRooms: YjsRooms
    let redis: any RedisCommandClient
    let subscriber: any RedisChannelSubscriber
    let storm: ReconnectStormMonitor

    /// Open client connections, `/v1/ws` and `/yjs/{room}` together.
    var connections: Int { registry.count + yjsRooms.connectionCount }

    /// This node's entry in the node directory.
    func directoryEntry(docs: Int, sessions: Int, state: String = "serving") -> NodeDirectory.Entry {
        let ports = self.ports.withLockedValue { $0 }
        let storm = self.storm.snapshot()
        return NodeDirectory.Entry(
            node: nodeID, wsPort: ports.ws, opsPort: ports.ops, connections: connections, docs: docs,
            presenceSessions: sessions, redisUp: redis.isConnected, ready: redis.isConnected && subscriber.isConnected,
            storm: storm.inStorm, reconnectsPerSecond: storm.rate, startedAt: startedAt, state: state)
    }
}
