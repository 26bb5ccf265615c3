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
}
