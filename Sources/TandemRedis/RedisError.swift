/// Why a command did not produce a reply (or, for the async and future APIs, produced an error reply).
public enum RedisError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The client is not connected right now (starting, reconnecting after an outage, or never started).
    /// Commands are not queued during an outage so that callers notice at once.
    case notConnected
    /// The connection broke after the command was accepted; it may or may not have run on the server.
    /// Commands are never retried automatically because they may not be idempotent.
    case connectionLost
    /// Redis did not answer within the command timeout; the connection was dropped and is being rebuilt.
    /// As with ``connectionLost``, the command may or may not have run.
    case timeout
    /// `maxPendingCommands` commands are already queued or in flight.
    case overloaded
    /// `shutdown()` was called.
    case shutdown
    /// Redis answered with an error reply (async and future APIs only).
    case server(String)
    /// In a cluster, the keys of a command, script call or batch hash to different slots. A cluster
    /// cannot run that atomically, so it is refused before sending rather than silently split: tag
    /// related keys with one `{hash tag}`, or send them separately.
    case crossSlot

    public var description: String {
        switch self {
        case .notConnected: return "not connected to Redis"
        case .connectionLost: return "connection to Redis lost"
        case .timeout: return "Redis command timed out"
        case .overloaded: return "too many pending Redis commands"
        case .shutdown: return "Redis client is shut down"
        case .server(let message): return "Redis error: \(message)"
        case .crossSlot: return "keys of one Redis command or batch are in different cluster slots"
        }
    }
}
