import Testing
@testable import TandemCore

@Suite struct OpsTests {
    @Test func parsesAndSerializesEveryOp() throws {
        let text = #"{"a":["put",{"x":1}],"b":["patch",{"f":["put",2],"g":["delete"],"h":["patch",{"i":["append","z",3]}],"j":["append",[1],0]}],"c":["remove"]}"#
        let ops = try Ops(json: try JSONParser.parse(text))
        #expect(ops.records.count == 3)
        #expect(try Ops(json: ops.json) == ops)
    }

    @Test(arguments: [
        #"[]"#, #"{"a":"put"}"#, #"{"a":["put"]}"#, #"{"a":["put",1]}"#, #"{"a":["zap"]}"#, #"{"a":["remove",1]}"#,
        #"{"a":["patch",[]]}"#, #"{"a":["patch",{"f":["append",1,0]}]}"#, #"{"a":["patch",{"f":["append","x",-1]}]}"#,
        #"{"a":["patch",{"f":["append","x",1.5]}]}"#, #"{"a":["patch",{"f":["delete",1]}]}"#, #"{"":["remove"]}"#,
    ])
    func rejectsMalformedOps(_ text: String) throws {
        #expect(throws: ProtocolError.self) { try Ops(json: try JSONParser.parse(text)) }
    }

    /// An error names where in the ops it is, client-chosen names cut short (the path is made only when
    /// an error is thrown: issue 8).
    @Test func anErrorNamesItsPathWithLongNamesCutShort() throws {
        func message(_ text: String) throws -> String? {
            do {
                _ = try Ops(json: try JSONParser.parse(text))
                return nil
            } catch let error as ProtocolError {
                return error.message
            }
        }
        #expect(try message(#"{"r1":["zap"]}"#) == #"ops.r1: unknown op "zap" or wrong arity"#)
        #expect(try message(#"{"r1":["put",1]}"#) == "ops.r1: a record must be an object")
        #expect(try message(#"{"r1":["patch",{"a":["patch",{"b":["append","x",-1]}]}]}"#) == "r1.a.b: append offset must be a non-negative integer")
        #expect(try message(#"{"r1":["patch",{"a":["patch",[]]}]}"#) == "r1.a: a diff must be an object")
        let long = String(repeating: "f", count: 40)
        #expect(try message(#"{"r1":["patch",{"\#(long)":["delete",1]}]}"#) == #"r1.\#(String(repeating: "f", count: 32))…: unknown field op "delete" or wrong arity"#)
        // Passing records and fields make no path at all; the error names only the one that failed.
        #expect(try message(#"{"ok":["put",{}],"r2":["patch",{"x":["put",1],"y":["append",1,0]}]}"#) == "r2.y: append takes a string or an array")
    }
}

@Suite struct DecisionTests {
    func ops(_ text: String) throws -> Ops { try Ops(json: try JSONParser.parse(text)) }
    let limits = SyncLimits()

    func replica(_ records: [String: String], head: UInt64 = 5, versions: [String: UInt64] = [:]) throws -> DocReplica {
        var parsed: [String: JSONValue] = [:]
        var v: [String: UInt64] = [:]
        for (id, text) in records {
            parsed[id] = try JSONParser.parse(text)
            v[id] = versions[id] ?? 1
        }
        return DocReplica(head: head, records: parsed, versions: v)
    }

