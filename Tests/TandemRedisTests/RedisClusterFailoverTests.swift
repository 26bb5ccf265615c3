import Foundation
import NIOConcurrencyHelpers
@testable import TandemRedis
import TandemTestSupport
import Testing

/// `INCR key` in a loop until stopped, recording every outcome: the traffic that must survive a failover.
final class IncrementLoop: Sendable {
    let key: String
    private let client: RedisClusterClient
    private let stopped = NIOLockedValueBox(false)
    let outcomes = Recorder<Result<RedisValue, RedisError>>()
    /// When each outcome arrived, in the same order.
    let times = Recorder<ContinuousClock.Instant>()
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

    init(client: RedisClusterClient, key: String) {
        self.client = client
        self.key = key
        let task = Task { [self] in
            while !stopped.withLockedValue({ $0 }) {
                let outcome = await withCheckedContinuation { continuation in
                    client.send(RedisCommand("INCR", key)) { continuation.resume(returning: $0) }
                }
                times.append(.now)
                outcomes.append(outcome)
            }
        }
        self.task.withLockedValue { $0 = task }
    }

    /// Stops after the command in flight and waits for it: every command gets an outcome (none hangs).
    func stop() async {
        stopped.withLockedValue { $0 = true }
        await task.withLockedValue { $0 }?.value
    }

    var successes: [Int64] { outcomes.values.compactMap { try? $0.get().int } }
    var failures: [Result<RedisValue, RedisError>] {
        outcomes.values.filter { if case .success(.integer) = $0 { return false } else { return true } }
    }

    /// How many commands succeeded between `start` and `end`.
    func successes(between start: ContinuousClock.Instant, and end: ContinuousClock.Instant) -> Int {
        zip(times.values, outcomes.values).filter { time, outcome in
            guard case .success(.integer) = outcome else { return false }
            return time > start && time < end
        }.count
    }

    /// When the first success after `start` arrived.
    func firstSuccess(after start: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        zip(times.values, outcomes.values).first { time, outcome in
            guard case .success(.integer) = outcome else { return false }
            return time > start
        }?.0
    }

    /// Outcomes that may have run on the server (no reply): connection lost or timed out.
    var ambiguous: Int {
        failures.filter { $0 == .failure(.connectionLost) || $0 == .failure(.timeout) }.count
    }
}

@Suite("Redis Cluster failover with live traffic", .serialized, .sharedCluster, .timeLimit(.minutes(2 * TestTimeouts.scale)))
struct RedisClusterFailoverTests {
    static func shardChannels(_ cluster: RedisClusterProcess, _ port: Int) -> Set<String> {
        Set(cluster.node(port: port)!.command("PUBSUB", "SHARDCHANNELS").split(whereSeparator: \.isNewline).map(String.init))
    }

    /// Waits until `port` is a primary serving slots.
    static func waitForPromotion(_ cluster: RedisClusterProcess, _ port: Int) async -> Bool {
        await waitUntilBlocking(timeout: .seconds(60)) {
            cluster.isServingPrimary(port: port)
        }
    }

