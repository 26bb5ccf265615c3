import Testing

@testable import TandemCore

/// Pushes decided against a doc's record schema (issue 13): nothing invalid is ever committed, whichever
/// op produced the value, and the discard names the record and the failing path.
@Suite struct SchemaPushTests {
    typealias Pipeline = PushPipeline<Int>

    static let schemaFile = #"""
        {"docs": ["board:*"], "version": 2,
         "records": [
           {"name": "note", "idPrefix": "note:",
            "schema": {"type": "object", "required": ["text"], "additionalProperties": false,
                       "properties": {"text": {"type": "string", "maxLength": 5}, "tags": {"type": "array", "maxItems": 2}}}},
           {"name": "shape", "type": "shape",
            "schema": {"type": "object", "required": ["type", "x"],
                       "properties": {"type": {"const": "shape"}, "x": {"type": "number", "minimum": 0}}}}]}
        """#

    static let schema = try! DocSchema(json: try! JSONParser.parse(schemaFile), source: "board.json")

    static func ops(_ text: String) -> Ops { try! Ops(json: try! JSONParser.parse(text)) }

    static func replica(_ records: String) -> DocReplica {
        var replica = DocReplica()
        replica.apply(clock: 1, ops: ops(records))
        return replica
    }

    static func decide(_ replica: DocReplica, _ push: String) throws -> PushDecision {
        try replica.decide(ops: ops(push), base: replica.head, limits: SyncLimits(), schema: schema)
    }

    @Test func aValidPushCommitsAsWithoutASchema() throws {
        let decision = try Self.decide(DocReplica(), #"{"note:1":["put",{"text":"hi","tags":[1]}],"s1":["put",{"type":"shape","x":3}]}"#)
        #expect(decision.action == .commit && decision.violation == nil)
    }

    @Test func aPutThatBreaksTheSchemaDiscardsTheWholePushNamingRecordAndPath() throws {
        let decision = try Self.decide(
            DocReplica(), #"{"note:1":["put",{"text":"fine"}],"s1":["put",{"type":"shape","x":-1}]}"#)
        #expect(decision.action == .discard && decision.reason == "invalid")
        #expect(decision.applied.records.isEmpty && decision.writes.isEmpty && decision.expectations.isEmpty)
        #expect(decision.violation?.record == "s1" && decision.violation?.recordType == "shape")
        #expect(decision.violation?.path == "/x")
    }

    @Test func aPatchOrAnAppendIsCheckedOnTheValueItProduces() throws {
        let replica = Self.replica(#"{"note:1":["put",{"text":"abc","tags":[1]}]}"#)
        // Each op alone is well-formed; the results are too long.
        let append = try Self.decide(replica, #"{"note:1":["patch",{"text":["append","xyz",3]}]}"#)
        #expect(append.action == .discard && append.violation?.path == "/text")
        let appendItems = try Self.decide(replica, #"{"note:1":["patch",{"tags":["append",[2,3],1]}]}"#)
        #expect(appendItems.action == .discard && appendItems.violation?.path == "/tags")
        let deleteRequired = try Self.decide(replica, #"{"note:1":["patch",{"text":["delete"]}]}"#)
        #expect(deleteRequired.action == .discard && deleteRequired.violation?.record == "note:1")
        let extra = try Self.decide(replica, #"{"note:1":["patch",{"color":["put","red"]}]}"#)
        // As JSON Schema reports it: at the object, naming the property.
        #expect(extra.action == .discard && extra.violation?.path == "" && extra.violation?.message.contains("'color'") == true)
        // A stale append that the server rebases into a put is checked as that put.
        let stale = try replica.decide(
            ops: Self.ops(#"{"note:1":["patch",{"text":["append","de",1]}]}"#), base: 0, limits: SyncLimits(), schema: Self.schema)
        #expect(stale.action == .rebase, "abc + de at a stale offset: abcde fits")
        let fits = try Self.decide(replica, #"{"note:1":["patch",{"text":["append","de",3]}]}"#)
        #expect(fits.action == .commit)
    }

    @Test func recordsNoTypeSelectsAreRefusedUnlessTheSchemaAllowsOthers() throws {
        let refused = try Self.decide(DocReplica(), #"{"misc":["put",{"a":1}]}"#)
        #expect(refused.action == .discard && refused.violation?.recordType == nil)
        var open = Self.schema
        open.allowsOtherRecords = true
        let allowed = try DocReplica().decide(ops: Self.ops(#"{"misc":["put",{"a":1}]}"#), base: 0, limits: SyncLimits(), schema: open)
        #expect(allowed.action == .commit)
    }

    @Test func removalsAndUntouchedInvalidRecordsNeverBlockAPush() throws {
        // Written before the schema applied (or under an older one): still there, not checked until written.
        let replica = Self.replica(#"{"note:old":["put",{"text":"far too long"}],"note:2":["put",{"text":"ok"}]}"#)
        #expect(try Self.decide(replica, #"{"note:2":["patch",{"text":["put","new"]}]}"#).action == .commit)
        #expect(try Self.decide(replica, #"{"note:old":["remove"]}"#).action == .commit)
        #expect(try Self.decide(replica, #"{"note:old":["patch",{"text":["put","short"]}]}"#).action == .commit)
    }

    @Test func inABatchAnInvalidPushIsDiscardedAndTheOthersCommit() {
        var settings = PushPipelineSettings(nodeID: "me")
        settings.maxBatchPushes = 10
        settings.maxBatchesInFlight = 1  // (the pushes after the first wait and form one batch)
        var pipeline = Pipeline(settings: settings, randomSeed: 7)
        pipeline.schema = Self.schema
        _ = pipeline.load(DocReplica(), retainedFrom: 1, now: 0)
        _ = pipeline.attach(1, since: 0, now: 0)
        _ = pipeline.attach(2, since: 0, now: 0)
        func push(_ member: Int, _ id: Int, _ ops: String) -> [PushAction<Int>] {
            pipeline.push(
                from: member, sessionID: "s\(member)", pushID: .number(id), base: pipeline.head, ops: Self.ops(ops),
                bytes: ops.utf8.count, readOnly: false, now: 1)
        }
        guard case .commit(let first)? = push(1, 1, #"{"note:1":["put",{"text":"a"}]}"#).first else {
            Issue.record("no first batch")
            return
        }
        _ = push(2, 1, #"{"note:1":["patch",{"text":["append","b",1]}]}"#)
        _ = push(1, 2, #"{"note:1":["patch",{"text":["append","cdefg",2]}]}"#)  // "abcdefg": too long
        _ = push(2, 2, #"{"note:1":["patch",{"text":["append","c",2]}]}"#)  // decided after the discard: "abc"
        let second = pipeline.commitReplied(batchID: first.id, .committed(firstClock: 1, atMs: 1), now: 2)
        guard let batch = second.compactMap({ action -> CommitBatch? in
            if case .commit(let batch) = action { return batch }
            return nil
        }).first else {
            Issue.record("no second batch: \(second)")
            return
        }
        #expect(batch.commits.map(\.sessionID) == ["s2", "s2"])
        let answered = pipeline.commitReplied(batchID: batch.id, .committed(firstClock: 2, atMs: 1), now: 3)
        let discards = answered.compactMap { action -> PushReply<Int>? in
            if case .answer(let reply) = action { return reply }
            return nil
        }
        #expect(discards.count == 1)
        #expect(discards.first?.member == 1 && discards.first?.violation?.path == "/text")
        #expect(discards.first?.answer == .result(action: .discard, clock: 2, applied: nil, reason: "invalid"))
        #expect(pipeline.head == 3)
    }

    @Test func theDiscardCarriesTheViolationOnTheWire() throws {
        let violation = RecordViolation(record: "s1", recordType: "shape", path: "/x", message: "below the minimum 0")
        let bytes = ServerMessage.result(
            doc: "board:1", id: .number(4), action: .discard, clock: 7, applied: nil, reason: "invalid", violation: violation)
        let message = try JSONParser.parse(bytes)
        #expect(message.objectValue?["reason"]?.stringValue == "invalid")
        #expect(
            message.objectValue?["invalid"]
                == (try JSONParser.parse(#"{"record":"s1","type":"shape","path":"/x","message":"below the minimum 0"}"#)))
    }

    @Test func aJoinMayStateTheSchemaVersionItWasBuiltFor() throws {
        let limits = ProtocolLimits()
        #expect(
            try ClientMessage.decode(Array(#"{"t":"join","doc":"board:1","schema":2}"#.utf8), limits: limits)
                == .join(doc: "board:1", state: nil, since: nil, schema: 2))
        #expect(
            try ClientMessage.decode(Array(#"{"t":"join","doc":"board:1"}"#.utf8), limits: limits)
                == .join(doc: "board:1", state: nil, since: nil, schema: nil))
        for bad in [#""2""#, "0", "-1", "1.5", "1000000001", "1e400", "null"] {
            #expect(throws: ProtocolError.self, "schema \(bad)") {
                try ClientMessage.decode(Array(#"{"t":"join","doc":"board:1","schema":\#(bad)}"#.utf8), limits: limits)
            }
        }
    }
}
