import NIOCore
import TandemAllocationCounter
@testable import TandemCore
@testable import TandemServer
import Testing

/// Issue 8 stop 28: the heap allocations of a commit's delivery, counted the way `PresenceAllocationTests`
/// counts presence's (a speed regression test that is not a timing). What a push costs once its group
/// commit replied: the shard carries out the pipeline's `.deliver` (the patch encoded and framed once, the
/// result encoded and framed, the outbox's round, the pusher's metrics) and the members' loop writes each
/// member its frames (`deliverSync`, one coalesced write and flush per member per round). Real
/// `ClientConnection`s and a real `DocShard` on one embedded loop (`ConnectionLayerTests.Fixture`), in
/// steady state (buffers grown). The decision and the group commit itself need Redis's reply and are not
/// counted here. The ceiling is what the path costs now in a debug build: one more allocation per commit
/// fails it; lower it when the path gets cheaper.
@Suite(.enabled(if: tandem_allocation_counter_available() == 1, "a sanitizer build keeps its own malloc"))
struct SyncDeliveryAllocationTests {
    /// Measured 95.25-95.4 per commit with 5 members (a result and 4 patches: per commit the patch's and the
    /// result's bytes and frames, the pusher's metrics and reply; per member round the write's buffer, the
    /// member's items, the embedded loop's tasks). The ceiling fails on one more allocation per commit.
    static let maxAllocationsPerCommit = 96.0

    func counted(_ body: () throws -> Void) rethrows -> Int {
        tandem_allocation_counter_start()
        defer { _ = tandem_allocation_counter_stop() }
        try body()
        return tandem_allocation_counter_stop()
    }

    @Test func aCommitsDeliveryAllocatesWithinItsCeiling() throws {
        let fixture = try ConnectionLayerTests.Fixture()
        let members = [fixture.client] + (try (2...5).map { try fixture.addClient(id: UInt64($0), user: "u\($0)") })
        for member in members { _ = try member.frames() }  // the welcomes
        let shard = fixture.shards.all[0]
        let doc = "doc-1"
        let docState = DocState(
            presence: PresenceDoc(doc: doc, settings: shard.settings.presenceSettings),
            sync: PushPipeline(settings: shard.settings.pushPipelineSettings, randomSeed: 1))
        let ids = members.map { ObjectIdentifier($0.connection) }
        for (member, id) in zip(members, ids) {
            docState.addMember(id, DocState.Member(connection: member.connection, role: .editor, presence: .none, ticket: nil))
        }
        let ops = try JSONParser.parse(Array(#"{"r7":["patch",{"n":["put",12]}]}"#.utf8))
        let commitsPerRound = 8  // a group commit of 8 pushes, as at sync-20k
        let rounds = 6
        var clock: UInt64 = 0
        var perCommit: [Double] = []
        for round in 0..<rounds {
            // The pipeline's actions for one replied group commit (made before counting: the pipeline's).
            var actions: [PushAction<ObjectIdentifier>] = []
            for k in 0..<commitsPerRound {
                clock += 1
                let pusher = k % ids.count
                let commit = CommitNotice(
                    clock: clock, ops: ops, by: "s\(pusher + 1)", node: "test-node", pushID: .number("\(clock)"),
                    committedAtMs: 1_000, encodedOps: ops.serialized, sum: DocChecksum.record(id: "r7", value: .number("\(clock)")))
                let result = PushReply(
                    member: ids[pusher], pushID: .number("\(clock)"), answer: .result(action: .commit, clock: clock, applied: nil, reason: nil),
                    receivedAtNanos: 0, conflicted: false, sum: commit.sum, sentAtNanos: 0)
                actions.append(.deliver(commit, patchTo: ids.enumerated().filter { $0.offset != pusher }.map(\.element), result: result))
            }
            let allocations = counted {
                shard.perform(actions, doc: doc, docState)
                fixture.loop.run()
            }
            for member in members {
                let frames = try member.frames()
                #expect(frames.count == commitsPerRound)  // a result or a patch per commit, each member
            }
            guard round >= 2 else { continue }
            perCommit.append(Double(allocations) / Double(commitsPerRound))
        }
        print("SyncDeliveryAllocationTests: allocations per commit \(perCommit) (\(members.count) members)")
        for value in perCommit { #expect(value <= Self.maxAllocationsPerCommit) }
    }
}
