#!/usr/bin/env bash
# Instructions per delivery in tandem for Yjs (issue 10), counted by valgrind's callgrind: repeatable on a
# busy machine, unlike CPU time. Same method and harness as scripts/profile-presence.sh (scripts/lib/profile.sh): tandem runs
# under callgrind, redis-server natively, while tandem-bench offers a small fixed load; the counters are
# zeroed when the bench's measured window starts and dumped when it ends, and divided by the deliveries
# the bench counted in the window (updates and awareness states received by another member).
#
#   scripts/profile-yjs.sh                                   # one room: updates and awareness (fan-out cost)
#   scripts/profile-yjs.sh awareness                         # awareness alone, and protocol-v1 presence at
#                                                            # the same size and rate (awareness vs presence)
#   TANDEM_BIN=/tmp/old/tandem scripts/profile-yjs.sh        # another build (e.g. before a change)
#
# Environment: TANDEM_BIN, BENCH_BIN, OUT (default test-artifacts/profile), YJS_ARGS (the `updates` load;
# default 10 clients in one room, updates at 5 Hz and awareness at 2 Hz for 20 s: what tandem keeps up with
# under callgrind), AWARENESS_CLIENTS / _ROOMS / _RATE / _SECONDS (the `awareness` load, run as `yjs` and as
# `presence`: default 20 clients in 2 rooms/docs at 5 Hz for 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/profile.sh

MODE=${1:-updates}
TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
YJS_ARGS=${YJS_ARGS:-"--clients 10 --rooms 1 --rate 5 --awareness-rate 2 --duration 20 --warmup 3"}
AWARENESS_CLIENTS=${AWARENESS_CLIENTS:-20}
AWARENESS_ROOMS=${AWARENESS_ROOMS:-2}
AWARENESS_RATE=${AWARENESS_RATE:-5}
AWARENESS_SECONDS=${AWARENESS_SECONDS:-20}
PROFILE=none
profile_init

# profile NAME PATH SCENARIO ARGS…: a fresh Redis and tandem (under callgrind), tandem-bench SCENARIO
# against ws://…PATH, instructions over the bench's measured window per delivery.
profile() {
    local name=$1 path=$2
    shift 2
    PROFILE=$name
    profile_start_redis --appendonly no
    profile_start_tandem "$name" profile
    PROFILE_WS_PATH=$path profile_bench_window "$@"
    profile_results
    local delivered
    delivered=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["updates"]["delivered"] + r["awareness"]["delivered"] if "updates" in r else r["delivered"])' "$OUT/profile-bench.json")
    cp "$OUT/profile-bench.json" "$OUT/profile-$name.json"
    cp "$OUT/profile-bench.txt" "$OUT/profile-$name.txt"
    {
        echo "$name: $IR instructions in the window, $delivered deliveries, $((IR / (delivered > 0 ? delivered : 1))) per delivery ($(basename "$TANDEM"), load $(cut -d' ' -f1-3 /proc/loadavg); $PROFILE_OUT)"
        grep -E "delivered|p99|errors by code|disconnect" "$OUT/profile-$name.txt" | head -8 || true
    } | tee "$OUT/summary-$name.txt"
    profile_annotate
    profile_stop
}

case "$MODE" in
    updates)
        # shellcheck disable=SC2086
        profile yjs-updates /yjs yjs $YJS_ARGS ;;
    awareness)
        common="--clients $AWARENESS_CLIENTS --duration $AWARENESS_SECONDS --warmup 3"
        # shellcheck disable=SC2086
        profile yjs-awareness /yjs yjs $common --rooms "$AWARENESS_ROOMS" --rate 0 --awareness-rate "$AWARENESS_RATE"
        # shellcheck disable=SC2086
        profile presence /v1/ws presence $common --docs "$AWARENESS_ROOMS" --rate "$AWARENESS_RATE" ;;
    *) echo "usage: $0 [updates|awareness]" >&2; exit 2 ;;
esac
