/// How far behind one event loop (a shard's) is, and when a push refused on it should come back.
///
/// Why. A doc's admission (`PushPipeline`, `ServiceTimeModel`) sees only the time a push will wait in
/// the doc's queue. A saturated node also makes every message wait before any doc sees it: in the
/// socket, and behind the other work of the loop (measured at 4× overload: a ping's round trip 334 ms
/// at the median while the pipelines' own wait estimates stayed under their bound). That wait is the
/// loop's lag: how late a task scheduled on the loop runs. The owner probes it at a fixed interval
/// (`probed`); while the smoothed lag is over `maxLagNanos`, pushes are refused before they are parsed.
///
/// The retry hint (`retryAfterMs`) grows with the loop's backlog: refused pushes are counted in a virtual
/// queue that drains at the commit rate the loop actually achieves (measured between probes), so the
/// k-th push refused in a burst is told to come back once the k − 1 before it could have been committed,
/// plus the current lag. With full jitter (uniform over [0, 2 × base]): clients refused together return
/// spread out, not together; never sooner than their doc's own hint. A doc's own refusals (`PushPipeline.retryAfterMs`) see one doc's capacity;
/// this one sees the loop's, which under node-wide overload is the tighter: without it, 200 busy docs
/// each hinted at their own capacity and the retries came back 200 times too soon.
public struct LoopLoad: Sendable, Equatable {
    /// Pushes are refused while the smoothed lag is over this (`--max-loop-lag-ms`).
    public let maxLagNanos: UInt64
    /// `retryAfterMs` never exceeds this.
    public let maxRetryAfterMs: UInt64
    /// The smoothed lag (an exponentially weighted average of the probes).
    public private(set) var lagNanos: Double = 0
    /// Commits per nanosecond this loop delivered, smoothed over probe intervals.
    public private(set) var commitRate: Double = 0
    /// Refused pushes not yet absorbed at `commitRate`, as of `overflowAt`.
    var overflow = 0.0
    var overflowAt: UInt64 = 0
    var commitsSinceProbe: UInt64 = 0
    var lastProbeAt: UInt64?
    var random: SplitMix64
    /// The last refusal message and the lag (ms) it names: the lag moves only at a probe, so while the loop
    /// lags every refusal until the next probe reuses it (building it cost ~5,000 instructions a refusal).
    var lastMessage = ""
    var lastMessageLagMs = -1

    /// Weight of the newest probe in the averages: a single late timer (one long batch of work) does not
    /// flip admission, a few in a row do.
    static let weight = 0.3
    /// The least commit rate assumed (1 per millisecond): a loop that committed nothing lately (idle, or
    /// Redis down) must not hint "never".
    static let minimumCommitRate = 1e-6

    public init(maxLagNanos: UInt64, maxRetryAfterMs: UInt64, randomSeed: UInt64) {
        self.maxLagNanos = maxLagNanos
        self.maxRetryAfterMs = maxRetryAfterMs
        random = SplitMix64(seed: randomSeed)
    }

    /// Pushes arriving now are refused (the loop is too far behind).
    public var isLagging: Bool { lagNanos > Double(maxLagNanos) }

    /// How long a push has waited in the node by the time its doc sees it, `sinceReadNanos` after its
    /// message was read off the socket: that, plus the smoothed lag as the estimate of the time its bytes
    /// waited in the socket before the loop got to them (invisible to the node: the loops are busy with
    /// the turns before). Admission counts it against `--max-push-wait-ms` with the doc's own estimate
    /// (`PushPipeline.refuseIfBusy`): each of the three under its bound alone, their sum was what accepted
    /// pushes waited at saturation (sync-20k, 2026-12-05: no refusals, push → result p99 796 ms).
    public func waitedBeforeDoc(sinceReadNanos: UInt64) -> UInt64 {
        sinceReadNanos &+ UInt64(max(lagNanos, 0))
    }

    /// What a push refused for lag is told (`--max-loop-lag-ms` is named for the operator reading it).
    public mutating func refusalMessage() -> String {
        let lagMs = Int(lagNanos / 1e6)
        if lagMs != lastMessageLagMs {
            lastMessage =
                "this node is busy: its event loop runs \(lagMs) ms behind (limit \(maxLagNanos / 1_000_000) ms, --max-loop-lag-ms); retry"
            lastMessageLagMs = lagMs
        }
        return lastMessage
    }

    /// A probe scheduled for `due` ran at `now`.
    public mutating func probed(due: UInt64, now: UInt64) {
        let lag = Double(now > due ? now - due : 0)
        lagNanos += Self.weight * (lag - lagNanos)
        if let last = lastProbeAt, now > last {
            let rate = Double(commitsSinceProbe) / Double(now - last)
            commitRate += Self.weight * (rate - commitRate)
        }
        lastProbeAt = now
        commitsSinceProbe = 0
    }

    /// The loop delivered `count` commits of its docs.
    public mutating func committed(_ count: Int) { commitsSinceProbe &+= UInt64(max(count, 0)) }

    /// The hint for a push refused now (for lag, or by its doc: `atLeastMs` is the doc's own hint), counting
    /// it in the backlog.
    ///
    /// The doc's hint is a floor after the jitter, not before: it says when the doc itself can take the
    /// push again (already spread ×1–2 over the doc's backlog), and a retry before that is refused for
    /// certain — full jitter applies to the shard's share, which spreads the clients of all its docs.
    public mutating func retryAfterMs(now: UInt64, atLeastMs: UInt64 = 0) -> UInt64 {
        let rate = max(commitRate, Self.minimumCommitRate)
        overflow = max(0, overflow - Double(now &- overflowAt) * rate) + 1
        overflowAt = now
        let base = max(overflow / rate + lagNanos, 1e6)
        // Full jitter: uniform over [0, 2 × base] (mean: base).
        let jittered = 2 * base * (Double(random.next() >> 11) / Double(1 << 53))
        return min(max(UInt64(jittered / 1e6), atLeastMs, 1), maxRetryAfterMs)
    }
}
