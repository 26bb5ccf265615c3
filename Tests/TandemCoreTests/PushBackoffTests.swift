import Testing
@testable import TandemCore

/// A connection's memory of the hints it was given (`PushBackoff`): pushes to a doc arriving before the
/// hint passed are refused with the time left; after it, or for other docs, they go on to the doc.
@Suite struct PushBackoffTests {
    static let ms: UInt64 = 1_000_000

    @Test func aPushBeforeTheHintIsRefusedWithTheTimeLeft() {
        var backoff = PushBackoff()
        #expect(backoff.isEmpty)
        let t0: UInt64 = 5_000 * Self.ms
        #expect(backoff.refusal(doc: "d", now: t0) == nil)
        backoff.refused(doc: "d", retryAfterMs: 400, now: t0)
        #expect(!backoff.isEmpty)
        #expect(backoff.refusal(doc: "d", now: t0)?.retryAfterMs == 400)
        #expect(backoff.refusal(doc: "d", now: t0 + 150 * Self.ms)?.retryAfterMs == 250)
        // The last fraction of a millisecond still says 1 (0 would read as "now").
        #expect(backoff.refusal(doc: "d", now: t0 + 400 * Self.ms - 1)?.retryAfterMs == 1)
        // Other docs of the connection are not held back.
        #expect(backoff.refusal(doc: "other", now: t0 + 10 * Self.ms) == nil)
    }

    /// At the deadline the doc decides again, and the expired entry is gone.
    @Test func theHintPassedLetsPushesThrough() {
        var backoff = PushBackoff()
        let t0: UInt64 = 1_000 * Self.ms
        backoff.refused(doc: "d", retryAfterMs: 30, now: t0)
        #expect(backoff.refusal(doc: "d", now: t0 + 30 * Self.ms) == nil)
        #expect(backoff.isEmpty)
    }

    /// Two refusals answered close together (both in flight): the later deadline holds.
    @Test func aShorterHintDoesNotShortenALongerOne() {
        var backoff = PushBackoff()
        let t0: UInt64 = 1_000 * Self.ms
        backoff.refused(doc: "d", retryAfterMs: 900, now: t0)
        backoff.refused(doc: "d", retryAfterMs: 10, now: t0 + 5 * Self.ms)
        #expect(backoff.refusal(doc: "d", now: t0 + 100 * Self.ms)?.retryAfterMs == 800)
        backoff.refused(doc: "d", retryAfterMs: 1_000, now: t0 + 100 * Self.ms)
        #expect(backoff.refusal(doc: "d", now: t0 + 100 * Self.ms)?.retryAfterMs == 1_000)
    }

    /// Leaving a doc forgets its hint; a hint beyond the protocol's 30 s is clamped (no overflow).
    @Test func forgetAndClamp() {
        var backoff = PushBackoff()
        let t0: UInt64 = 1_000 * Self.ms
        backoff.refused(doc: "d", retryAfterMs: 500, now: t0)
        backoff.forget(doc: "d")
        #expect(backoff.refusal(doc: "d", now: t0) == nil)
        backoff.refused(doc: "d", retryAfterMs: .max, now: .max - 1)
        backoff.refused(doc: "e", retryAfterMs: .max, now: t0)
        #expect(backoff.refusal(doc: "e", now: t0)?.retryAfterMs == 30_000)
    }

    /// The refusal is the error `ServerMessage.error` writes, with the doc's encoded prefix reused.
    @Test func theRefusalIsTheUsualErrorMessage() throws {
        var backoff = PushBackoff()
        let t0: UInt64 = 1_000 * Self.ms
        let doc = "team:\"quoted\" doc ü"
        backoff.refused(doc: doc, retryAfterMs: 250, now: t0)
        let firstRefusal = backoff.refusal(doc: doc, now: t0 + 10 * Self.ms)
        let secondRefusal = backoff.refusal(doc: doc, now: t0 + 20 * Self.ms)
        let first = try #require(firstRefusal)
        let second = try #require(secondRefusal)
        #expect(first.prefix == second.prefix)
        #expect(second.retryAfterMs == 230)
        for id: JSONValue in [.number("7"), .number("123456789012"), .string("a\"b")] {
            let expected = ServerMessage.error(
                ProtocolError(.unavailable, PushBackoff.message, doc: doc, pushID: id, retryAfterMs: 230))
            #expect(PushBackoff.payload(second, id: id) == expected, "\(id)")
        }
    }

    /// A message not decoded yet is refused from its bytes only when decoding it gives a push with a number
    /// id to a doc backing off, with that id and the same hint — and always when such a push is one the
    /// fast path decodes (what clients send). Anything else (another doc, a string id, a message the fast
    /// path leaves to the parser, an invalid one) is left to the usual way, which decodes it.
    @Test func aMessageIsRefusedFromItsBytesOnlyWhenItsDecodedPushWouldBe() {
        var g = PushFastPathTests.Generator(state: 26)
        var limits = ProtocolLimits()
        let t0: UInt64 = 1_000 * Self.ms
        var backoff = PushBackoff()
        backoff.refused(doc: "d1", retryAfterMs: 500, now: t0)
        backoff.refused(doc: "bench-abc-p12", retryAfterMs: 300, now: t0)
        var refused = 0
        var passed = 0
        for i in 0..<20_000 {
            limits.maxJSONDepth = g.pick([64, 64, 5, 2, 1])
            let text = PushFastPathTests.message(&g)
            let bytes = Array(text.utf8)
            let now = t0 + UInt64(g.int(400)) * Self.ms
            var expected: (PushBackoff.Refusal, JSONValue)?
            if case .push(let doc, let id, _, _)? = try? ClientMessage.decode(bytes, limits: limits), case .number = id {
                var copy = backoff
                expected = copy.refusal(doc: doc, now: now).map { ($0, id) }
            }
            let fastPath = bytes.withUnsafeBufferPointer { PushFastPath.decode($0, limits: limits) } != nil
            var copy = backoff
            let got = bytes.withUnsafeBufferPointer { copy.refusal(forMessage: $0, limits: limits, now: now) }
            if let got {
                #expect(got.refusal == expected?.0 && got.id == expected?.1, "message \(i): \(text)")
                refused += 1
            } else {
                #expect(expected == nil || !fastPath, "message \(i) not refused from its bytes: \(text)")
                if expected == nil { passed += 1 }
            }
        }
        // Both outcomes are reached often (else this test would prove nothing).
        #expect(refused > 1_000 && passed > 1_000, "refused \(refused), passed \(passed)")
        // A string id is left to the decoded path (its refusal is written by `PushBackoff.payload`).
        let stringID = Array(#"{"t":"push","doc":"bench-abc-p12","id":"a","base":0,"ops":{}}"#.utf8)
        #expect(stringID.withUnsafeBufferPointer { backoff.refusal(forMessage: $0, limits: limits, now: t0) } == nil)
        #expect(backoff.refusal(doc: "bench-abc-p12", now: t0) != nil)
        // Every hint passed: the message goes the usual way, unscanned, and the expired entries are dropped.
        let late = Array(#"{"t":"push","doc":"d1","id":9,"base":0,"ops":{}}"#.utf8)
        #expect(late.withUnsafeBufferPointer { backoff.refusal(forMessage: $0, limits: limits, now: t0 + 500 * Self.ms) } == nil)
        #expect(backoff.isEmpty)
    }
}
