import NIOCore

/// What `tandem serve` was told, option by option, before it is resolved into a running node: `node` is
/// the node's configuration (every option that maps straight onto it), `launch` what the command itself
/// uses (where the secret and the ops token come from, the embedded Redis, logging, defaults that depend
/// on other options). `ServeOptions.parse` fills it from the command line and the environment.
public struct ServeSettings: Sendable {
    public var node: ServerConfiguration
    public var launch: LaunchSettings

    /// Every option at its default.
    public init() {
        node = .defaults
        launch = LaunchSettings()
    }
}

/// The options `tandem serve` resolves itself; each field's initial value is its option's default.
public struct LaunchSettings: Sendable {
    /// `--host`; nil: 0.0.0.0 with a JWT secret or `--insecure-dev-mode`, else 127.0.0.1.
    public var host: String?
    /// `--node-id`; nil: HOSTNAME-PID.
    public var nodeID: String?
    /// `--redis`; nil: run an embedded redis-server.
    public var redis: String?
    public var jwtSecret: String?
    public var jwtSecretFile: String?
    public var opsToken: String?
    public var opsTokenFile: String?
    /// `--web-root`; nil: `Web/status` next to the working directory or the binary, if present.
    public var webRoot: String?
    public var logLevel = "info"
    /// `--event-loops`; nil: one per core NIO counts (`System.coreCount`, which honours a cgroup CPU quota).
    public var eventLoops: Int?
    /// The event-loop threads the node gets: `--event-loops` or one per core.
    public var eventLoopThreads: Int { eventLoops ?? System.coreCount }

    // The embedded redis-server (without --redis).
    public var dataDirectory = ".tandem"
    public var redisServer = "redis-server"
    public var appendFsync = "everysec"
    /// `--redis-maxmemory`; nil: a quarter of the memory available (`EmbeddedRedis.defaultMaxMemoryBytes`).
    public var redisMaxMemory: UInt64?

    public init() {}
}

extension ServerConfiguration {
    /// Every field at its default; the identity fields (`nodeID`, `redisURL`), which have none, are empty.
    public static let defaults = ServerConfiguration(nodeID: "", redisURL: "")
}
