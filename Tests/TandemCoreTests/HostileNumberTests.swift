import Testing
@testable import TandemCore

/// Numbers from clients and from Redis at the edges of their range: refused where they are parsed, and
/// never an overflow in the sync state machine.
@Suite struct ClientNumberTests {
    let limits = ProtocolLimits()

    func error(_ text: String) -> ProtocolError? {
        do {
            _ = try ClientMessage.decode(Array(text.utf8), limits: limits)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("since", #"{"t":"join","doc":"d","since":N}"#),
        ("base", #"{"t":"push","doc":"d","id":1,"base":N,"ops":{}}"#),
        ("from", #"{"t":"sync","doc":"d","from":N}"#),
        ("limit", #"{"t":"sync","doc":"d","from":0,"limit":N}"#),
        ("clock", #"{"t":"ack","doc":"d","clock":N}"#),
    ])
    func clocksAboveTwoToThe53AreBadMessagesNamingTheField(field: String, template: String) {
        for bad in ["9007199254740992", "18446744073709551615", "18446744073709551616", "1e3", "-1", "1.0"] {
            let refusal = error(template.replacing("N", with: bad))
            #expect(refusal?.code == .badMessage, "\(field)=\(bad)")
            #expect(refusal?.message.contains("\"\(field)\"") == true, "\(refusal?.message ?? "accepted")")
            #expect(refusal?.doc == "d")
        }
        #expect(error(template.replacing("N", with: "9007199254740991")) == nil)
    }

    @Test func aZeroLimitIsRefusedAndALargeOneAccepted() throws {
        #expect(error(#"{"t":"sync","doc":"d","from":0,"limit":0}"#)?.code == .badMessage)
        let decoded = try ClientMessage.decode(Array(#"{"t":"sync","doc":"d","from":0,"limit":999999}"#.utf8), limits: limits)
        #expect(decoded == .sync(doc: "d", from: 0, limit: 999_999))
    }

    @Test func pushIDsAreBoundedNumbersOrStrings() {
        #expect(ClientMessage.isValidPushID(.number(String(repeating: "9", count: 32))))
        #expect(!ClientMessage.isValidPushID(.number(String(repeating: "9", count: 33))))
        #expect(!ClientMessage.isValidPushID(.number(String(repeating: "9", count: 100_000))))
        #expect(ClientMessage.isValidPushID(.string(String(repeating: "s", count: 64))))
        #expect(!ClientMessage.isValidPushID(.string(String(repeating: "s", count: 65))))
        #expect(!ClientMessage.isValidPushID(.bool(true)))
        let refusal = error(#"{"t":"push","doc":"d","id":\#(String(repeating: "1", count: 40)),"base":0,"ops":{}}"#)
        #expect(refusal?.code == .badMessage)
        #expect(refusal?.pushID == nil, "an invalid id is not echoed")
    }
}

@Suite struct SyncDocEdgeTests {
    func commit(_ clock: UInt64) -> CommitNotice {
        CommitNotice(clock: clock, ops: .object(["r": .array([.string("put"), .object([:])])]), by: "s", node: "n", pushID: nil, committedAtMs: 0)
    }

    /// A replica loaded at `UInt64.max` (SyncStore refuses such heads; the state machine copes anyway).
    @Test func aHeadAtTheTopOfTheRangeNeitherTrapsNorAcceptsMore() {
        var doc = SyncDoc<Int>(retention: 10)
        _ = doc.load(DocReplica(head: .max), retainedFrom: .max)
        #expect(doc.receive(commit(.max)).isEmpty)
        #expect(doc.gap == nil)
        #expect(doc.attach(1, since: .max) == .log([], head: .max))
        #expect(doc.attach(2, since: .max - 1) == .fetch(from: .max, head: .max))
        #expect(doc.recentCommits(from: .max, through: .max) == nil)  // not in memory: read the log
        #expect(doc.continueCatchUp(1, through: .max) == nil)
    }

    @Test func aSinceAtOrPastTheHeadIsAnEmptyLog() {
        var doc = SyncDoc<Int>(retention: 10)
        _ = doc.load(DocReplica(head: 5), retainedFrom: 1)
        #expect(doc.attach(1, since: 5) == .log([], head: 5))
        guard case .snapshot = doc.attach(2, since: ClientMessage.maxClock) else {
            Issue.record("a since ahead of the doc is not trusted: snapshot")
            return
        }
    }
}

@Suite struct CatchUpEstimateTests {
    @Test func estimatesAreCloseToTheEncodedSizeAndCapped() {
        let big = JSONValue.string(String(repeating: "x", count: 10_000))
        var records: [String: JSONValue] = [:]
        for i in 0..<20 { records["r\(i)"] = .object(["v": big, "n": .number("12")]) }
        var snapshot = SnapshotChunker(doc: "d", head: 1, records: records)
        let estimate = snapshot.estimatedRemainingBytes(upTo: .max)
        var actual = 0
        var copy = snapshot
        while let chunk = copy.next() { actual += chunk.count }
        #expect(abs(estimate - actual) < actual / 20, "estimate \(estimate), actual \(actual)")
        #expect(snapshot.estimatedRemainingBytes(upTo: 50_000) == 50_000)
        _ = snapshot.next()
        #expect(snapshot.estimatedRemainingBytes(upTo: .max) == 0, "one chunk held it all")

        let entries = (1...100).map {
            CommitNotice(clock: UInt64($0), ops: .object(["r": .array([.string("put"), big])]), by: "s", node: "n", pushID: .number("7"), committedAtMs: 0)
        }
        let log = LogChunker(doc: "d", entries: entries, head: 100, moreAfter: false)
        var logActual = 0
        var logCopy = log
        while let chunk = logCopy.next() { logActual += chunk.count }
        let logEstimate = log.estimatedRemainingBytes(upTo: .max)
        #expect(abs(logEstimate - logActual) < logActual / 20, "estimate \(logEstimate), actual \(logActual)")
    }
}
