/// The members of one doc its shard told to push again only later (`unavailable` with `retryAfterMs`), and
/// until when: their pushes that reach the doc sooner are refused before admission, with the time left,
/// and are not counted in the doc's or the loop's backlog of refused pushes (issue 8, stop 28).
///
/// Why. A connection refuses a doc's pushes itself once it has heard of a refusal (`PushBackoff`), but it
/// hears of it only when the shard's answer reaches its event loop: a task queued behind the rest of the
/// loop's turn. Every push it read meanwhile — the rest of the read burst that carried the refused one, and
/// the bursts read until the answer's task runs — has been handed to the shard already, and each was
/// admitted again and refused again (at 4× overload, `reason="delayed"`: 61 % of all refusals, stop 27).
/// Each such refusal cost the admission (the doc's wait estimate, its message, two hints drawn) and added
/// one more client to both virtual queues of refused pushes (`PushPipeline.retryAfterMs`,
/// `LoopLoad.retryAfterMs`), though its client comes back once, coalesced: the hints every member of the
/// loop was given grew with pushes that were never going to be retried. Refused here, each is answered as
/// the connection would have answered it, had it known.
///
/// A member is never refused this way longer than the hint the doc gave it, even once the doc is not busy
/// any more: the deadline is the hint's, and the entry goes when its member leaves (`forget`) or when it
/// has passed.
///
/// Pure state (time passed in); at most one entry per member of the doc.
public struct MemberPushBackoff<Member: Hashable & Sendable>: Sendable {
    /// The monotonic time (`NodeClock.nowNanos`) before which each member's pushes are refused.
    private var deadlines: [Member: UInt64] = [:]

    public init() {}

    /// No member is backing off (the common case: one emptiness check a push).
    public var isEmpty: Bool { deadlines.isEmpty }

    /// How many members have an entry (expired ones included until looked up).
    public var count: Int { deadlines.count }

    /// A push of `member` was refused with `retryAfterMs` at `now`: its pushes are refused until then. A later
    /// deadline never shortens to an earlier one.
    public mutating func refused(_ member: Member, retryAfterMs: UInt64, now: UInt64) {
        let deadline = now &+ min(retryAfterMs, PushBackoff.maxRetryAfterMs) &* 1_000_000
        if let current = deadlines[member], current >= deadline { return }
        deadlines[member] = deadline
    }

    /// The milliseconds left (at least 1) before `member` may push again, if a push of it arriving at `now`
    /// is to be refused; nil otherwise (an expired entry is dropped).
    public mutating func timeLeftMs(_ member: Member, now: UInt64) -> UInt64? {
        guard let deadline = deadlines[member] else { return nil }
        guard now < deadline else {
            deadlines[member] = nil
            return nil
        }
        return max((deadline - now) / 1_000_000, 1)
    }

    /// `member` left the doc (its identity may be reused by a later connection).
    public mutating func forget(_ member: Member) { deadlines[member] = nil }

    /// Every member left (the doc closed).
    public mutating func removeAll() { deadlines.removeAll() }
}
