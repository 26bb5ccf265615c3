import Testing
import TandemCore

/// Version history's pure parts (issue 15): segment and checkpoint forms, replay to a clock, restore ops,
/// the seal and checkpoint policy, and the history routes' parameter checks.
@Suite struct HistoryCoreTests {
    private func json(_ text: String) -> JSONValue { try! JSONParser.parse(text) }

    private func commit(_ clock: UInt64, _ ops: String, by: String = "s1", at: UInt64 = 1_000) -> CommitNotice {
        CommitNotice(clock: clock, ops: json(ops), by: by, node: "n1", pushID: .number(clock), committedAtMs: at)
    }

    /// What a segment keeps of a commit: everything but a push id that is not a note (an object).
    private func sealed(_ commit: CommitNotice) -> CommitNotice {
        var kept = commit
        if kept.pushID?.isObject != true { kept.pushID = nil }
        return kept
    }

    @Test func segmentsRoundTripAndRefuseGapsAndGarbage() throws {
        let commits = [commit(5, #"{"a":["put",{"x":1}]}"#), commit(6, #"{"a":["patch",{"x":["put",2]}]}"#, by: "s2", at: 1_001)]
        let decoded = try HistoryCodec.decodeSegment(HistoryCodec.encodeSegment(commits))
        #expect(decoded == commits.map(sealed))
        // A node's clock may step back: times are deltas and may be negative; push ids may be absent, and
        // a note (a fork's) is kept.
        var skewed = (7...10).map { commit(UInt64($0), #"{"a":["remove"]}"#, by: "s\($0 % 2)", at: [500, 400, 900, 900][$0 - 7]) }
        skewed[1].pushID = nil
        skewed[2].node = "n2"
        skewed[3].pushID = json(#"{"forkOf":"d","clock":3}"#)
        #expect(try HistoryCodec.decodeSegment(HistoryCodec.encodeSegment(skewed)) == skewed.map(sealed))
        #expect(try HistoryCodec.decodeSegment(HistoryCodec.encodeSegment([])) == [])
        #expect(throws: HistoryError.self) { try HistoryCodec.decodeSegment(Array("not json".utf8)) }
        for bad in [
            #"{"v":1,"commits":[]}"#,
            #"{"v":2,"first":1,"sessions":["s"],"nodes":["n"],"by":[0,0],"node":[0],"at":[1],"id":[1],"ops":[{}]}"#,
            #"{"v":2,"first":1,"sessions":["s"],"nodes":["n"],"by":[3],"node":[0],"at":[1],"id":[1],"ops":[{}]}"#,
            #"{"v":2,"first":1,"sessions":["s"],"nodes":["n"],"by":[0],"node":[0],"at":[-1],"id":[1],"ops":[{}]}"#,
            #"{"v":2,"first":1,"sessions":["s"],"nodes":["n"],"by":[0],"node":[0],"at":[1],"id":[1],"ops":[[]]}"#,
            #"{"v":2,"first":1,"sessions":["s"],"nodes":["n"],"by":[0],"node":[0],"at":[9223372036854775807,1],"id":[1,1],"ops":[{},{}]}"#,
            #"{"v":2,"first":1,"sessions":["s"],"nodes":["n"],"by":[0],"node":[0],"at":[1],"ops":[{}]}"#,
            #"{"v":3,"first":1,"sessions":["s"],"nodes":["n"],"by":"AA","node":"A","at":[1],"notes":{},"ops":[{}]}"#,
            #"{"v":3,"first":1,"sessions":["s"],"nodes":["n"],"by":"B","node":"A","at":[1],"notes":{},"ops":[{}]}"#,
            #"{"v":3,"first":1,"sessions":["s"],"nodes":["n"],"by":"*","node":"A","at":[1],"notes":{},"ops":[{}]}"#,
            #"{"v":3,"first":1,"sessions":["s"],"nodes":["n"],"by":"A","node":"A","at":[1],"notes":{"1":{}},"ops":[{}]}"#,
            #"{"v":3,"first":1,"sessions":["s"],"nodes":["n"],"by":"A","node":"A","at":[1],"notes":{"x":{}},"ops":[{}]}"#,
            #"{"v":3,"first":1,"sessions":["s"],"nodes":["n"],"by":7,"node":"A","at":[1],"notes":{},"ops":[{}]}"#,
        ] {
            #expect(throws: HistoryError.self, "\(bad)") { try HistoryCodec.decodeSegment(Array(bad.utf8)) }
        }
    }

    /// v3's form: one character per commit for `by`/`node` up to 64 sessions, index arrays beyond; no
    /// push ids; and v2 segments written before it still read.
    @Test func segmentV3FormAndV2StillReads() throws {
        let few = (1...4).map { commit(UInt64($0), #"{"a":["remove"]}"#, by: "s\($0 % 2)") }
        let form = try #require(try JSONParser.parse(HistoryCodec.encodeSegment(few)).objectValue)
        #expect(form["v"] == .number("3"))
        #expect(form["by"] == .string("ABAB"))
        #expect(form["node"] == .string("AAAA"))
        #expect(form["notes"] == json("{}"))
        #expect(form["id"] == nil)
        let parts = HistoryCodec.encodeSegmentParts(few)
        #expect(parts.columns + parts.times + parts.ops == HistoryCodec.encodeSegment(few))
        #expect(String(decoding: parts.columns.suffix(14), as: UTF8.self) == #""node":"AAAA","#)
        #expect(String(decoding: parts.times.prefix(5), as: UTF8.self) == #""at":"#)
        #expect(String(decoding: parts.times.suffix(6), as: UTF8.self) == #""ops":"#)
        let many = (1...70).map { commit(UInt64($0), #"{"a":["remove"]}"#, by: "s\($0)") }
        let manyForm = try #require(try JSONParser.parse(HistoryCodec.encodeSegment(many)).objectValue)
        #expect(manyForm["by"]?.arrayValue?.count == 70)
        #expect(try HistoryCodec.decodeSegment(HistoryCodec.encodeSegment(many)) == many.map(sealed))
        let v2 = #"{"v":2,"first":4,"sessions":["s"],"nodes":["n"],"by":[0,0],"node":[0,0],"at":[10,-2],"id":[7,null],"ops":[{},{"a":["remove"]}]}"#
        let old = try HistoryCodec.decodeSegment(Array(v2.utf8))
        #expect(old.map(\.clock) == [4, 5])
        #expect(old.map(\.pushID) == [.number("7"), nil])
        #expect(old.map(\.committedAtMs) == [10, 8])
    }

    @Test func checkpointsRoundTrip() throws {
        let checkpoint = HistoryCheckpoint(clock: 7, atMs: 99, records: ["a": json(#"{"x":[1,2]}"#), "b/é": json("{}")])
        #expect(try HistoryCodec.decodeCheckpoint(HistoryCodec.encodeCheckpoint(checkpoint)) == checkpoint)
        // The Lua base checkpoint's form (cjson escapes '/').
        let lua = try HistoryCodec.decodeCheckpoint(Array(#"{"clock":3,"at":5,"records":{"b\/x":{"v":1}}}"#.utf8))
        #expect(lua.records == ["b/x": json(#"{"v":1}"#)])
    }

    @Test func replayReachesEveryClockAndRefusesMissingCommits() throws {
        let base = HistoryCheckpoint(clock: 2, atMs: 0, records: ["a": json(#"{"n":0}"#)])
        let commits = [
            commit(3, #"{"a":["patch",{"n":["put",1]}],"b":["put",{"s":"x"}]}"#),
            commit(4, #"{"b":["patch",{"s":["append","yz",1]}]}"#),
            commit(5, #"{"a":["remove"]}"#),
        ]
        #expect(try HistoryReplay.state(from: base, commits: commits, to: 2).records == base.records)
        #expect(try HistoryReplay.state(from: base, commits: commits, to: 3).records == ["a": json(#"{"n":1}"#), "b": json(#"{"s":"x"}"#)])
        #expect(try HistoryReplay.state(from: base, commits: commits, to: 5).records == ["b": json(#"{"s":"xyz"}"#)])
        #expect(throws: HistoryError.self) { try HistoryReplay.state(from: base, commits: commits, to: 6) }
        #expect(throws: HistoryError.self) { try HistoryReplay.state(from: base, commits: [commits[0], commits[2]], to: 5) }
        #expect(throws: HistoryError.self) { try HistoryReplay.state(from: base, commits: commits, to: 1) }
        #expect(throws: HistoryError.self) {
            try HistoryReplay.state(from: base, commits: [commit(3, #"{"a":["explode"]}"#)], to: 3)
        }
    }

    @Test func restoreOpsTurnTheCurrentStateIntoTheTarget() throws {
        let current: [String: JSONValue] = ["a": json(#"{"n":2}"#), "b": json("{}"), "c": json(#"{"k":1}"#)]
        let target: [String: JSONValue] = ["a": json(#"{"n":1}"#), "c": json(#"{"k":1}"#), "d": json(#"{"new":true}"#)]
        let ops = HistoryReplay.restoreOps(from: current, to: target)
        #expect(ops == Ops(["a": .put(json(#"{"n":1}"#)), "b": .remove, "d": .put(json(#"{"new":true}"#))]))
        var replica = DocReplica(head: 9, records: current)
        replica.apply(clock: 10, ops: ops)
        #expect(replica.records == target)
        #expect(HistoryReplay.restoreOps(from: target, to: target).isEmpty)

        let batch = try #require(
            HistoryReplay.restoreBatch(
                current: DocReplica(head: 9, records: current, versions: ["a": 4, "b": 5, "c": 6]), target: target,
                sessionID: "ops", pushID: .string("r")))
        #expect(batch.expectations == ["a": .version(4), "b": .version(5), "d": .absent])
        #expect(batch.created == 1 && batch.removed == 1)
        #expect(batch.writes["b"]?.value == nil && batch.writes["d"]?.wasMissing == true)
        #expect(HistoryReplay.restoreBatch(current: DocReplica(records: target), target: target, sessionID: "ops", pushID: .null) == nil)
    }

    @Test func lastCommitAtOrBeforeATimeToleratesSkewedClocks() {
        let commits = [commit(1, "{}", at: 100), commit(2, "{}", at: 200), commit(3, "{}", at: 150), commit(4, "{}", at: 300)]
        #expect(HistoryReplay.lastCommit(atOrBefore: 99, in: commits) == nil)
        #expect(HistoryReplay.lastCommit(atOrBefore: 100, in: commits) == 1)
        #expect(HistoryReplay.lastCommit(atOrBefore: 250, in: commits) == 3, "150 after 200 counts as 200")
        #expect(HistoryReplay.lastCommit(atOrBefore: 1_000, in: commits) == 4)
    }

    @Test func sealingAndCheckpointPolicy() {
        let policy = HistoryPolicy(segmentCommits: 256, checkpointEvery: 1_000, checkpointIntervalMs: 3_600_000, retention: 10_000)
        #expect(!policy.shouldSeal(unsealed: 0, oldestUnsealedAtMs: 0, nowMs: 10_000_000))
        #expect(!policy.shouldSeal(unsealed: 255, oldestUnsealedAtMs: 1_000, nowMs: 2_000))
        #expect(policy.shouldSeal(unsealed: 256, oldestUnsealedAtMs: 1_000, nowMs: 2_000))
        #expect(policy.shouldSeal(unsealed: 1, oldestUnsealedAtMs: 1_000, nowMs: 3_601_000), "an hour old: sealed")
        #expect(!policy.shouldSeal(unsealed: 1, oldestUnsealedAtMs: 5_000, nowMs: 1_000), "a clock behind the commit's")
        // A retention smaller than a segment seals at the retention (the log's trim waits for it).
        #expect(HistoryPolicy(segmentCommits: 256, retention: 20).shouldSeal(unsealed: 20, oldestUnsealedAtMs: 0, nowMs: 0))
        #expect(policy.segmentEnd(sealed: 100, available: 1_000, lastCheckpoint: 0) == 356)
        #expect(policy.segmentEnd(sealed: 900, available: 1_100, lastCheckpoint: 0) == 1_000, "ends where a checkpoint is due")
        #expect(policy.segmentEnd(sealed: 1_000, available: 1_100, lastCheckpoint: 1_000) == 1_100)
        #expect(policy.segmentEnd(sealed: 5, available: 5, lastCheckpoint: 0) == 5)
        #expect(policy.checkpointDue(clock: 1_000, atMs: 0, lastCheckpoint: 0, lastCheckpointAtMs: 0))
        #expect(!policy.checkpointDue(clock: 999, atMs: 10, lastCheckpoint: 0, lastCheckpointAtMs: 0))
        #expect(policy.checkpointDue(clock: 1_010, atMs: 3_600_500, lastCheckpoint: 1_000, lastCheckpointAtMs: 500))
        #expect(!policy.checkpointDue(clock: 1_000, atMs: 9_999_999, lastCheckpoint: 1_000, lastCheckpointAtMs: 0))

        // The defaults: segments of two checkpoint intervals, ending where a checkpoint is due, with the
        // one in their middle; a segment sealed early (an hour passed, a flush) is followed by one that
        // ends at the next interval but one.
        let defaults = HistoryPolicy()
        #expect(defaults.segmentCommits == 2_048 && defaults.checkpointEvery == 1_000)
        #expect(defaults.segmentEnd(sealed: 2_000, available: 9_000, lastCheckpoint: 2_000) == 4_000)
        #expect(defaults.checkpointClocks(sealed: 2_000, end: 4_000, endAtMs: 9, lastCheckpoint: 2_000, lastCheckpointAtMs: 0) == [3_000, 4_000])
        #expect(defaults.segmentEnd(sealed: 2_500, available: 9_000, lastCheckpoint: 2_000) == 4_000)
        #expect(defaults.checkpointClocks(sealed: 2_500, end: 4_000, endAtMs: 9, lastCheckpoint: 2_000, lastCheckpointAtMs: 0) == [3_000, 4_000])
        #expect(defaults.segmentEnd(sealed: 2_000, available: 2_500, lastCheckpoint: 2_000) == 2_500)
        #expect(defaults.checkpointClocks(sealed: 2_000, end: 2_500, endAtMs: 9, lastCheckpoint: 2_000, lastCheckpointAtMs: 0).isEmpty)
        #expect(defaults.checkpointClocks(sealed: 2_000, end: 2_500, endAtMs: 3_600_001, lastCheckpoint: 2_000, lastCheckpointAtMs: 1) == [2_500])
        #expect(defaults.checkpointClocks(sealed: 2_000, end: 2_500, endAtMs: 9, lastCheckpoint: 2_000, lastCheckpointAtMs: 0, force: true) == [2_500])
        // A checkpoint that was not made where due (history rebased at the head) counts from there.
        #expect(defaults.segmentEnd(sealed: 2_500, available: 9_000, lastCheckpoint: 0) == 4_000)
        // Tiny intervals: at most `maxCheckpointsPerSegment` checkpoints in one segment.
        let tiny = HistoryPolicy(checkpointEvery: 5)
        #expect(tiny.segmentEnd(sealed: 0, available: 1_000, lastCheckpoint: 0) == 5 * UInt64(HistoryPolicy.maxCheckpointsPerSegment))
        #expect(tiny.checkpointClocks(sealed: 3, end: 17, endAtMs: 0, lastCheckpoint: 0, lastCheckpointAtMs: 0) == [5, 10, 15])
        // Up to blobs v3 (`--history-format 3`): a segment ends at the first checkpoint due in it, as those
        // nodes' readers need (a segment starts right after its checkpoint).
        var v3 = HistoryPolicy(segmentCommits: 1_024)
        v3.checkpointsInsideSegments = false
        #expect(v3.segmentEnd(sealed: 2_000, available: 9_000, lastCheckpoint: 2_000) == 3_000)
        #expect(v3.segmentEnd(sealed: 2_500, available: 9_000, lastCheckpoint: 2_000) == 3_000)
        #expect(v3.segmentEnd(sealed: 3_000, available: 3_500, lastCheckpoint: 3_000) == 3_500)
        #expect(HistoryPolicy().fullCheckpointEvery == HistoryPolicy.defaultFullCheckpointEvery)
    }

    /// Delta checkpoints (blobs v5): the ops from one checkpoint to the next, field by field, give the
    /// next one exactly; a delta applied to any other checkpoint, or damaged, is refused.
    @Test func checkpointDeltasRoundTripAndRefuseTheWrongBase() throws {
        var rng = SystemRandomNumberGenerator()
        var records: [String: JSONValue] = [:]
        for i in 0..<200 { records["r\(i)"] = json(#"{"title":"record \#(i)","n":0,"text":"xxxxxxxx","tags":["a","b"]}"#) }
        var base = HistoryCheckpoint(clock: 1_000, atMs: 5, records: records)
        for round in 1...20 {
            var next = base.records
            for _ in 0..<60 {
                let id = "r\(Int.random(in: 0..<220, using: &rng))"
                switch Int.random(in: 0..<10, using: &rng) {
                case 0: next.removeValue(forKey: id)
                case 1: next[id] = json(#"{"other":[1,{"deep":true}]}"#)
                case 2: next[id] = json(#"{"title":"t","n":\#(round)}"#)  // fields dropped
                case 3: next[id] = json("{}")
                default:
                    var object = next[id]?.objectValue ?? [:]
                    object["n"] = .number(String(Int.random(in: 0..<100_000, using: &rng)))
                    if Bool.random(using: &rng) { object["nested"] = json(#"{"a":{"b":\#(round)}}"#) }
                    next[id] = .object(object)
                }
            }
            let target = HistoryCheckpoint(clock: base.clock + 1_000, atMs: base.atMs + 7, records: next)
            let delta = HistoryCodec.encodeCheckpointDelta(from: base, to: target)
            #expect(try HistoryCodec.applyCheckpointDelta(delta, to: base) == target, "round \(round)")
            #expect(delta.count < HistoryCodec.encodeCheckpoint(target).count / 2, "a delta holds what changed: \(delta.count) B")
            base = target
        }
        // One field of one record: a patch of that field, not the record.
        let one = HistoryCheckpoint(clock: 9, atMs: 0, records: ["a": json(#"{"x":1,"y":"long text here"}"#)])
        let two = HistoryCheckpoint(clock: 12, atMs: 3, records: ["a": json(#"{"x":2,"y":"long text here"}"#)])
        let small = HistoryCodec.encodeCheckpointDelta(from: one, to: two)
        #expect(String(decoding: small, as: UTF8.self) == #"{"clock":12,"at":3,"base":9,"ops":{"a":["patch",{"x":["put",2]}]}}"#)
        #expect(try HistoryCodec.applyCheckpointDelta(small, to: one) == two)
        // The wrong base, a base after it, malformed: corrupt, never a wrong state.
        #expect(throws: HistoryError.self) { try HistoryCodec.applyCheckpointDelta(small, to: two) }
        #expect(throws: HistoryError.self) {
            try HistoryCodec.applyCheckpointDelta(Array(#"{"clock":9,"at":0,"base":9,"ops":{}}"#.utf8), to: one)
        }
        for bad in [
            #"{"clock":12,"base":9}"#, #"{"clock":12,"base":9,"ops":{"a":["nope"]}}"#, #"{"clock":12,"base":9,"ops":[]}"#, "{",
            #"{"clock":12,"base":9,"ops":{"zz":["patch",{"x":["put",1]}]}}"#, #"{"clock":12,"base":9,"ops":{"a":["patch",{"x":["append","y",0]}]}}"#,
            #"{"clock":12,"base":9,"ops":{"a":["put",[]]}}"#,
        ] {
            #expect(throws: HistoryError.self, "\(bad)") { try HistoryCodec.applyCheckpointDelta(Array(bad.utf8), to: one) }
        }
    }

    @Test func versionEntriesAreBounded() throws {
        let commits = (1...40).map { commit(UInt64($0), "{}", by: "s\($0)") }
        let version = try #require(HistoryVersion.summarizing(commits, since: 0, authors: Set(commits.map(\.by))))
        #expect(version.clock == 40 && version.commits == 40 && version.by.count == HistoryVersion.maxAuthors && version.moreAuthors)
        #expect(try HistoryVersion(json: version.json) == version)
        #expect(throws: HistoryError.self) { try HistoryVersion(json: Array("[]".utf8)) }
    }

    @Test func stateAnswersComeInBoundedChunks() throws {
        var records: [String: JSONValue] = [:]
        for i in 0..<(ServerMessage.maxChunkItems + 10) { records["r\(i)"] = .object(["i": .number(i)]) }
        var chunker = HistoryStateChunker(doc: "d", clock: 9, atMs: 5, records: records)
        var seen: [String: JSONValue] = [:]
        var mores: [Bool] = []
        while let chunk = chunker.next() {
            let o = try #require(try JSONParser.parse(chunk).objectValue)
            #expect(o["t"] == .string("at") && o["clock"] == .number(UInt64(9)) && o["at"] == .number(UInt64(5)))
            seen.merge(o["records"]?.objectValue ?? [:]) { a, _ in a }
            mores.append(o["more"] == .bool(true))
        }
        #expect(mores == [true, false] && seen == records)
        var empty = HistoryStateChunker(doc: "d", clock: 0, atMs: 0, records: [:])
        #expect(empty.next().map { String(decoding: $0, as: UTF8.self) } == #"{"t":"at","doc":"d","clock":0,"at":0,"records":{},"more":false}"#)
        #expect(empty.next() == nil)
    }

    @Test func historyMessagesDecode() throws {
        let limits = ProtocolLimits()
        func decode(_ text: String) throws -> ClientMessage { try ClientMessage.decode(Array(text.utf8), limits: limits) }
        #expect(try decode(#"{"t":"history","doc":"d"}"#) == .history(doc: "d", before: nil, limit: nil))
        #expect(try decode(#"{"t":"history","doc":"d","before":5,"limit":100}"#) == .history(doc: "d", before: 5, limit: 100))
        #expect(try decode(#"{"t":"at","doc":"d","clock":3}"#) == .at(doc: "d", clock: 3, time: nil))
        #expect(try decode(#"{"t":"at","doc":"d","time":1700000000000}"#) == .at(doc: "d", clock: nil, time: 1_700_000_000_000))
        #expect(try decode(#"{"t":"restore","doc":"d","clock":0}"#) == .restore(doc: "d", clock: 0))
        for bad in [
            #"{"t":"history","doc":"d","limit":0}"#, #"{"t":"history","doc":"d","limit":101}"#, #"{"t":"history","doc":"d","before":-1}"#,
            #"{"t":"at","doc":"d"}"#, #"{"t":"at","doc":"d","clock":1,"time":2}"#, #"{"t":"at","doc":"d","clock":9007199254740992}"#,
            #"{"t":"at","doc":"d","time":"x"}"#, #"{"t":"restore","doc":"d"}"#, #"{"t":"restore","doc":"d","clock":1.5}"#,
        ] {
            #expect(throws: ProtocolError.self, "\(bad)") { try decode(bad) }
        }
    }

    @Test func historyRoutesCheckTheirParameters() {
        func parse(_ path: String, _ query: [String: String]) -> Result<OpsRoute, OpsRouteError> { OpsRoute.parse(path: path, query: query) }
        func status(_ r: Result<OpsRoute, OpsRouteError>) -> Int? { if case .failure(let e) = r { return e.status } else { return nil } }
        #expect(parse("/api/docs/d/at", ["clock": "5"]) == .success(.docAt(doc: "d", point: .clock(5))))
        #expect(parse("/api/docs/d/at", ["time": "1700000000000"]) == .success(.docAt(doc: "d", point: .time(1_700_000_000_000))))
        #expect(parse("/api/docs/d/versions", [:]) == .success(.docVersions(doc: "d", before: nil, limit: OpsRoute.defaultVersionsLimit)))
        #expect(parse("/api/docs/d/restore", ["clock": "0"]) == .success(.docRestore(doc: "d", clock: 0)))
        #expect(parse("/api/docs/d/fork", ["clock": "3", "to": "e"]) == .success(.docFork(doc: "d", clock: 3, to: "e")))
        for query in [[:], ["clock": "-1"], ["clock": "9007199254740992"], ["clock": "1e3"], ["clock": "1", "time": "2"], ["time": "-5"],
            ["time": "99999999999999999999"]]
        {
            #expect(status(parse("/api/docs/d/at", query)) == 400, "\(query)")
        }
        #expect(status(parse("/api/docs/d/versions", ["limit": "0"])) == 400)
        #expect(status(parse("/api/docs/d/versions", ["limit": "1001"])) == 400)
        #expect(status(parse("/api/docs/d/versions", ["before": "x"])) == 400)
        #expect(status(parse("/api/docs/d/restore", [:])) == 400)
        #expect(status(parse("/api/docs/d/fork", ["clock": "1"])) == 400)
        #expect(status(parse("/api/docs/d/fork", ["clock": "1", "to": "a/b"])) == 400)
        #expect(status(parse("/api/docs/d/fork", ["clock": "1", "to": "d"])) == 400)
        #expect(status(parse("/api/docs/d/nope", [:])) == 404)
        #expect(OpsRoute.docRestore(doc: "d", clock: 1).isWrite && !OpsRoute.docAt(doc: "d", point: .clock(1)).isWrite)
    }
}
