#!/usr/bin/env bash
# Instructions per second of an idle tandem node (no clients), counted by valgrind's callgrind: the fixed
# costs (timers, presence ticks, the status sampler, the directory heartbeat) that every loaded run of
# scripts/profile-sync.sh and scripts/profile-presence.sh also pays. tandem runs under callgrind and
# redis-server natively; the counters are zeroed 5 s after tandem is listening and dumped WINDOW seconds
# later. The harness (and its valgrind workarounds) is scripts/lib/profile.sh, shared with the other two.
#
#   scripts/profile-idle.sh                               # .build/release/tandem, 20 s
#   TANDEM_BIN=/tmp/old/tandem WINDOW=30 scripts/profile-idle.sh
#
# Environment: TANDEM_BIN, OUT (default test-artifacts/profile), WINDOW (seconds, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/profile.sh

TANDEM=${TANDEM_BIN:-.build/release/tandem}
OUT=${OUT:-test-artifacts/profile}
WINDOW=${WINDOW:-20}
PROFILE=idle

profile_init
profile_start_redis
profile_start_tandem idle profile-idle
sleep 5  # past start-up (first Redis round trips, script loads)

profile_idle_window "$WINDOW"
profile_results
echo "idle tandem ($(basename "$TANDEM")): $IR instructions in $SECONDS_PROFILED s, $(python3 -c "print(round($IR / $SECONDS_PROFILED))") per second ($PROFILE_OUT)" |
    tee "$OUT/summary-idle.txt"
profile_annotate
