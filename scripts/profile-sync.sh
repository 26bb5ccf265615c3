#!/usr/bin/env bash
# Instructions per commit on the push path, counted by valgrind's callgrind (repeatable on a busy
# machine, unlike CPU time). One process runs under callgrind — tandem (PROFILE=tandem, the default) or
# redis-server (PROFILE=redis) — the other natively, while tandem-bench sync offers a small fixed load;
# the counters are zeroed when the bench's measured window starts and dumped when it ends, and divided by
# the commits Redis made in between. Prints the totals and the top functions, and leaves the callgrind
# files for callgrind_annotate / kcachegrind. (Profiling one process at a time keeps the other fast, so
# the one profiled is the bottleneck and its fixed costs — timers, ticks — are a small share.)
#
#   scripts/profile-sync.sh                               # .build/release binaries, tandem profiled
#   PROFILE=redis scripts/profile-sync.sh                 # Redis (and its Lua scripts) profiled
#   TANDEM_BIN=/tmp/old/tandem scripts/profile-sync.sh    # another build (e.g. before a change)
#
# Environment: PROFILE, TANDEM_BIN, BENCH_BIN, OUT (default test-artifacts/profile), BENCH_ARGS (the load;
# default 24 editors over 8 docs at 2.5 pushes/s each for 40 s: 60 pushes/s, which the server keeps up
# with under callgrind, ~50× slower than natively). Fixed costs (presence ticks, the status sampler,
# pings) are in the totals: measure them with an idle run (e.g. --rate 0.05) and subtract per second.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/profile.sh

TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
PROFILE=${PROFILE:-tandem}
case "$PROFILE" in tandem | redis) ;; *) echo "PROFILE is tandem or redis" >&2; exit 2 ;; esac
BENCH_ARGS=${BENCH_ARGS:-"--editors 24 --docs 8 --rate 2.5 --duration 40 --warmup 3 --drain 5 --conflict 0.1"}

profile_init
profile_start_redis --appendonly yes --appendfsync everysec
profile_start_tandem tandem profile

commits() {
    local total=0 key
    for key in $(redis-cli -p "$REDIS_PORT" --scan --pattern 'tandem:*:clock'); do
        total=$((total + $(redis-cli -p "$REDIS_PORT" get "$key")))
    done
    echo "$total"
}
window_started() { FIRST=$(commits); }
window_ended() { LAST=$(commits); }

# shellcheck disable=SC2086
profile_bench_window sync $BENCH_ARGS
COMMITS=$((LAST - FIRST))
profile_results
{
    echo "$PROFILE under callgrind; $(basename "$TANDEM"); commits in the window: $COMMITS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$PROFILE: $IR instructions in $SECONDS_PROFILED s, $((IR / (COMMITS > 0 ? COMMITS : 1))) per commit ($PROFILE_OUT)"
    grep -E "throughput|results by action|redis commands per push|errors by code" "$OUT/profile-bench.txt" || true
} | tee "$OUT/summary-$PROFILE.txt"
profile_annotate
