import Testing
@testable import TandemCore

/// The loop-level part of admission (`LoopLoad`): lag from late probes, the loop's commit rate, and a
/// retry hint that grows with the backlog of refused pushes and is spread by full jitter.
@Suite struct LoopLoadTests {
    static let ms: UInt64 = 1_000_000

    /// Probes on time: no lag, nothing refused. Probes running late, a few in a row: refused; on time
    /// again: taken again.
    @Test func lateProbesTurnRefusalOnAndOff() {
        var load = LoopLoad(maxLagNanos: 50 * Self.ms, maxRetryAfterMs: 30_000, randomSeed: 1)
        var now: UInt64 = 1_000 * Self.ms
        for _ in 0..<10 {
            now += 10 * Self.ms
            load.probed(due: now, now: now)
        }
        #expect(!load.isLagging)
        // One late probe is not enough (one long piece of work)...
        load.probed(due: now, now: now + 120 * Self.ms)
        #expect(!load.isLagging, "\(load.lagNanos)")
        // ...several are.
        for _ in 0..<5 {
            now += 200 * Self.ms
            load.probed(due: now, now: now + 300 * Self.ms)
        }
        #expect(load.isLagging, "\(load.lagNanos)")
        for _ in 0..<20 {
            now += 10 * Self.ms
            load.probed(due: now, now: now)
        }
        #expect(!load.isLagging, "\(load.lagNanos)")
    }

    /// The refusal message names the current lag and the limit; it is made again only when the lag (in
    /// whole ms) moved, at a probe, and never names a lag the loop no longer has.
    @Test func theRefusalMessageFollowsTheLag() {
        var load = LoopLoad(maxLagNanos: 50 * Self.ms, maxRetryAfterMs: 30_000, randomSeed: 2)
        let now: UInt64 = 1_000 * Self.ms
        load.probed(due: now, now: now + 400 * Self.ms)  // smoothed: 0.3 × 400 = 120 ms
        let first = load.refusalMessage()
        #expect(first.contains("runs 120 ms behind (limit 50 ms, --max-loop-lag-ms)"), "\(first)")
        #expect(load.refusalMessage() == first)
        load.probed(due: now + 500 * Self.ms, now: now + 900 * Self.ms)  // 120 + 0.3 × (400 − 120) = 204 ms
        #expect(load.refusalMessage().contains("runs 204 ms behind"), "\(load.refusalMessage())")
    }

    /// A push's time before its doc saw it is the measured hop since its read plus the loop's smoothed
    /// lag (its time in the socket). With the loop's lag and the doc's estimate each under their bounds,
    /// their sum with the hop passing `--max-push-wait-ms` refuses the push; the same hop on a loop that
    /// keeps up does not.
    @Test func theLoopsLagCountsAsTimeBeforeTheRead() {
        var load = LoopLoad(maxLagNanos: 250 * Self.ms, maxRetryAfterMs: 30_000, randomSeed: 3)
        var now: UInt64 = 1_000 * Self.ms
        for _ in 0..<30 {
            now += 20 * Self.ms
            load.probed(due: now, now: now)
        }
        #expect(load.waitedBeforeDoc(sinceReadNanos: 60 * Self.ms) == 60 * Self.ms, "on time: the hop alone")
        for _ in 0..<30 {
            now += 20 * Self.ms
            load.probed(due: now - 200 * Self.ms, now: now)
        }
        #expect(!load.isLagging, "under its own bound: \(load.lagNanos)")
        let before = load.waitedBeforeDoc(sinceReadNanos: 60 * Self.ms)
        #expect(before > 250 * Self.ms && before < 261 * Self.ms, "60 ms hop + about 200 ms lag: \(before)")

        var settings = PushPipelineSettings(nodeID: "me")
        settings.maxPushWaitNanos = 250 * Self.ms
        settings.initialRoundTripNanos = 1 * Self.ms
        var pipeline = PushPipeline<Int>(settings: settings, randomSeed: 1)
        _ = pipeline.load(DocReplica(), retainedFrom: 1, now: now)
        _ = pipeline.attach(1, since: 0, now: now)
        // A batch in Redis (due in 1 ms): the next push waits about 2 ms in the doc.
        _ = pipeline.push(
            from: 1, sessionID: "s1", pushID: .number(1), base: 0, ops: try! Ops(json: try! JSONParser.parse(#"{"a":["put",{}]}"#)),
            bytes: 16, readOnly: false, now: now)
        #expect(pipeline.inFlightCount == 1)
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: now, waitedNanos: 60 * Self.ms) == nil)
        #expect(pipeline.refuseIfBusy(from: 1, pushID: .number(2), now: now, waitedNanos: before) != nil)
        #expect(pipeline.counters.delayedRefusals == 1)
    }

