#!/usr/bin/env bash
# Instructions per presence update (and per delivered entry) in tandem, counted by valgrind's callgrind:
# repeatable on a busy machine, unlike CPU time (issue 14). The presence twin of scripts/profile-sync.sh
# (same workarounds, same output files): tandem runs under callgrind, redis-server natively, while
# tandem-bench presence offers a small fixed load; the counters are zeroed when the bench's measured window
# starts and dumped when it ends, and divided by the updates the bench sent (and the entries it received)
# in the window. Fixed costs (ticks of a doc with no change, the status sampler, pings) are in the totals.
#
#   scripts/profile-presence.sh                               # .build/release binaries
#   TANDEM_BIN=/tmp/old/tandem scripts/profile-presence.sh    # another build (e.g. before a change)
#
# Environment: TANDEM_BIN, BENCH_BIN, OUT (default test-artifacts/profile), BENCH_ARGS (the load; default
# 16 clients in one doc at 4 updates/s each for 30 s, which tandem keeps up with under callgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/profile.sh

TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
PROFILE=tandem
BENCH_ARGS=${BENCH_ARGS:-"--clients 16 --docs 1 --rate 4 --duration 30 --warmup 3"}

profile_init
profile_start_redis --appendonly yes --appendfsync everysec
profile_start_tandem tandem profile

# shellcheck disable=SC2086
profile_bench_window presence $BENCH_ARGS
SENT=$(python3 -c "import json; print(json.load(open('$OUT/profile-bench.json'))['sent'])")
DELIVERED=$(python3 -c "import json; print(json.load(open('$OUT/profile-bench.json'))['delivered'])")
profile_results
{
    echo "$PROFILE under callgrind; $(basename "$TANDEM"); updates sent in the window: $SENT, entries delivered: $DELIVERED (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$PROFILE: $IR instructions in $SECONDS_PROFILED s, $((IR / (SENT > 0 ? SENT : 1))) per update, $((IR / (DELIVERED > 0 ? DELIVERED : 1))) per delivered entry ($PROFILE_OUT)"
    grep -E "sent  |delivered  |end-to-end|errors by code" "$OUT/profile-bench.txt" || true
} | tee "$OUT/summary-$PROFILE.txt"
profile_annotate
