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

TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
PROFILE=tandem
callgrind() {
    # callgrind NAME COMMAND…: runs COMMAND under callgrind if NAME is the one profiled, else natively. Run
    # in the background, it execs, so $! is the process's own pid (for callgrind_control and cleanup).
    local name=$1
    shift
    if [ "$name" = "$PROFILE" ]; then
        exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name.%p" "$@"
    else
        exec "$@"
    fi
}
BENCH_ARGS=${BENCH_ARGS:-"--clients 16 --docs 1 --rate 4 --duration 30 --warmup 3"}
for tool in valgrind callgrind_control callgrind_annotate redis-server redis-cli cc strip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind redis-server)" >&2; exit 1; }
done
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/tandem-profile.XXXXXX)
REDIS_PID=""
TANDEM_PID=""
cleanup() {
    # Only the processes this script started, by pid.
    for pid in $TANDEM_PID $REDIS_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $TANDEM_PID $REDIS_PID; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

REDIS_PORT=$(free_port)
callgrind redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync everysec --save "" \
    --daemonize no --logfile "$WORK/redis.log" >"$WORK/redis.valgrind.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 300); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done

# Two workarounds for Debian 12's valgrind 3.19 with Swift 6 binaries:
# - it cannot read the DWARF 5 debug info the toolchain writes (it gives up), so it profiles a copy without
#   debug info (functions are still named, from the symbol table);
# - it writes to the signal mask a program passes to sigsuspend, and libdispatch's main thread passes a
#   constant one (in read-only memory): valgrind crashes. A preloaded sigsuspend copies the mask first.
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

WS_PORT=$(free_port)
OPS_PORT=$(free_port)
LD_PRELOAD="$WORK/sigsuspend.so" callgrind tandem "$WORK/tandem" serve --host 127.0.0.1 --port "$WS_PORT" --ops-port "$OPS_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" \
    --node-id profile >"$WORK/tandem.log" 2>&1 &
TANDEM_PID=$!
for _ in $(seq 600); do grep -q listening "$WORK/tandem.log" && break; sleep 0.2; done
grep -q listening "$WORK/tandem.log" || { echo "tandem did not start" >&2; cat "$WORK/tandem.log" >&2; exit 1; }


echo "load: $(cut -d' ' -f1-3 /proc/loadavg); bench: $BENCH_ARGS"
# shellcheck disable=SC2086
"$BENCH" presence --url "ws://127.0.0.1:$WS_PORT/v1/ws" $BENCH_ARGS --json-out "$OUT/profile-bench.json" >"$OUT/profile-bench.txt" 2>&1 &
BENCH_PID=$!
for _ in $(seq 1200); do grep -q "measuring for" "$OUT/profile-bench.txt" 2>/dev/null && break; sleep 0.1; done
PROFILED_PID=$([ "$PROFILE" = tandem ] && echo "$TANDEM_PID" || echo "$REDIS_PID")
callgrind_control --zero "$PROFILED_PID" >/dev/null
STARTED=$(date +%s.%N)
wait "$BENCH_PID" || true
callgrind_control --dump=window "$PROFILED_PID" >/dev/null
SECONDS_PROFILED=$(python3 -c "import time; print(round(time.time() - $STARTED, 1))")
SENT=$(python3 -c "import json; print(json.load(open('$OUT/profile-bench.json'))['sent'])")
DELIVERED=$(python3 -c "import json; print(json.load(open('$OUT/profile-bench.json'))['delivered'])")
sleep 1

PROFILE_OUT=$(ls -t "$OUT"/callgrind."$PROFILE".* 2>/dev/null | head -1)
IR=$(callgrind_annotate "$PROFILE_OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
{
    echo "$PROFILE under callgrind; $(basename "$TANDEM"); updates sent in the window: $SENT, entries delivered: $DELIVERED (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$PROFILE: $IR instructions in $SECONDS_PROFILED s, $((IR / (SENT > 0 ? SENT : 1))) per update, $((IR / (DELIVERED > 0 ? DELIVERED : 1))) per delivered entry ($PROFILE_OUT)"
    grep -E "sent  |delivered  |end-to-end|errors by code" "$OUT/profile-bench.txt" || true
} | tee "$OUT/summary-$PROFILE.txt"
callgrind_annotate --inclusive=yes "$PROFILE_OUT" 2>/dev/null | head -80 >"$OUT/$PROFILE-inclusive.txt"
callgrind_annotate "$PROFILE_OUT" 2>/dev/null | head -70 >"$OUT/$PROFILE-self.txt"
echo "top functions: $OUT/$PROFILE-inclusive.txt, $OUT/$PROFILE-self.txt"
