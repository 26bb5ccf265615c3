/// When to fetch the cluster's slot map (pure: time comes in, decisions go out).
///
/// - At most one fetch in flight.
/// - Fetches start at least `minInterval` apart, however many errors ask for one.
/// - Without requests, one fetch every `periodicInterval` while the last map was healthy, every
///   `minInterval` while it was not (a slot without a reachable primary: a failover is under way).
struct ClusterRefreshSchedule: Equatable {
    enum Decision: Equatable {
        /// Start a fetch now (the schedule counts it as in flight).
        case start
        /// Nothing to do before this monotonic time; ask again then.
        case wait(until: UInt64)
        /// A fetch is in flight; ask again when it finishes.
        case inFlight
    }

    let minInterval: UInt64
    let periodicInterval: UInt64
    private(set) var isInFlight = false
    private(set) var requested = false
    private var lastStart: UInt64?
    /// When the next unrequested fetch is due.
    private(set) var nextPeriodic: UInt64 = 0

    init(minInterval: UInt64, periodicInterval: UInt64) {
        self.minInterval = max(1, minInterval)
        self.periodicInterval = max(self.minInterval, periodicInterval)
    }

    /// Something suggests the map is stale: fetch as soon as the rate limit allows.
    mutating func request() {
        requested = true
    }

    /// What to do at `now`.
    mutating func poll(now: UInt64) -> Decision {
        if isInFlight { return .inFlight }
        let earliest = lastStart.map { $0 &+ minInterval } ?? 0
        let due = requested ? earliest : max(earliest, nextPeriodic)
        guard now >= due else { return .wait(until: due) }
        isInFlight = true
        requested = false
        lastStart = now
        return .start
    }

    /// The fetch ended (applied or failed); `healthy` says whether the map now in use is healthy (a
    /// failed fetch passes `false`, so it is tried again soon).
    mutating func finished(now: UInt64, healthy: Bool) {
        isInFlight = false
        nextPeriodic = now &+ (healthy ? periodicInterval : minInterval)
    }
}