    @Test func putsCommitExactly() throws {
        let decision = try replica([:]).decide(ops: try ops(#"{"a":["put",{"x":1}]}"#), base: 5, limits: limits)
        #expect(decision.action == .commit)
        #expect(decision.expectations["a"] == .absent)
        #expect(decision.created == 1)
        #expect(decision.writes["a"]! == Array(#"{"x":1}"#.utf8))
    }

    @Test func patchOfARemovedRecordIsDroppedFromAPushThatOtherwiseApplies() throws {
        var state = try replica(["a": #"{"x":1}"#])
        state.apply(clock: 6, ops: try ops(#"{"b":["remove"]}"#))
        let decision = try state.decide(ops: try ops(#"{"a":["patch",{"x":["put",2]}],"b":["patch",{"y":["put",1]}]}"#), base: 5, limits: limits)
        #expect(decision.action == .rebase)
        #expect(decision.applied == (try ops(#"{"a":["patch",{"x":["put",2]}]}"#)))
        #expect(decision.conflicted == false)  // b never existed before base: not a concurrent change
    }

    @Test func everyOpVoidIsADiscardAndAConflictWhenCausedByAConcurrentChange() throws {
        var state = try replica(["a": #"{"x":1}"#])
        state.apply(clock: 6, ops: try ops(#"{"a":["remove"]}"#))
        let decision = try state.decide(ops: try ops(#"{"a":["patch",{"x":["put",2]}]}"#), base: 5, limits: limits)
        #expect(decision.action == .discard)
        #expect(decision.reason == "void")
        #expect(decision.conflicted)
        #expect(decision.expectations["a"] == .absent)
    }

    @Test func appendAtTheCurrentLengthCommitsOtherwiseMovesToTheCurrentLength() throws {
        let state = try replica(["a": #"{"t":"héllo","l":[1,2]}"#])
        let exact = try state.decide(ops: try ops(#"{"a":["patch",{"t":["append","!",5],"l":["append",[3],2]}]}"#), base: 5, limits: limits)
        #expect(exact.action == .commit)
        #expect(exact.writes["a"]! == Array(#"{"l":[1,2,3],"t":"héllo!"}"#.utf8))
        let stale = try state.decide(ops: try ops(#"{"a":["patch",{"t":["append","!",3]}]}"#), base: 4, limits: limits)
        #expect(stale.action == .rebase)
        #expect(stale.applied == (try ops(#"{"a":["patch",{"t":["append","!",5]}]}"#)))
        #expect(stale.writes["a"]! == Array(#"{"l":[1,2],"t":"héllo!"}"#.utf8))
    }

    /// Hashes the caller computed already (the batch's, for its checksum deltas) are taken as they are:
    /// the replica does not hash those records again.
    @Test func applyTakesTheRecordHashesItIsGiven() throws {
        var replica = DocReplica()
        let given = DocChecksum.record(id: "other", value: .number("1"))
        replica.apply(clock: 1, ops: try ops(#"{"a":["put",{"x":1}],"b":["put",{}]}"#), knownHashes: ["a": given])
        #expect(replica.hash(of: "a") == given)
        #expect(replica.hash(of: "b") == DocChecksum.record(id: "b", value: .object([:])))
        #expect(replica.sum == given + DocChecksum.record(id: "b", value: .object([:])))
    }

    @Test func appendCountsUTF16CodeUnitsLikeJavaScript() throws {
        let state = try replica(["a": #"{"t":"😀"}"#])
        #expect(try state.decide(ops: try ops(#"{"a":["patch",{"t":["append","x",2]}]}"#), base: 5, limits: limits).action == .commit)
    }

    @Test func nestedPatchNeedsAnObject() throws {
        let state = try replica(["a": #"{"o":{"p":1},"n":3}"#])
        let decision = try state.decide(ops: try ops(#"{"a":["patch",{"o":["patch",{"q":["put",2]}],"n":["patch",{"z":["put",1]}]}]}"#), base: 5, limits: limits)
        #expect(decision.action == .rebase)
        #expect(decision.writes["a"]! == Array(#"{"n":3,"o":{"p":1,"q":2}}"#.utf8))
    }

    @Test func removeOfAMissingRecordIsVoid() throws {
        let decision = try replica([:]).decide(ops: try ops(#"{"a":["remove"]}"#), base: 5, limits: limits)
        #expect(decision.action == .discard)
    }

    @Test func limitsRefuseTheWholePush() throws {
        var small = limits
        small.maxRecordBytes = 16
        small.maxPushOps = 2
        small.maxDocRecords = 1
        let state = try replica(["a": #"{}"#])
        #expect(throws: ProtocolError.self) {
            try state.decide(ops: try ops(#"{"b":["put",{"long":"xxxxxxxxxxxxxxxx"}]}"#), base: 5, limits: small)
        }
        #expect(throws: ProtocolError.self) {
            try state.decide(ops: try ops(#"{"a":["remove"],"b":["remove"],"c":["remove"]}"#), base: 5, limits: small)
        }
        #expect(throws: ProtocolError.self) { try state.decide(ops: try ops(#"{"b":["put",{}]}"#), base: 5, limits: small) }
        // Replacing the only record is fine at the limit.
        #expect(try state.decide(ops: try ops(#"{"a":["put",{"x":1}]}"#), base: 5, limits: small).action == .commit)
    }

    @Test func replicaAppliesCommitsInOrderOnlyAndKeepsTombstones() throws {
        var state = DocReplica()
        #expect(!state.apply(clock: 2, ops: try ops(#"{"a":["put",{}]}"#)))
        #expect(state.apply(clock: 1, ops: try ops(#"{"a":["put",{"x":1}]}"#)))
        #expect(state.apply(clock: 2, ops: try ops(#"{"a":["remove"]}"#)))
        #expect(state.records.isEmpty)
        #expect(state.tombstones == ["a": 2])
        #expect(state.version(of: "a") == 2)
        state.compact(floor: 2)
        #expect(state.tombstones.isEmpty)
    }
}

@Suite struct SyncDocTests {
    func commit(_ clock: UInt64, _ id: String = "r") -> CommitNotice {
        CommitNotice(clock: clock, ops: .object([id: .array([.string("put"), .object(["c": .number(clock)])])]), by: "s", node: "n", pushID: nil, committedAtMs: 0)
    }

    @Test func ordersCommitsAndDeliversEachClockOnceToLiveMembers() {
        var doc = SyncDoc<Int>(retention: 100)
        #expect(doc.receive(commit(1)).isEmpty)  // before load: held
        _ = doc.load(DocReplica(), retainedFrom: 1)
        #expect(doc.head == 1)
        guard case .snapshot(let head, _) = doc.attach(7, since: nil) else { Issue.record("expected a snapshot"); return }
        #expect(head == 1)
        #expect(doc.receive(commit(3)).isEmpty)
        #expect(doc.gap == 2...2)
        let dispatches = doc.receive(commit(2))
        #expect(dispatches.map(\.commit.clock) == [2, 3])
        #expect(dispatches.map(\.recipients) == [[7], [7]])
        #expect(doc.receive(commit(2)).isEmpty)  // duplicate
        #expect(doc.cursor(of: 7) == 3)
    }

    /// The commits kept in memory are trimmed in steps (an eighth of the capacity at a time, so a full
    /// buffer is not shifted on every commit): the last `recentCapacity` are always there, contiguous,
    /// and never more than an eighth more.
    @Test func recentCommitsAreTrimmedInStepsAndStayContiguous() {
        var doc = SyncDoc<Int>(retention: 1000, recentCapacity: 16)
        _ = doc.load(DocReplica(), retainedFrom: 1)
        for c in UInt64(1)...100 {
            _ = doc.receive(commit(c))
            let kept = min(c, 16)
            #expect(doc.recentCommits(from: c - kept + 1, through: c)?.map(\.clock) == Array((c - kept + 1)...c))
            if c > 18 { #expect(doc.recentCommits(from: c - 18, through: c) == nil) }
        }
    }

    @Test func catchUpFromMemoryFromTheLogOrBySnapshot() {
        var doc = SyncDoc<Int>(retention: 5, recentCapacity: 3)
        _ = doc.load(DocReplica(), retainedFrom: 1)
        for c in UInt64(1)...10 { _ = doc.receive(commit(c)) }
        // In memory: clocks 8...10.
        #expect(doc.attach(1, since: 8) == .log([commit(9), commit(10)], head: 10))
        #expect(doc.attach(2, since: 10) == .log([], head: 10))
        // Retained in Redis (retention 5 → from 6) but not in memory: fetch, then continue.
        #expect(doc.attach(3, since: 6) == .fetch(from: 7, head: 10))
        #expect(doc.cursor(of: 3) == nil)
        #expect(doc.receive(commit(11)).first?.recipients.sorted() == [1, 2])
        #expect(doc.continueCatchUp(3, through: 8) == .log([commit(9), commit(10), commit(11)], head: 11))
        #expect(doc.cursor(of: 3) == 11)
        // Older than the retained history: snapshot.
        guard case .snapshot = doc.attach(4, since: 2) else { Issue.record("expected a snapshot"); return }
        // A since from the future is not trusted either.
        guard case .snapshot = doc.attach(5, since: 99) else { Issue.record("expected a snapshot"); return }
    }
}

@Suite struct SyncMessageTests {
    @Test func logChunksSplitAndFlagTheLast() throws {
        let entries = (1...12_000).map {
            CommitNotice(clock: UInt64($0), ops: .object([:]), by: "s", node: "n", pushID: .number("1"), committedAtMs: 0)
        }
        let chunks = Array(sequence(state: LogChunker(doc: "d", entries: entries, head: 12_000, moreAfter: false)) { $0.next() })
        #expect(chunks.count == 3)
        let parsed = try chunks.map { try JSONParser.parse($0).objectValue! }
        #expect(parsed.map { $0["more"] } == [.bool(true), .bool(true), .bool(false)])
        #expect(parsed.map { $0["entries"]!.arrayValue!.count } == [5000, 5000, 2000])
        var empty = LogChunker(doc: "d", entries: [], head: 0, moreAfter: false)
        #expect(empty.next() != nil)
        #expect(empty.next() == nil)
    }

    @Test func snapshotChunkerRespectsTheByteLimit() throws {
        let big = JSONValue.string(String(repeating: "x", count: 60_000))
        var records: [String: JSONValue] = [:]
        for i in 0..<40 { records["r\(i)"] = .object(["v": big]) }
        var chunker = SnapshotChunker(doc: "d", head: 9, records: records)
        var total = 0
        var chunks = 0
        while let chunk = chunker.next() {
            let object = try JSONParser.parse(chunk).objectValue!
            total += object["records"]!.objectValue!.count
            chunks += 1
            #expect(chunk.count < 2 * ServerMessage.maxChunkBytes)
        }
        #expect(total == 40)
        #expect(chunks == 3)
        var empty = SnapshotChunker(doc: "d", head: 0, records: [:])
        #expect(empty.next() != nil)
        #expect(empty.next() == nil)
    }
}
