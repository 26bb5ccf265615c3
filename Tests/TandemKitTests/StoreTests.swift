import Foundation
import TandemCore
import Testing

@testable import TandemKit

/// TandemStore's files (atomic replace, limits, unusable files) and DocSync restored from one, without a server.
/// A class so that `deinit` (after each test: every test gets its own instance) removes the test's files.
@Suite final class StoreTests {
    /// This test's directory under the system temporary directory; the stores go inside it.
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("kit-store-\(UUID().uuidString.prefix(8))")

    deinit { try? FileManager.default.removeItem(at: root) }

    func ops(_ json: String) -> Ops { try! Ops(json: try! JSONParser.parse(json)) }
    func record(_ json: String) -> JSONValue { try! JSONParser.parse(json) }

    func makeStore(maxBytesPerDoc: Int = 1 << 20) throws -> TandemStore {
        // Two levels that do not exist yet: the store creates them.
        TandemStore(directory: root.appendingPathComponent("app").path, maxBytesPerDoc: maxBytesPerDoc)
    }

    func sample(_ doc: String = "board:1") -> StoredDoc {
        StoredDoc(
            doc: doc, clock: 7, records: ["a": record(#"{"x":[1,2,{"y":"z"}]}"#)],
            pending: [.init(id: 3, ops: ops(#"{"a":["patch",{"x":["put",2]}]}"#)), .init(id: 5, ops: ops(#"{"b":["remove"]}"#))],
            nextPushID: 9, sessions: ["S1", "S2"])
    }

    func files(_ store: TandemStore) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: store.directory)) ?? []).sorted()
    }

    @Test func aSavedDocReadsBackAndReplacingLeavesNoTemporaryFile() throws {
        let store = try makeStore()
        try store.save(sample())
        #expect(store.load("board:1") == sample())
        var newer = sample()
        newer.clock = 8
        newer.pending = []
        try store.save(newer)
        #expect(store.load("board:1") == newer)
        #expect(files(store) == ["doc-board=1.json"])
        #expect(store.load("board:2") == nil, "nothing stored for another doc")
    }

    @Test(arguments: [
        ("garbage", "{not json"),
        ("empty", ""),
        ("another format", #"{"format":2,"doc":"board:1","clock":1,"records":{},"pending":[],"nextPushID":1,"sessions":[]}"#),
        ("another doc", #"{"format":1,"doc":"board:2","clock":1,"records":{},"pending":[],"nextPushID":1,"sessions":[]}"#),
        ("a push id not below nextPushID", #"{"format":1,"doc":"board:1","clock":1,"records":{},"pending":[{"id":4,"ops":{}}],"nextPushID":4,"sessions":[]}"#),
        ("bad ops", #"{"format":1,"doc":"board:1","clock":1,"records":{},"pending":[{"id":1,"ops":{"a":["explode"]}}],"nextPushID":4,"sessions":[]}"#),
    ])
    func anUnusableFileIsMovedAsideAndTheDocStartsClean(_ case: (String, String)) throws {
        let store = try makeStore()
        try store.save(sample())
        try Data(`case`.1.utf8).write(to: URL(fileURLWithPath: store.path("board:1")!))
        #expect(store.load("board:1") == nil, "\(`case`.0)")
        #expect(files(store) == ["doc-board=1.json.corrupt"], "\(`case`.0)")
        // The next save starts a fresh file.
        try store.save(sample())
        #expect(store.load("board:1") == sample())
    }

    @Test func aStateOverTheLimitIsNotStoredAndItsOldFileIsRemoved() throws {
        let store = try makeStore(maxBytesPerDoc: 600)
        try store.save(sample())
        var big = sample()
        big.records["big"] = .object(["text": .string(String(repeating: "x", count: 600))])
        #expect {
            try store.save(big)
        } throws: { error in
            (error as? TandemStoreError)?.message.contains("over maxBytesPerDoc (600)") == true
        }
        #expect(files(store).isEmpty, "a stale state must not come back")
        // A file over the limit (written with a larger limit) is not read.
        try TandemStore(directory: store.directory, maxBytesPerDoc: 1 << 20).save(big)
        #expect(store.load("board:1") == nil)
        #expect(files(store) == ["doc-board=1.json.corrupt"])
    }

    @Test func docIDsMapToFilesInsideTheDirectoryOnly() throws {
        let store = try makeStore()
        #expect(store.path("..") == store.directory + "/doc-...json")
        #expect(store.path("a:b.c-d_e") == store.directory + "/doc-a=b.c-d_e.json")
        #expect(store.path("a/b") == nil)
        #expect(store.path("") == nil)
        #expect(store.path(String(repeating: "a", count: 129)) == nil)
    }

    /// The first stored push may have been sent (and committed) by the previous process: it is the push in
    /// flight, recognised in the catch-up by an old session, never folded into; the rest go out after it.
    @Test func aRestoredDocRecognisesItsFirstPushInTheCatchUpAndSendsTheRest() {
        var sync = DocSync(restoring: sample())
        #expect(sync.everSynced && sync.since == 7)
        #expect(sync.view["b"] == nil && sync.view["a"]?["x"] == .number(2), "the pending edits apply to the view")
        // A new edit is not folded into push 3 (which may be committed as it was).
        _ = sync.edit(ops(#"{"a":["patch",{"x":["put",3]}]}"#), ticket: 1, newID: 10)
        #expect(sync.pending.map(\.id) == [3, 5])
        #expect(sync.pending.first?.ops == ops(#"{"a":["patch",{"x":["put",2]}]}"#))
        _ = sync.joined(clock: 8)
        let actions = sync.log(
            entries: [(clock: 8, ops: ops(#"{"a":["patch",{"x":["put",2]}]}"#), by: "S1", id: 3)], more: false, sessions: ["S1", "S9"])
        guard case .commit(clock: 8, recovered: true)? = actions.lazy.compactMap({ action -> PushOutcome? in
            if case .settle(_, .success(let outcome)) = action { outcome } else { nil }
        }).first else {
            Issue.record("push 3 not recognised: \(actions)")
            return
        }
        let sent = actions.compactMap { if case .send(let id, let base, _) = $0 { (id, base) } else { nil } }
        #expect(sent.map(\.0) == [5] && sent.map(\.1) == [8], "then push 5, on the new head")
        #expect(sync.stored(doc: "board:1", nextPushID: 11, sessions: ["S9"])?.pending.map(\.id) == [5])
    }

    @Test func nothingIsStoredBeforeTheFirstSync() {
        #expect(DocSync().stored(doc: "d", nextPushID: 1, sessions: []) == nil)
    }
}
