import Foundation
import NIOCore
import TandemRedis
import TandemTestSupport
import Testing

/// The cluster a suite with the ``SharedClusterTrait`` shares between its tests.
enum SharedCluster {
    @TaskLocal static var current: RedisClusterProcess?

    /// The suite's cluster; fails the test if the suite has none.
    static func get() throws -> RedisClusterProcess {
        try #require(current, "the suite needs the .sharedCluster trait")
    }
}

/// Starts one 3-primary/3-replica cluster before a suite's tests and stops it after the last one, so a
/// suite pays the start-up once. Tests sharing it must leave it healthy (they may move slots).
struct SharedClusterTrait: SuiteTrait, TestScoping {
    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let cluster = try await blocking { try RedisClusterProcess() }
        do {
            try await SharedCluster.$current.withValue(cluster) { try await function() }
        } catch {
            await blocking { cluster.stop() }
            throw error
        }
        await blocking { cluster.stop() }
    }
}

extension Trait where Self == SharedClusterTrait {
    /// One real cluster for the whole suite (see ``SharedClusterTrait``).
    static var sharedCluster: Self { Self() }
}

/// Test pacing: short reconnect backoff, fast map refreshes, and a retry window long enough to ride
/// out a failover on a loaded machine unless a test asks for less.
func clusterTestSettings(retryTimeout: TimeAmount = .seconds(20)) -> ClusterSettings {
    var settings = ClusterSettings()
    settings.minRefreshInterval = .milliseconds(50)
    settings.retryTimeout = retryTimeout
    settings.retryMaxDelay = .milliseconds(200)
    return settings
}

/// A started cluster client for `urls` with test settings, adjusted by `configure`.
func startedClusterClient(
    _ urls: [String], configure: (inout RedisClusterClient.Configuration) -> Void = { _ in }
) throws -> RedisClusterClient {
    var configuration = RedisClusterClient.Configuration(seeds: try urls.map { try RedisEndpoint(url: $0) })
    configuration.connection = testSettings()
    configuration.cluster = clusterTestSettings()
    configure(&configuration)
    let client = RedisClusterClient(configuration: configuration)
    client.start()
    return client
}

/// Records everything a cluster subscriber reports.
final class ClusterSubscriberProbe: Sendable {
    let messages = Recorder<Message>()
    let subscribed = Recorder<String>()
    let states = Recorder<Bool>()

    func subscriber(client: RedisClusterClient) -> RedisClusterSubscriber {
        var configuration = RedisClusterSubscriber.Configuration { [messages] in messages.append(Message($0, bytes: $1)) }
        configuration.connection = testSettings()
        configuration.onSubscribed = { [subscribed] in subscribed.append($0) }
        configuration.onConnectionStateChange = { [states] in states.append($0) }
        return RedisClusterSubscriber(configuration: configuration, client: client)
    }

    func subscriptions(of channel: String) -> Int { subscribed.values.filter { $0 == channel }.count }
}

extension RedisClusterProcess {
    /// The ports of the primaries serving slots, as the first running node sees them, sorted.
    func primaryPorts() -> [Int] {
        clusterNodes().filter { $0.isPrimary && !$0.isFailing && !$0.slots.isEmpty }.map(\.port).sorted()
    }

    /// `count` names `prefix0`, `prefix1`… (each wrapped by `format`) whose slot the primary on
    /// `port` serves.
    func names(ownedBy port: Int, count: Int, format: (String) -> String) -> [String] {
        let ranges = clusterNodes().first { $0.port == port }?.slots ?? []
        var names: [String] = []
        var index = 0
        while names.count < count && index < 1_000_000 {
            let name = format("\(index)")
            if ranges.contains(where: { $0.contains(ClusterSlot.slot(forKey: name)) }) { names.append(name) }
            index += 1
        }
        return names
    }

    /// A statistic from `INFO commandstats` or `INFO errorstats` on the node on `port`
    /// (`statistic(port, "errorstat_MOVED", "count")`), 0 when absent.
    func statistic(_ port: Int, _ line: String, _ field: String) -> Int {
        guard let node = node(port: port) else { return 0 }
        let section = line.hasPrefix("errorstat") ? "errorstats" : "commandstats"
        for text in node.command("INFO", section).split(whereSeparator: \.isNewline) where text.hasPrefix("\(line):") {
            for pair in text.dropFirst(line.count + 1).split(separator: ",") where pair.hasPrefix("\(field)=") {
                return Int(pair.dropFirst(field.count + 1)) ?? 0
            }
        }
        return 0
    }
}
