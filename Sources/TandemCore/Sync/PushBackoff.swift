/// The docs one connection was told to push to again only later (`unavailable` with `retryAfterMs`), and
/// until when: its pushes to such a doc that arrive sooner are refused at the connection, without the hop
/// to the doc's shard (issue 8).
///
/// Why. A client pushes without waiting for answers, so when one of its pushes is refused the ones it sent
/// before it heard are still on their way — at 4× overload (sync-80k, 2026-12-05) tandem-bench got 279,001
/// refusals in 15 s and sent 4,727 retries: almost all were such pushes. Each went through its
/// doc's shard (a hop to another event loop, the doc's admission) only to be refused again, and each
/// counted as one more client in the shard's virtual queue of refused pushes (`LoopLoad.retryAfterMs`),
/// though its client comes back once, coalesced: the hints grew to the 30 s cap (p99 12.6 s) while the
/// node had capacity to spare. The protocol already asks clients to wait as told and to hold their edits
/// meanwhile (docs/protocol.md, busy docs), so a push that arrives before the hint passed was sent before
/// its client heard, or by a client that does not wait: either way refusing it is the answer it would get
/// from the doc, and its retry is already counted. Its hint is the time left until the one given.
///
/// Pure state (time passed in). One entry per doc, only for docs the connection is in (the owner forgets
/// a doc on leave), so it is bounded by `--max-docs-per-connection`; an expired entry is dropped when next
/// looked up.
public struct PushBackoff: Sendable, Equatable {
    /// What the connection answers a push refused here: the time left, and the answer's bytes up to the push
    /// id (`prefix`, see `payload`): the same for every push to the doc, so it is encoded once.
    public struct Refusal: Sendable, Equatable {
        public let retryAfterMs: UInt64
        public let prefix: [UInt8]
    }

    private struct Entry: Sendable, Equatable {
        /// The monotonic time (`NodeClock.nowNanos`) before which the doc's pushes are refused.
        var deadline: UInt64
        var prefix: [UInt8]?
    }

    private var entries: [String: Entry] = [:]

    public init() {}

    /// No doc is backing off (the common case: one emptiness check a push).
    public var isEmpty: Bool { entries.isEmpty }

    /// A push to `doc` was answered `unavailable` with `retryAfterMs` at `now`: pushes to it are refused
    /// until then. A later deadline never shortens to an earlier one (two refusals in flight at once).
    public mutating func refused(doc: String, retryAfterMs: UInt64, now: UInt64) {
        let deadline = now &+ min(retryAfterMs, Self.maxRetryAfterMs) &* 1_000_000
        if let current = entries[doc]?.deadline, current >= deadline { return }
        entries[doc, default: Entry(deadline: deadline)].deadline = deadline
    }

    /// The answer for a push to `doc` arriving at `now`, if it is to be refused: the milliseconds left until
    /// the deadline (at least 1). Nil when the doc is not backing off (an expired entry is dropped).
    public mutating func refusal(doc: String, now: UInt64) -> Refusal? {
        guard let entry = entries[doc] else { return nil }
        guard now < entry.deadline else {
            entries[doc] = nil
            return nil
        }
        let left = max((entry.deadline - now) / 1_000_000, 1)
        if let prefix = entry.prefix { return Refusal(retryAfterMs: left, prefix: prefix) }
        let prefix = Self.prefix(doc: doc)
        entries[doc]?.prefix = prefix
        return Refusal(retryAfterMs: left, prefix: prefix)
    }

    /// `refusal(doc:now:)` for a message not decoded yet: if its bytes are a push `ClientMessage.decode`
    /// would decode, to a doc backing off, with a number id (what clients send), its refusal and id. Nil
    /// otherwise — the message then goes the usual way (decoded, and its doc looked up again).
    ///
    /// Why. While a doc backs off, most of what its connection sends are pushes that were in flight when
    /// the hint was given (sync-80k: ~10,000 a second refused at the connection): decoding each (a `String`
    /// for the doc, an `Array` for the ops, two hashes of the doc) only to answer it `unavailable` was a
    /// third of its cost. Here the envelope is scanned in place and the doc compared with the few backing off.
    public mutating func refusal(forMessage bytes: UnsafeBufferPointer<UInt8>, limits: ProtocolLimits, now: UInt64)
        -> (refusal: Refusal, id: JSONValue)?
    {
        guard !entries.isEmpty else { return nil }
        // Each hint's first push after it passed comes here too (under callgrind at overload, as many as the
        // pushes refused): with no doc still backing off the expired entries go, unscanned — the scan
        // (~2,200 instructions) wasted on those cost more than it saved on the refused ones.
        guard entries.values.contains(where: { now < $0.deadline }) else {
            entries.removeAll()
            return nil
        }
        guard let push = PushFastPath.numberIDPush(bytes, limits: limits) else { return nil }
        // The entries are the connection's docs backing off (most often one): compared, not hashed — a
        // lookup by key hashed the doc again (1,600 of the 4,900 instructions a refusal took here).
        for (doc, entry) in entries where Self.equal(doc, push.doc) {
            guard now < entry.deadline else {
                entries[doc] = nil
                return nil
            }
            let prefix = entry.prefix ?? Self.prefix(doc: doc)
            if entry.prefix == nil { entries[doc]?.prefix = prefix }
            let left = max((entry.deadline - now) / 1_000_000, 1)
            // (An id of up to 15 digits is a small string: no allocation.)
            return (Refusal(retryAfterMs: left, prefix: prefix), .number(String(decoding: push.id, as: UTF8.self)))
        }
        return nil
    }

    private static func equal(_ doc: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var doc = doc
        return doc.withUTF8 { $0.count == bytes.count && $0.elementsEqual(bytes) }
    }

    /// The connection left `doc` (or was removed from it).
    public mutating func forget(doc: String) { entries[doc] = nil }

    /// The protocol's largest `retryAfterMs` (docs/protocol.md): a larger value (from a peer that does not
    /// keep to it) is clamped so the deadline arithmetic cannot overflow.
    static let maxRetryAfterMs: UInt64 = 30_000

    /// The refusal's message (docs/protocol.md, busy docs).
    public static let message = "this node is busy: this connection was told to retry this doc's pushes later (retryAfterMs); retry"

    /// `ServerMessage.error` of the refusal up to its push id: `{"t":"error",…,"doc":D,"id":`.
    static func prefix(doc: String) -> [UInt8] {
        var w = JSONWriter(capacity: 160)
        w.openObject()
        w.key("t"); w.string("error"); w.comma()
        w.key("code"); w.string(ErrorCode.unavailable.rawValue); w.comma()
        w.key("message"); w.string(message); w.comma()
        w.key("doc"); w.string(doc); w.comma()
        w.key("id")
        return w.bytes
    }

    /// The whole refusal, as `ServerMessage.error` writes it (the connection writes the same bytes straight
    /// into its frame; `PushBackoffTests` compares the two).
    public static func payload(_ refusal: Refusal, id: JSONValue) -> [UInt8] {
        var w = JSONWriter(capacity: refusal.prefix.count + 40)
        w.raw(refusal.prefix)
        w.write(id)
        w.comma(); w.key("retryAfterMs"); w.integer(refusal.retryAfterMs)
        w.closeObject()
        return w.bytes
    }
}
