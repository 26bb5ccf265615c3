import Foundation
import NIOCore
import TandemCore
import TandemRedis
@testable import TandemServer
import TandemTestSupport
import Testing

/// Stop 31 (issue 8): fewer Redis commands per commit — the checksum in the pushids hash (`~sum`, no GET
/// and SET of `tandem:{D}:sum`) — and a rolling upgrade with nodes of stop 30 (`GroupCommitScriptStop30`,
/// verbatim) committing the same doc.
extension GroupCommitScriptTests {
    /// A doc committed by stop 30's script and this one in turn (a rolling upgrade): each form only ever
    /// finds the checksum the other left unknown (stale), never wrong — every checksum a commit returns,
    /// and every one the read scripts return, is the records' — and seeds of either form make the next
    /// commit of the other known again. A steady commit of this form runs no GET and no SET.
    @Test func checksumsStayRightWhileNodesOfStop30CommitTheSameDoc() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        let doc = "gc:mixed"
        var replica = DocReplica()
        var id = 0
        var sumCommands = 0  // GETs and SETs of the last commit
        enum Form { case stop30, current }
        /// Commits one push with `form`'s script; its checksums (empty: unknown) must be the replica's.
        func commit(_ form: Form, _ note: String) async throws -> Bool {
            id += 1
            let batch = try decide(
                [Push(sid: id % 2 == 0 ? Self.sessionA : Self.sessionB, id: .number(id), ops: #"{"r\#(id % 3)":["put",{"n":\#(id)}]}"#)],
                against: replica)
            let script = form == .stop30 ? GroupCommitScriptStop30.commit : GroupCommitScript.commit
            let command = SyncStore.command(
                script, doc: doc, batch, node: "node-a", retention: 10_000, maxDocRecords: 100_000, docTTLMs: 0, logMode: .batch,
                checkLegacy: false)
            let (gets, sets) = (fixture.calls("get"), fixture.calls("set"))
            let reply = try SyncStore.reply(of: try await fixture.client.send(command, on: fixture.loop).get())
            sumCommands = fixture.calls("get") - gets + fixture.calls("set") - sets
            guard case .committed(let first, _) = reply.outcome else { throw TestFailure("\(note): \(reply.outcome)") }
            #expect(first == replica.head + 1, "\(note)")
            #expect(replica.apply(clock: first, ops: try Ops(json: batch.commits[0].ops)), "\(note)")
            #expect(reply.sums.isEmpty || reply.sums == [replica.sum], "\(note): a wrong checksum \(reply.sums) for \(replica.sum)")
            let loaded = try await store.load(doc: doc, on: fixture.loop).get()
            #expect(loaded.replica.sum == replica.sum && loaded.replica.head == replica.head, "\(note)")
            #expect(loaded.storedSum == nil || loaded.storedSum == replica.sum, "\(note): the load's stored checksum is wrong")
            let stored = try await store.storedSum(doc: doc, on: fixture.loop).get()
            #expect(stored.head == replica.head && (stored.sum == nil || stored.sum == replica.sum), "\(note)")
            return !reply.sums.isEmpty
        }
        func seedStop30() async throws {
            let seeded = try await fixture.client.evalScript(
                GroupCommitScriptStop30.seedSum, keys: GroupCommitScript.keys(doc), args: ["\(replica.head)", replica.sum.hex, "0"],
                on: fixture.loop
            ).get()
            #expect(seeded.int == 1)
        }

        #expect(try await commit(.stop30, "the doc's first commit, by stop 30"))
        #expect(fixture.redis("GET", "tandem:{gc:mixed}:sum") == "1:\(replica.sum.hex)")
        #expect(try await commit(.current, "after stop 30: its sum read from tandem:{D}:sum"))
        #expect(fixture.redis("HGET", "tandem:{gc:mixed}:pushids", "~sum") == "2:\(replica.sum.hex)")
        #expect(sumCommands == 1, "the GET of tandem:{D}:sum")
        #expect(try await commit(.current, "steady: the sum in the pushids hash"))
        #expect(sumCommands == 0, "no GET or SET of the sum")
        #expect(fixture.redis("GET", "tandem:{gc:mixed}:sum").hasPrefix("1:"), "tandem:{D}:sum is no longer written")
        #expect(try await commit(.stop30, "stop 30 after this form: its sum is stale") == false)
        #expect(sumCommands == 1, "stop 30's GET")
        try await seedStop30()
        #expect(try await commit(.current, "after stop 30's seed: read from tandem:{D}:sum"))
        #expect(try await commit(.stop30, "stop 30 again: stale") == false)
        #expect(try await store.seedSum(doc: doc, head: replica.head, sum: replica.sum, replace: false, on: fixture.loop).get())
        #expect(try await commit(.current, "after this form's seed"))
        #expect(try await commit(.stop30, "stop 30: stale") == false)
        #expect(try await commit(.current, "both stale") == false)
        // A seed that replaces (Redis's records changed behind Tandem's back) fixes stop 30's copy too.
        #expect(try await store.seedSum(doc: doc, head: replica.head, sum: replica.sum, replace: true, on: fixture.loop).get())
        #expect(fixture.redis("GET", "tandem:{gc:mixed}:sum") == "\(replica.head):\(replica.sum.hex)")
        #expect(try await commit(.stop30, "stop 30 after a replacing seed"))
        #expect(try await commit(.current, "and this form after it: read from tandem:{D}:sum"))
        #expect(try await commit(.current, "and again, from the pushids hash"))
    }

    /// A seed of a doc whose pushids hash does not exist yet (a doc last committed before group commit)
    /// gives the hash the clock's deadline: every key of a doc expires together.
    @Test func aSeededChecksumGetsTheDocsDeadline() async throws {
        let fixture = try await Fixture.start()
        let store = fixture.store()
        _ = fixture.redis("SET", "tandem:{gc:seed}:clock", "3", "PX", "3600000")
        #expect(try await store.seedSum(doc: "gc:seed", head: 3, sum: DocChecksum.zero, replace: false, on: fixture.loop).get())
        #expect(fixture.redis("HGET", "tandem:{gc:seed}:pushids", "~sum") == "3:\(DocChecksum.zero.hex)")
        #expect(fixture.redis("PEXPIRETIME", "tandem:{gc:seed}:pushids") == fixture.redis("PEXPIRETIME", "tandem:{gc:seed}:clock"))
        #expect(try await store.seedSum(doc: "gc:seed", head: 3, sum: DocChecksum.zero, replace: false, on: fixture.loop).get() == false)
        #expect(try await store.storedSum(doc: "gc:seed", on: fixture.loop).get().sum == DocChecksum.zero)
    }
}
