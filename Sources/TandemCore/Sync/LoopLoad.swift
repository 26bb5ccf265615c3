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

    /// `--max-push-wait-margin-ms`: the admission margin (`marginNanos`) never exceeds this (0: no margin).
    public let maxMarginNanos: UInt64
    /// What the docs of this loop keep free of their wait bound (`--max-push-wait-ms`) at admission: the
    /// high quantile of how much longer accepted pushes spent in their doc than estimated (see
    /// `answered`). Moves once per `marginWindowNanos`.
    public private(set) var marginNanos: Double = 0
    /// The overruns of the current window.
    var overruns = OverrunWindow()
    var windowStartedAt: UInt64?

    /// - Parameter maxMarginNanos: the largest admission margin (`--max-push-wait-margin-ms`; 0: none).
    public init(maxLagNanos: UInt64, maxRetryAfterMs: UInt64, randomSeed: UInt64, maxMarginNanos: UInt64 = 0) {
        self.maxLagNanos = maxLagNanos
        self.maxRetryAfterMs = maxRetryAfterMs
        self.maxMarginNanos = maxMarginNanos
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
        closeMarginWindow(now: now)
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

    // MARK: Admission margin

    /// How often the margin moves: long enough for a few hundred answers at saturation (a p99 of the
    /// window means something), short enough to follow a load step within a few tenths of a second.
    public static let marginWindowNanos: UInt64 = 100_000_000
    /// Fewest answers in a window for its quantile to count; with fewer (a quiet loop) the margin decays.
    static let marginMinSamples = 20
    /// The share of accepted pushes allowed past the bound: the margin tracks this quantile of overruns.
    static let marginQuantile = 0.99

    /// A push accepted on this loop was answered with its result: it spent `inDocNanos` in its doc
    /// (admission to result) where admission had estimated `estimatedNanos`.
    ///
    /// Why. Admission takes a push when what it waited before its doc (`waitedBeforeDoc`) plus the doc's
    /// estimate (`PushPipeline.estimatedWaitNanos`) fits in `--max-push-wait-ms`. On a saturated node the
    /// estimate misses what the model does not see — the reply's turn on a loop that is behind, the
    /// clock-order delivery, the batch behind the one in Redis waiting for enough pushes — so the pushes it
    /// took waited longer than the bound (sync-20k, stop 28: read → result p99 ~475 ms against 250). The
    /// overrun `inDocNanos − estimatedNanos` is measured on every accepted push; its high quantile over the
    /// last window is kept free of the bound at admission (`marginNanos`), so that about
    /// `1 − marginQuantile` of accepted pushes pass it: a budget for the push's whole path in the node,
    /// learned, not modelled. A larger margin refuses more, which unloads the loop and shrinks the
    /// overruns: the margin comes back down by itself.
    public mutating func answered(inDocNanos: UInt64, estimatedNanos: UInt64) {
        guard maxMarginNanos > 0 else { return }
        overruns.add(inDocNanos > estimatedNanos ? inDocNanos - estimatedNanos : 0)
    }

    /// At a probe: a window that lasted `marginWindowNanos` moves the margin toward its quantile of
    /// overruns (smoothed like the lag), or decays it when it saw too few answers to say.
    mutating func closeMarginWindow(now: UInt64) {
        guard maxMarginNanos > 0 else { return }
        guard let started = windowStartedAt else {
            windowStartedAt = now
            return
        }
        guard now >= started &+ Self.marginWindowNanos else { return }
        if overruns.count >= Self.marginMinSamples {
            let quantile = Double(overruns.quantile(Self.marginQuantile))
            marginNanos += Self.weight * (quantile - marginNanos)
        } else {
            marginNanos *= 1 - Self.weight
        }
        marginNanos = min(max(marginNanos, 0), Double(maxMarginNanos))
        overruns.reset()
        windowStartedAt = now
    }
}

/// The overruns of one margin window, counted in fixed buckets (adding one costs an index and an
/// increment; the window's quantile is one scan): `bucketNanos` wide, the last bucket open-ended.
struct OverrunWindow: Sendable, Equatable {
    static let bucketNanos: UInt64 = 2_000_000
    static let bucketCount = 256
    var buckets = [UInt32](repeating: 0, count: bucketCount)
    private(set) var count = 0

    mutating func add(_ nanos: UInt64) {
        buckets[Int(min(nanos / Self.bucketNanos, UInt64(Self.bucketCount - 1)))] &+= 1
        count += 1
    }

    /// The upper edge of the bucket that holds quantile `q` (an overestimate by less than a bucket; the
    /// open-ended bucket counts as its lower edge plus one bucket).
    func quantile(_ q: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = max(1, Int((q * Double(count)).rounded(.up)))
        var seen = 0
        for (i, n) in buckets.enumerated() {
            seen += Int(n)
            if seen >= rank { return UInt64(i + 1) * Self.bucketNanos }
        }
        return UInt64(Self.bucketCount) * Self.bucketNanos
    }

    mutating func reset() {
        guard count > 0 else { return }
        for i in buckets.indices { buckets[i] = 0 }
        count = 0
    }
}
