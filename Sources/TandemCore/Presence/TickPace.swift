/// When a shard's next presence tick phase is due: at a fixed rate while its loop keeps up, at half the
/// rate while it does not (issue 14, "degrade by coalescing, not by queueing").
///
/// A doc's delta already carries only the latest state of each session that changed since its last tick,
/// so ticking a doc less often sends fewer, fresher entries: at 2,000 clients / 40 docs on two cores a
/// doc ticked every 100 ms instead of 50 writes, and its members read, about half the entries. That is
/// what this does while the loop is behind, i.e. while the cores are saturated and every entry sent is
/// one more for the clients to read from a backlog: a phase that starts more than `lagBoundNanos` after
/// it was due schedules the next one twice the interval after its own work ended (the bare fan-out
/// server's drift, doubled), so the node's output shrinks and the backlog drains instead of growing. A
/// phase on time goes back to the fixed rate. While the loop keeps up nothing changes: the bound is far
/// above the lateness of a loop that is not behind (`--presence-stretch-lag-ms`).
///
/// Pure: times are passed in (the loop's uptime clock, nanoseconds).
public struct TickPace: Sendable, Equatable {
    /// The time between two phases (`--tick-ms` / `--tick-phases`).
    public var intervalNanos: UInt64
    /// The whole tick (`--tick-ms`): a loop this far behind restarts the schedule from now.
    public var tickNanos: UInt64
    /// How late a phase may start before the next one is stretched; 0: never stretch.
    public var lagBoundNanos: UInt64
    /// When the phase that runs next is (or was) due.
    public private(set) var dueNanos: UInt64
    /// Whether the last `next` stretched the interval.
    public private(set) var stretched = false

    public init(intervalNanos: UInt64, tickNanos: UInt64, lagBoundNanos: UInt64, firstDueNanos: UInt64) {
        self.intervalNanos = intervalNanos
        self.tickNanos = tickNanos
        self.lagBoundNanos = lagBoundNanos
        self.dueNanos = firstDueNanos
    }

    /// The schedule starts (again) with a phase due at `dueNanos`.
    public mutating func restart(dueNanos: UInt64) {
        self.dueNanos = dueNanos
        stretched = false
    }

    /// A phase due at `dueNanos` started at `startedNanos` and its work ended at `finishedNanos`: when the
    /// next one is due (also kept as the new `dueNanos`).
    ///
    /// On time (or no bound): one interval after this one was due — a fixed rate, so the tick's own
    /// time and the loop's lag are not added to every period; if that is a whole tick behind already, one
    /// interval from now instead of running the missed phases back to back. Late by more than the bound:
    /// two intervals after the work ended.
    public mutating func next(startedNanos: UInt64, finishedNanos: UInt64) -> UInt64 {
        let late = startedNanos > dueNanos ? startedNanos - dueNanos : 0
        stretched = lagBoundNanos > 0 && late > lagBoundNanos
        if stretched {
            dueNanos = finishedNanos + 2 * intervalNanos
        } else {
            dueNanos += intervalNanos
            if dueNanos + tickNanos < finishedNanos { dueNanos = finishedNanos + intervalNanos }
        }
        return dueNanos
    }
}
