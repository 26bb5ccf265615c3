import TandemCore
import Testing

/// `TickPace` (issue 14, `--presence-stretch-lag-ms`): the presence tick's phases at a fixed rate while
/// the loop keeps up, two intervals after the work while a phase starts later than the bound.
@Suite struct TickPaceTests {
    static let ms: UInt64 = 1_000_000
    /// 50 ms ticks in 5 phases, stretched beyond 25 ms of lateness; the first phase due at 1 s.
    func pace(boundMs: UInt64 = 25) -> TickPace {
        TickPace(intervalNanos: 10 * Self.ms, tickNanos: 50 * Self.ms, lagBoundNanos: boundMs * Self.ms, firstDueNanos: 1_000 * Self.ms)
    }

    @Test func onTimeOrALittleLateKeepsTheFixedRate() {
        var pace = pace()
        // On time, 3 ms of work: the next is one interval after this one was due, not after the work.
        #expect(pace.next(startedNanos: 1_000 * Self.ms, finishedNanos: 1_003 * Self.ms) == 1_010 * Self.ms)
        #expect(!pace.stretched)
        // 25 ms late is within the bound: still the fixed rate (the loop catches up).
        #expect(pace.next(startedNanos: 1_035 * Self.ms, finishedNanos: 1_037 * Self.ms) == 1_020 * Self.ms)
        #expect(!pace.stretched)
    }

    @Test func aPhaseLaterThanTheBoundStretchesTheNextToTwoIntervalsAfterItsWork() {
        var pace = pace()
        #expect(pace.next(startedNanos: 1_026 * Self.ms, finishedNanos: 1_030 * Self.ms) == 1_050 * Self.ms)
        #expect(pace.stretched)
        // Still late (against the stretched due time): stretched again.
        #expect(pace.next(startedNanos: 1_080 * Self.ms, finishedNanos: 1_081 * Self.ms) == 1_101 * Self.ms)
        #expect(pace.stretched)
        // On time again: back to the fixed rate from the phase's due time.
        #expect(pace.next(startedNanos: 1_102 * Self.ms, finishedNanos: 1_104 * Self.ms) == 1_111 * Self.ms)
        #expect(!pace.stretched)
    }

    @Test func boundZeroNeverStretches() {
        var pace = pace(boundMs: 0)
        #expect(pace.next(startedNanos: 1_040 * Self.ms, finishedNanos: 1_045 * Self.ms) == 1_010 * Self.ms)
        #expect(!pace.stretched)
        // A whole tick behind: one interval from the end of the work, not the missed phases back to back.
        #expect(pace.next(startedNanos: 1_100 * Self.ms, finishedNanos: 1_101 * Self.ms) == 1_111 * Self.ms)
        #expect(!pace.stretched)
    }

    @Test func restartForgetsTheStretch() {
        var pace = pace()
        _ = pace.next(startedNanos: 1_100 * Self.ms, finishedNanos: 1_101 * Self.ms)
        #expect(pace.stretched)
        pace.restart(dueNanos: 2_000 * Self.ms)
        #expect(!pace.stretched)
        #expect(pace.dueNanos == 2_000 * Self.ms)
    }
}
