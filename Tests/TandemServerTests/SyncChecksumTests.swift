import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Issue 13, integrity checksums, against real Redis and nodes: the commit script keeps the checksum with
/// the clock; every result, patch, log entry and snapshot carries the checksum of the state it leaves
/// (`SyncView` checks each one); a record corrupted in Redis behind Tandem's back is detected, counted,
/// and healed — every node and client converges on what Redis holds.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncChecksumTests {
    /// Redis's stored checksum for `doc`: `CLOCK:HEX` (in the pushids hash since stop 31).
    static func stored(_ cluster: SyncCluster, _ doc: String) -> String {
        cluster.redis.command("HGET", SyncRedis.key(doc, "pushids"), "~sum")
    }

    /// The checksum of Redis's records, computed here from scratch.
    static func recordsSum(_ cluster: SyncCluster, _ doc: String) -> DocChecksum {
        DocChecksum.of(SyncRedis.records(cluster.redis, doc).mapValues { json($0) })
    }

    @Test func everyCommitCarriesTheChecksumRedisStoresWithTheClock() async throws {
        let cluster = try await SyncCluster.start(nodes: 2)
        let doc = "sum:carried"
        let alice = try await cluster.client("alice", node: 0)
        let bob = try await cluster.client("bob", node: 1)
        try await alice.join(doc)
        try await bob.join(doc)
        alice.push(doc, id: 1, ops: #"{"a":["put",{"t":"x","n":1.0}],"b":["put",{"l":[1,2]}]}"#)
        let first = try await alice.answer(doc, id: 1)
        #expect(first.string("action") == "commit")
        // Several pushes at once from both nodes: group commits of several commits each.
        for k in 2...30 {
            alice.push(doc, id: k, ops: #"{"a":["patch",{"t":["append","a",\#(k - 1)]}],"c\#(k % 4)":["put",{"k":\#(k)}]}"#)
            bob.push(doc, id: k, ops: #"{"b":["patch",{"l":["put",[\#(k)]]}],"d\#(k % 3)":["remove"]}"#)
        }
        for k in 2...30 {
            _ = try await alice.answer(doc, id: k)
            _ = try await bob.answer(doc, id: k)
        }
        try await cluster.waitConverged(doc)
        let head = SyncRedis.head(cluster.redis, doc)
        #expect(Self.stored(cluster, doc) == "\(head):\(Self.recordsSum(cluster, doc).hex)", "stored with the clock, equal to the records'")
        #expect(first.string("sum") != nil, "a result carries the checksum")
        // Every result and patch was checked against the client's own state (SyncView), and the log too:
        let carol = try await cluster.client("carol", node: 1)
        try await carol.join(doc, since: 0)
        #expect(carol.view(doc).checksumsChecked >= Int(head), "every log entry carries a checksum")
        let dave = try await cluster.client("dave", node: 0)
        try await dave.join(doc)
        #expect(dave.view(doc).checksumsChecked == 1, "the snapshot carries one")
        for client in [alice, bob] { #expect(client.view(doc).checksumsChecked >= 30, "\(client.name)") }
        for client in [alice, bob, carol, dave] { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }

    /// A record changed in Redis behind Tandem's back: the next node to read the doc finds Redis's records
    /// do not add up to Redis's checksum (counted) and makes the checksum describe them; the node that
    /// held the doc all along finds its replica differs at its next periodic check (counted), reloads,
    /// and restarts its members from a snapshot — everyone converges on Redis's records, and later
    /// commits carry checksums everyone agrees with.
    @Test func aRecordCorruptedInRedisIsDetectedCountedAndHealed() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) { $0.checksumCheckMs = 200 }
        let doc = "sum:corrupt"
        let alice = try await cluster.client("alice", node: 0)
        try await alice.join(doc)
        alice.push(doc, id: 1, ops: #"{"r1":["put",{"title":"good"}],"r2":["put",{"n":1}]}"#)
        #expect(try await alice.answer(doc, id: 1).string("action") == "commit")
        let node0 = cluster.nodes[0]
        let node1 = cluster.nodes[1]
        #expect(try await node0.metric("tandem_sync_divergence_total") == 0)
        try await waitUntil("node 0 compared its replica with Redis") {
            (try? await node0.metric("tandem_sync_checksum_checks_total")) ?? 0 >= 1
        }
        #expect(try await node0.metric("tandem_sync_divergence_total") == 0, "an intact doc is never counted")

        alice.acceptRestart(doc)
        // Behind Tandem's back.
        cluster.redis.command("HSET", SyncRedis.key(doc, "records"), "r1", #"{"title":"corrupted"}"#)

        // A node that reads the doc now finds the records do not match the checksum stored with them.
        let bob = try await cluster.client("bob", node: 1)
        try await bob.join(doc)
        #expect(try await node1.metric(#"tandem_sync_divergence_total{source="node"}"#) == 1)
        #expect(bob.view(doc).records["r1"] == json(#"{"title":"corrupted"}"#))
        try await waitUntil("Redis's checksum describes its records again") {
            Self.stored(cluster, doc) == "1:\(Self.recordsSum(cluster, doc).hex)"
        }

        // Node 0 still holds the old record; its periodic check finds the difference and reloads.
        try await waitUntil("node 0 detected its replica differs from Redis") {
            (try? await node0.metric(#"tandem_sync_divergence_total{source="node"}"#)) ?? 0 >= 1
        }
        try await waitUntil("alice restarted from a snapshot of Redis's records") {
            alice.view(doc).restarts == 1 && alice.view(doc).records["r1"] == json(#"{"title":"corrupted"}"#)
        }

        // Healed: later commits carry checksums both clients agree with (SyncView checks them).
        alice.push(doc, id: 2, ops: #"{"r2":["patch",{"n":["put",2]}]}"#)
        #expect(try await alice.answer(doc, id: 2).string("action") == "commit")
        bob.push(doc, id: 1, ops: #"{"r1":["patch",{"fixed":["put",true]}]}"#)
        #expect(try await bob.answer(doc, id: 1).string("action") == "commit")
        try await cluster.waitConverged(doc)
        for client in [alice, bob] { cluster.expectRecordsEqualRedis(client, doc) }
        #expect(Self.stored(cluster, doc) == "3:\(Self.recordsSum(cluster, doc).hex)")
        let checked = alice.view(doc).checksumsChecked
        #expect(checked >= 3, "alice checked the snapshot and both commits (\(checked))")
        // Nothing diverges any more.
        let counted0 = try await node0.metric("tandem_sync_divergence_total")
        let checks0 = try await node0.metric("tandem_sync_checksum_checks_total")
        try await waitUntil("two more periodic checks on node 0") {
            (try? await node0.metric("tandem_sync_checksum_checks_total")) ?? 0 >= checks0 + 2
        }
        #expect(try await node0.metric("tandem_sync_divergence_total") == counted0)
        await cluster.finish()
    }

    /// `{"t":"diverged"}` counts in tandem_sync_divergence_total{source="client"}, at most once per
    /// connection per --diverged-report-ms, so a hostile client cannot inflate it; a malformed one is a
    /// bad_message, one for a doc not joined is not_joined.
    @Test func clientReportsAreCountedAndRateLimited() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) { $0.divergedReportMs = 60_000 }
        let doc = "sum:report"
        let node = cluster.nodes[0]
        let metric = #"tandem_sync_divergence_total{source="client"}"#
        let report = #"{"t":"diverged","doc":"\#(doc)","clock":0,"sum":"0123456789abcdef"}"#
        let mallory = try await TestClient.connect(node.url(user: "mallory"))
        mallory.sendRaw(report)
        #expect(JSON.string(try await mallory.next("error"), at: "code") == "not_joined")
        mallory.sendRaw(#"{"t":"diverged","doc":"\#(doc)","clock":0,"sum":"xyz"}"#)
        #expect(JSON.string(try await mallory.next("error"), at: "code") == "bad_message")
        mallory.sendRaw(#"{"t":"diverged","doc":"\#(doc)"}"#)
        #expect(JSON.string(try await mallory.next("error"), at: "code") == "bad_message")
        try await mallory.join(doc)
        #expect(try await node.metric(metric) == 0)
        for _ in 0..<50 { mallory.sendRaw(report) }
        // A connection's messages are handled in order: once the ping is answered, so were the reports.
        mallory.sendRaw(#"{"t":"ping"}"#)
        try await mallory.next("pong")
        #expect(try await node.metric(metric) == 1, "one per connection within --diverged-report-ms")
        let other = try await TestClient.connect(node.url(user: "other"))
        try await other.join(doc)
        other.sendRaw(#"{"t":"diverged","doc":"\#(doc)","clock":0}"#)
        other.sendRaw(#"{"t":"ping"}"#)
        try await other.next("pong")
        #expect(try await node.metric(metric) == 2)
        await cluster.finish()
    }
}
