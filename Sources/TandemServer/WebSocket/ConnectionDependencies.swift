import Logging
import TandemCore

/// What a `ClientConnection` works with besides its socket, handed over explicitly: the slice of
/// configuration it enforces, metrics, clock, logger, the session registry, and how to find the shard
/// of a doc. No back-reference to the node.
struct ConnectionDependencies: Sendable {
    /// The configuration a connection reads (a slice of `ServerConfiguration`).
    struct Settings: Sendable {
        var nodeID: String
        var presenceRate: Int
        var tickMs: Int
        var limits: ProtocolLimits
        var pingIntervalMs: Int
        var maxMessagesPerSecond: Int
        var maxDocsPerConnection: Int
        var maxDocJoinsPerSecond: Double
        var maxOutboundBytes: Int
        /// --outbound-high-water-bytes: while the channel is writable it buffers at most this (below
        /// `maxOutboundBytes`, `ServerConfiguration.validate`).
        var outboundHighWaterBytes: Int
        var presenceSettings: PresenceSettings
        var abuseLimits: AbuseMonitor.Limits
        /// --diverged-report-ms: `diverged` reports count at most once per this long per connection.
        var divergedReportMs: Int

        init(_ config: ServerConfiguration) {
            nodeID = config.nodeID
            presenceRate = config.presenceRate
            tickMs = config.tickMs
            limits = config.limits
            pingIntervalMs = config.pingIntervalMs
            maxMessagesPerSecond = config.maxMessagesPerSecond
            maxDocsPerConnection = config.maxDocsPerConnection
            maxDocJoinsPerSecond = config.maxDocJoinsPerSecond
            maxOutboundBytes = config.maxOutboundBytes
            outboundHighWaterBytes = config.outboundHighWaterBytes
            presenceSettings = config.presenceSettings
            abuseLimits = config.abuseLimits
            divergedReportMs = config.divergedReportMs
        }
    }

    var settings: Settings
    var metrics: TandemMetrics
    var clock: NodeClock
    var logger: Logger
    var registry: SessionRegistry
    /// The shard that owns a doc (`DocShards.shard(for:)`).
    var shard: @Sendable (_ doc: String) -> DocShard
    /// The version of the record schema that applies to a doc, nil if none (a join stating another is
    /// refused with `schema_mismatch`).
    var schemaVersion: @Sendable (_ doc: String) -> Int?
    /// A reconnect was seen (counted once per connection; feeds the storm monitor).
    var reconnectObserved: @Sendable () -> Void
    /// Version history (issue 15): `history`, `at` and `restore` messages; nil refuses them.
    var history: HistoryService? = nil
}

/// What the WebSocket server works with, handed over explicitly: the configuration (it listens, admits
/// and bounds handshakes by many options), metrics, clock, the session registry and ownership, the doc
/// shards (refused handshakes extend the hold on detached sessions), and what each connection gets.
struct WebSocketServerDependencies: Sendable {
    var config: ServerConfiguration
    var metrics: TandemMetrics
    var clock: NodeClock
    var registry: SessionRegistry
    var sessions: SessionOwnership
    var shards: DocShards
    var connection: ConnectionDependencies
    /// Yjs rooms (`/yjs/{room}`) and what their connections get.
    var yjsRooms: YjsRooms
    var yjsSettings: YjsConnection.Settings
    var logger: Logger
    /// Monotonic milliseconds for handshake admission (its rates): the node's clock, a test's own in
    /// HandshakeLayerTests.
    var admissionNowMs: @Sendable () -> UInt64 = { NodeClock().nowMs() }
}
