import NIOCore
import NIOEmbedded
import TandemCore
@testable import TandemServer
import Testing

/// A round of a doc's stream as `SyncOutbox` hands it to the members' loops (issue 8 stop 27): a patch
/// shared by its recipients is stored once per event loop, and each member still gets exactly its items,
/// in the order they were added — through real `ClientConnection`s on two embedded loops.
@Suite struct SyncOutboxRoundTests {
    typealias Fixture = ConnectionLayerTests.Fixture

    static func frame(_ text: String) -> ByteBuffer { ServerFrame.text(Array(text.utf8), allocator: ByteBufferAllocator()) }

    @Test func sharedPatchesAreStoredOncePerLoopAndReachEachMemberInOrder() throws {
        // Twelve members on one loop (past `linearGroups`: the dictionary), three on another.
        let a = try Fixture()
        let b = try Fixture()
        var members = [a.client] + (2...12).map { try! a.addClient(id: UInt64($0), user: "u\($0)") }
        members += [b.client] + (2...3).map { try! b.addClient(id: UInt64(100 + $0), user: "v\($0)") }
        for member in members { _ = try member.frames() }  // the welcomes
        #expect(SyncOutbox.linearGroups < 12)

        var outbox = SyncOutbox()
        var expected = Array(repeating: [String](), count: members.count)
        let commits = 6
        for c in 0..<commits {
            let author = (c * 5) % members.count
            outbox.share(.frame(Self.frame("patch-\(c)"), committedAtMs: 1))
            // In the doc's member order, except one commit in reverse (no member where the guess looks).
            let order = c == 3 ? Array(members.indices.reversed()) : Array(members.indices)
            for i in order where i != author {
                outbox.addShared(members[i].connection)
                expected[i].append("patch-\(c)")
            }
            outbox.add(members[author].connection, .frame(Self.frame("result-\(c)"), committedAtMs: nil))
            expected[author].append("result-\(c)")
        }
        // Each loop holds each patch once, and the results: not an item per member per commit.
        #expect(outbox.byLoop.count == 2)
        let itemsPerLoop = outbox.byLoop.map(\.items.count)
        let resultsOnA = (0..<commits).filter { (c: Int) in (c * 5) % members.count < 12 }.count
        #expect(itemsPerLoop == [commits + resultsOnA, commits + (commits - resultsOnA)])
        #expect(outbox.byLoop.map(\.sends.count).reduce(0, +) == commits * members.count)

        outbox.flush()
        for (i, member) in members.enumerated() {
            #expect(try member.frames().map(\.text) == expected[i], "member \(i)")
        }
    }

    @Test func aLoneMembersRoundAndItemsAddedOneByOne() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        var outbox = SyncOutbox()
        outbox.add(fixture.connection, .frame(Self.frame("one"), committedAtMs: nil))
        outbox.share(.frame(Self.frame("two"), committedAtMs: 1))
        outbox.addShared(fixture.connection)
        outbox.add(fixture.connection, .frame(Self.frame("three"), committedAtMs: nil))
        outbox.flush()
        #expect(outbox.isEmpty)
        #expect(try fixture.frames().map(\.text) == ["one", "two", "three"])
    }

    /// A round of one commit (a patch to each member, then the pusher's result, and a member with two
    /// items in a row) takes `perMember`'s path without the counting sort; a round that comes back to an
    /// earlier member does not. Both deliver each member exactly its items, in order.
    @Test func aRoundGroupedByMemberSkipsTheSortAndKeepsTheOrder() throws {
        for comesBack in [false, true] {
            let fixture = try Fixture()
            let members = [fixture.client] + (2...4).map { try! fixture.addClient(id: UInt64($0), user: "u\($0)") }
            for member in members { _ = try member.frames() }
            var outbox = SyncOutbox()
            var expected = Array(repeating: [String](), count: members.count)
            outbox.share(.frame(Self.frame("patch"), committedAtMs: 1))
            for i in 0..<3 {
                outbox.addShared(members[i].connection)
                expected[i].append("patch")
            }
            outbox.add(members[2].connection, .frame(Self.frame("extra"), committedAtMs: nil))
            expected[2].append("extra")
            outbox.add(members[3].connection, .frame(Self.frame("result"), committedAtMs: nil))
            expected[3].append("result")
            if comesBack {
                outbox.add(members[0].connection, .frame(Self.frame("late"), committedAtMs: nil))
                expected[0].append("late")
            }
            #expect(outbox.byLoop.count == 1)
            #expect(outbox.byLoop[0].isGrouped == !comesBack)
            outbox.flush()
            for (i, member) in members.enumerated() {
                #expect(try member.frames().map(\.text) == expected[i], "member \(i), comes back: \(comesBack)")
            }
        }
    }
}
