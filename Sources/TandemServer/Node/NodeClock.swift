import TandemSystem

/// Time as the node uses it: Tandem's one clock (TandemSystem), monotonic for limits, ticks and TTLs, the
/// wall clock only where other machines compare it (commit timestamps). The name stays for the shards and
/// connections that hold one.
typealias NodeClock = TandemClock
