#!/usr/bin/env bash
# Instructions per delivery in tandem for Yjs (issue 10), counted by valgrind's callgrind: repeatable on a
# busy machine, unlike CPU time. Same method and workarounds as scripts/profile-presence.sh: tandem runs
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

MODE=${1:-updates}
TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
YJS_ARGS=${YJS_ARGS:-"--clients 10 --rooms 1 --rate 5 --awareness-rate 2 --duration 20 --warmup 3"}
AWARENESS_CLIENTS=${AWARENESS_CLIENTS:-20}
AWARENESS_ROOMS=${AWARENESS_ROOMS:-2}
AWARENESS_RATE=${AWARENESS_RATE:-5}
AWARENESS_SECONDS=${AWARENESS_SECONDS:-20}
for tool in valgrind callgrind_control callgrind_annotate redis-server redis-cli cc strip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind redis-server)" >&2; exit 1; }
done
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/tandem-profile-yjs.XXXXXX)
REDIS_PID=""
TANDEM_PID=""
stop() {
    # Only the processes this script started, by pid.
    for pid in $TANDEM_PID $REDIS_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $TANDEM_PID $REDIS_PID; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    TANDEM_PID=""
    REDIS_PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT

# The workarounds of scripts/profile-presence.sh for Debian 12's valgrind 3.19 with Swift 6 binaries: a copy
# without DWARF 5 debug info, and a sigsuspend that copies libdispatch's read-only mask.
cp "$TANDEM" "$WORK/tandem"
strip --strip-debug "$WORK/tandem"
cat >"$WORK/sigsuspend.c" <<'EOF_C'
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
EOF_C
cc -shared -fPIC -O2 -o "$WORK/sigsuspend.so" "$WORK/sigsuspend.c"

# profile NAME PATH BENCH_COMMAND…: a fresh Redis and tandem (under callgrind), the bench against
# ws://…PATH, instructions over the bench's measured window per delivery.
profile() {
    local name=$1 path=$2
    shift 2
    local redis_port ws_port ops_port
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$WORK" --appendonly no --save "" --daemonize no \
        --logfile "$WORK/redis.log" >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 300); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.2; done
    ws_port=$(free_port)
    ops_port=$(free_port)
    LD_PRELOAD="$WORK/sigsuspend.so" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name.%p" \
        "$WORK/tandem" serve --host 127.0.0.1 --port "$ws_port" --ops-port "$ops_port" \
        --redis "redis://127.0.0.1:$redis_port" --node-id profile >"$WORK/tandem-$name.log" 2>&1 &
    TANDEM_PID=$!
    for _ in $(seq 600); do grep -q listening "$WORK/tandem-$name.log" && break; sleep 0.2; done
    grep -q listening "$WORK/tandem-$name.log" || { echo "tandem did not start" >&2; cat "$WORK/tandem-$name.log" >&2; exit 1; }
    "$BENCH" "$@" --url "ws://127.0.0.1:$ws_port$path" --json-out "$OUT/profile-$name.json" >"$OUT/profile-$name.txt" 2>&1 &
    local bench_pid=$!
    for _ in $(seq 1200); do grep -q "measuring for" "$OUT/profile-$name.txt" 2>/dev/null && break; sleep 0.1; done
    callgrind_control --zero "$TANDEM_PID" >/dev/null
    wait "$bench_pid" || true
    callgrind_control --dump=window "$TANDEM_PID" >/dev/null
    sleep 1
    local file ir delivered
    file=$(ls -t "$OUT"/callgrind."$name".* | head -1)
    ir=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    delivered=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["updates"]["delivered"] + r["awareness"]["delivered"] if "updates" in r else r["delivered"])' "$OUT/profile-$name.json")
    {
        echo "$name: $ir instructions in the window, $delivered deliveries, $((ir / (delivered > 0 ? delivered : 1))) per delivery ($(basename "$TANDEM"), load $(cut -d' ' -f1-3 /proc/loadavg); $file)"
        grep -E "delivered|p99|errors by code|disconnect" "$OUT/profile-$name.txt" | head -8 || true
    } | tee "$OUT/summary-$name.txt"
    callgrind_annotate --inclusive=yes "$file" 2>/dev/null | head -90 >"$OUT/$name-inclusive.txt" || true
    callgrind_annotate --inclusive=no "$file" 2>/dev/null | head -70 >"$OUT/$name-self.txt" || true
    stop
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