    /// The hint grows with the pushes refused in a burst (they come back as the loop can commit them),
    /// is spread over [0, 2 × base] (full jitter: clients refused together do not return together), never
    /// below what the doc itself asked, never above the cap.
    @Test func theHintGrowsWithTheBacklogAndIsFullyJittered() {
        var load = LoopLoad(maxLagNanos: 50 * Self.ms, maxRetryAfterMs: 30_000, randomSeed: 7)
        var now: UInt64 = 1_000 * Self.ms
        // The loop commits 1,000 per second (one per ms), measured over a few probes.
        for _ in 0..<30 {
            load.committed(10)
            now += 10 * Self.ms
            load.probed(due: now, now: now)
        }
        #expect(abs(load.commitRate * 1e9 - 1_000) < 10, "\(load.commitRate * 1e9)/s")
        // A burst of 2,000 refusals at one instant: the k-th is told about k ms (the loop's rate), jittered.
        var hints: [UInt64] = []
        for _ in 0..<2_000 { hints.append(load.retryAfterMs(now: now)) }
        let early = hints[0..<200].reduce(0, +) / 200
        let late = hints[1_800..<2_000].reduce(0, +) / 200
        #expect(early < 250 && late > 1_500, "mean hint of the first 200: \(early) ms, of the last 200: \(late) ms")
        // Full jitter: the last ones (base about 1.9 s) spread from near 0 to near 2 × base.
        let lateSorted = hints[1_800..<2_000].sorted()
        #expect(lateSorted.first! < 500 && lateSorted.last! > 3_000, "\(lateSorted.first!)…\(lateSorted.last!)")
        // The backlog drains at the commit rate: two seconds later, a refusal is told little again.
        now += 2_100 * Self.ms
        #expect(load.retryAfterMs(now: now) < 50)
        // A doc's own hint is a floor (after the jitter: before it, the doc refuses for certain).
        let floored = (0..<200).map { _ in load.retryAfterMs(now: now, atLeastMs: 1_000) }
        #expect(floored.allSatisfy { $0 >= 1_000 }, "\(floored.min()!)")
        // Capped.
        for _ in 0..<100_000 { _ = load.retryAfterMs(now: now) }
        #expect(load.retryAfterMs(now: now) <= 30_000)
    }

    /// A loop that committed nothing (idle, Redis down) still hints a finite, capped wait.
    @Test func anIdleLoopHintsAFiniteWait() {
        var load = LoopLoad(maxLagNanos: 50 * Self.ms, maxRetryAfterMs: 5_000, randomSeed: 3)
        let hint = load.retryAfterMs(now: 1_000 * Self.ms)
        #expect(hint >= 1 && hint <= 5_000)
    }

    // MARK: Admission margin

    /// One margin window of answers at 20 ms probes: `overruns` (ms) answered during it, then probes up to
    /// the window's end.
    static func window(_ load: inout LoopLoad, _ now: inout UInt64, overruns: [UInt64]) {
        for overrun in overruns { load.answered(inDocNanos: (10 + overrun) * ms, estimatedNanos: 10 * ms) }
        for _ in 0..<5 {
            now += 20 * ms
            load.probed(due: now, now: now)
        }
    }

    /// The margin follows the p99 of how much longer than estimated accepted pushes took, window by
    /// window: 2 % of answers 80 ms late make it ~80 ms; 0.5 % late leave it near nothing (the quantile is
    /// 1 %: those are the pushes allowed past the bound); pushes faster than estimated count as no
    /// overrun; it never passes `maxMarginNanos`.
    @Test func theMarginIsTheP99OfOverruns() {
        var load = LoopLoad(maxLagNanos: 250 * Self.ms, maxRetryAfterMs: 30_000, randomSeed: 5, maxMarginNanos: 200 * Self.ms)
        var now: UInt64 = 1_000 * Self.ms
        load.probed(due: now, now: now)  // the first window starts
        #expect(load.marginNanos == 0)
        let twoPercentLate = [UInt64](repeating: 1, count: 980) + [UInt64](repeating: 80, count: 20)
        for _ in 0..<20 { Self.window(&load, &now, overruns: twoPercentLate) }
        #expect(abs(load.marginNanos - 82e6) < 2e6, "\(load.marginNanos / 1e6) ms (80 ms late, rounded up to the 2 ms bucket)")
        let halfPercentLate = [UInt64](repeating: 1, count: 995) + [UInt64](repeating: 80, count: 5)
        for _ in 0..<20 { Self.window(&load, &now, overruns: halfPercentLate) }
        #expect(load.marginNanos < 5e6, "\(load.marginNanos / 1e6) ms")
        // Faster than estimated: no overrun.
        for _ in 0..<200 { load.answered(inDocNanos: 1 * Self.ms, estimatedNanos: 50 * Self.ms) }
        #expect(load.overruns.quantile(0.99) == OverrunWindow.bucketNanos)
        // Capped: overruns of seconds give the largest margin, no more.
        for _ in 0..<20 { Self.window(&load, &now, overruns: [UInt64](repeating: 3_000, count: 100)) }
        #expect(load.marginNanos == 200e6, "\(load.marginNanos / 1e6) ms")
        // A quiet loop (too few answers to tell) lets it decay.
        for _ in 0..<40 { Self.window(&load, &now, overruns: [500, 500]) }
        #expect(load.marginNanos < 1e6, "\(load.marginNanos / 1e6) ms")
    }

    /// Off (`--max-push-wait-margin-ms 0`): answers are not even counted, and the margin stays 0.
    @Test func noMarginWhenOff() {
        var load = LoopLoad(maxLagNanos: 250 * Self.ms, maxRetryAfterMs: 30_000, randomSeed: 6)
        var now: UInt64 = 1_000 * Self.ms
        load.probed(due: now, now: now)
        for _ in 0..<10 { Self.window(&load, &now, overruns: [UInt64](repeating: 300, count: 100)) }
        #expect(load.marginNanos == 0 && load.overruns.count == 0)
    }

    /// The window's quantile: the upper edge of the bucket holding it; the open-ended last bucket.
    @Test func overrunWindowQuantiles() {
        var window = OverrunWindow()
        #expect(window.quantile(0.99) == 0)
        for ms in 0..<100 { window.add(UInt64(ms) * Self.ms) }
        #expect(window.quantile(0.5) == 50 * Self.ms)
        #expect(window.quantile(0.99) == 100 * Self.ms)
        window.add(10_000 * Self.ms)
        #expect(window.quantile(1) == UInt64(OverrunWindow.bucketCount) * OverrunWindow.bucketNanos)
        window.reset()
        #expect(window.count == 0 && window.quantile(0.99) == 0)
    }
}