    @Test func manualFailoverMovesCommandsAndSubscriptionsToThePromotedReplica() async throws {
        let cluster = try SharedCluster.get()
        let ports = await blocking { cluster.primaryPorts() }
        let (primary, other) = (ports[0], ports[1])
        // One seed (seeds are never retired), and a short command timeout so that the connection to
        // the demoted primary is retired soon after the failover (grace: twice the command timeout); 5 s,
        // not 1: on a busy machine a 1 s timeout failed commands on the steady shard too.
        let client = try startedClusterClient([cluster.node(port: other)!.url]) { configuration in
            configuration.connection.commandTimeout = .seconds(5)
            configuration.cluster.retiredConnectionGrace = .zero
        }
        let probe = ClusterSubscriberProbe()
        let subscriber = probe.subscriber(client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        #expect(await waitUntil { client.isConnected })
        let replica = try #require(await blocking { cluster.replicaPorts(ofPrimary: primary) }.first)
        let (failing, steady, channel) = await blocking {
            (
                cluster.names(ownedBy: primary, count: 1) { "manual:{\($0)}" }[0],
                cluster.names(ownedBy: other, count: 1) { "manual:{\($0)}" }[0],
                cluster.names(ownedBy: primary, count: 1) { "tandem:{manual\($0)}" }[0]
            )
        }
        subscriber.subscribe(channel)
        subscriber.start()
        #expect(await waitUntil { subscriber.subscribedChannels == [channel] })

        let onFailing = IncrementLoop(client: client, key: failing)
        let onSteady = IncrementLoop(client: client, key: steady)
        #expect(await waitUntil { onFailing.outcomes.count > 20 && onSteady.outcomes.count > 20 })
        #expect(await blocking { cluster.node(port: replica)!.command("CLUSTER", "FAILOVER") } == "OK")
        #expect(await Self.waitForPromotion(cluster, replica))
        // Traffic continues on the promoted replica; the channel follows it.
        let atPromotion = onFailing.successes.count
        #expect(await waitUntil(timeout: .seconds(30)) { onFailing.successes.count > atPromotion + 20 })
        // The old primary pushed `sunsubscribe`; the channel is subscribed again, on the new primary.
        #expect(await waitUntil { probe.subscriptions(of: channel) >= 2 })
        #expect(await waitUntilBlocking { Self.shardChannels(cluster, replica) == [channel] })
        #expect(await blocking { Self.shardChannels(cluster, primary) } == [])
        await onFailing.stop()
        await onSteady.stop()
        #expect(await waitUntil { client.core.address(forSlot: ClusterSlot.slot(forKey: failing))?.port == replica })

        // Nothing lost, nothing hidden: every increment the server applied was either acknowledged or
        // reported as possibly run; acknowledged values only grow. The other shard never noticed.
        #expect(onSteady.failures.isEmpty)
        #expect(onFailing.failures.allSatisfy { $0 == .failure(.connectionLost) || $0 == .failure(.timeout) })
        let final = try #require(Int64(await blocking { cluster.node(port: replica)!.command("GET", failing) }))
        #expect(onFailing.successes == onFailing.successes.sorted() && Set(onFailing.successes).count == onFailing.successes.count)
        #expect(Int64(onFailing.successes.count) <= final && final <= Int64(onFailing.successes.count + onFailing.ambiguous))
        #expect(try await client.send(client.publishCommand(channel: channel, payload: "after-failover")) == .integer(1))
        #expect(await waitUntil { probe.messages.values.last == Message(channel, "after-failover") })
        // The demoted primary is no longer in the map: its connection is closed after the grace period.
        let demoted = RedisEndpoint.Address.tcp(host: "127.0.0.1", port: primary)
        #expect(await waitUntil { !client.core.state.withLockedValue { $0.nodes.keys.contains(demoted) } })
        #expect(client.isConnected)
    }

    @Test func killingAPrimaryPromotesItsReplicaAndOnlyItsCommandsWait() async throws {
        let cluster = try SharedCluster.get()
        #expect(await blocking { cluster.waitUntilHealthy(timeout: 30) })
        let states = Recorder<Bool>()
        let client = try startedClusterClient(cluster.seedURLs) { $0.onConnectionStateChange = { states.append($0) } }
        let probe = ClusterSubscriberProbe()
        let subscriber = probe.subscriber(client: client)
        defer {
            subscriber.shutdown()
            client.shutdown()
        }
        #expect(await waitUntil { client.isConnected })
        let ports = await blocking { cluster.primaryPorts() }
        let (victim, other) = (ports[2], ports[0])
        let replica = try #require(await blocking { cluster.replicaPorts(ofPrimary: victim) }.first)
        let (failing, steady, channel) = await blocking {
            (
                cluster.names(ownedBy: victim, count: 1) { "kill:{\($0)}" }[0],
                cluster.names(ownedBy: other, count: 1) { "kill:{\($0)}" }[0],
                cluster.names(ownedBy: victim, count: 1) { "tandem:{kill\($0)}" }[0]
            )
        }
        subscriber.subscribe(channel)
        subscriber.start()
        #expect(await waitUntil { subscriber.subscribedChannels == [channel] && subscriber.isConnected })

        let onFailing = IncrementLoop(client: client, key: failing)
        let onSteady = IncrementLoop(client: client, key: steady)
        #expect(await waitUntil { onFailing.outcomes.count > 20 && onSteady.outcomes.count > 20 })
        let clusterDownBefore = await blocking { cluster.statistic(other, "errorstat_CLUSTERDOWN", "count") }
        cluster.node(port: victim)!.kill()
        let killedAt = ContinuousClock.now
        let failingAtKill = onFailing.outcomes.count
        #expect(await waitUntil { !client.isConnected && !subscriber.isConnected })
        #expect(await Self.waitForPromotion(cluster, replica))
        // The failing shard's commands waited (retried within the window) and resume on the new primary;
        // the other shard kept serving while the victim was down.
        #expect(await waitUntil(timeout: .seconds(30)) { onFailing.successes.count > failingAtKill + 20 })
        #expect(await waitUntil { client.isConnected && subscriber.isConnected })
        #expect(await waitUntil { probe.subscriptions(of: channel) == 2 })
        await onFailing.stop()
        await onSteady.stop()
        // While the victim's slots were unserved (before the promoted replica answered anything), the
        // other shard still served; its commands never failed (CLUSTERDOWN, once the cluster declared
        // the failure, was retried within the window).
        let resumedAt = try #require(onFailing.firstSuccess(after: killedAt))
        #expect(onSteady.successes(between: killedAt, and: resumedAt) > 0)
        #expect(onSteady.failures.isEmpty)
        #expect(await blocking { cluster.statistic(other, "errorstat_CLUSTERDOWN", "count") } > clusterDownBefore)
        // What failed, failed with an error saying the command may have run (in flight at the kill) or
        // never reached a primary; none hung (stop() returned).
        #expect(
            onFailing.failures.allSatisfy {
                $0 == .failure(.connectionLost) || $0 == .failure(.timeout) || $0 == .failure(.notConnected)
            })
        #expect(onFailing.ambiguous <= 1)  // one command in flight on the dead connection at most
        let final = try #require(Int64(await blocking { cluster.node(port: replica)!.command("GET", failing) }))
        #expect(final == onFailing.successes.last)  // nothing acknowledged after the failover was lost
        #expect(states.values.first == true && states.values.contains(false) && states.values.last == true)

        #expect(try await client.send(client.publishCommand(channel: channel, payload: "after-kill")) == .integer(1))
        #expect(await waitUntil { probe.messages.values.last == Message(channel, "after-kill") })
        // The killed node's connection is retired only after its grace period; the replica took its place.
        #expect(client.topology?.primaries.map(\.port).contains(replica) == true)
        #expect(client.topology?.primaries.map(\.port).contains(victim) == false)
    }
}
