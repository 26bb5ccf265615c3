#!/usr/bin/env bash
# Instructions per second of an idle tandem node (no clients), counted by valgrind's callgrind: the fixed
# costs (timers, presence ticks, the status sampler, the directory heartbeat) that every loaded run of
# scripts/profile-sync.sh and scripts/profile-presence.sh also pays. tandem runs under callgrind and
# redis-server natively; the counters are zeroed 5 s after tandem is listening and dumped WINDOW seconds
# later. Same valgrind workarounds as profile-sync.sh.
#
#   scripts/profile-idle.sh                               # .build/release/tandem, 20 s
#   TANDEM_BIN=/tmp/old/tandem WINDOW=30 scripts/profile-idle.sh
#
# Environment: TANDEM_BIN, OUT (default test-artifacts/profile), WINDOW (seconds, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

TANDEM=${TANDEM_BIN:-.build/release/tandem}
OUT=${OUT:-test-artifacts/profile}
WINDOW=${WINDOW:-20}
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
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --daemonize no --logfile "$WORK/redis.log" \
    >/dev/null 2>&1 &
REDIS_PID=$!
for _ in $(seq 300); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done

# The two workarounds of profile-sync.sh: valgrind 3.19 cannot read the toolchain's DWARF 5 (profile a copy
# without debug info), and writes to the mask libdispatch passes to sigsuspend (a preloaded copy-first one).
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
LD_PRELOAD="$WORK/sigsuspend.so" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.idle.%p" \
    "$WORK/tandem" serve --host 127.0.0.1 --port "$WS_PORT" --ops-port "$OPS_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" \
    --node-id profile-idle >"$WORK/tandem.log" 2>&1 &
TANDEM_PID=$!
for _ in $(seq 600); do grep -q listening "$WORK/tandem.log" && break; sleep 0.2; done
grep -q listening "$WORK/tandem.log" || { echo "tandem did not start" >&2; cat "$WORK/tandem.log" >&2; exit 1; }
sleep 5  # past start-up (first Redis round trips, script loads)

callgrind_control --zero "$TANDEM_PID" >/dev/null
STARTED=$(date +%s.%N)
sleep "$WINDOW"
callgrind_control --dump=window "$TANDEM_PID" >/dev/null
SECONDS_PROFILED=$(python3 -c "import time; print(round(time.time() - $STARTED, 1))")
sleep 1

PROFILE_OUT=$(ls -t "$OUT"/callgrind.idle.* | head -1)
IR=$(callgrind_annotate "$PROFILE_OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "idle tandem ($(basename "$TANDEM")): $IR instructions in $SECONDS_PROFILED s, $(python3 -c "print(round($IR / $SECONDS_PROFILED))") per second ($PROFILE_OUT)" |
    tee "$OUT/summary-idle.txt"
callgrind_annotate --inclusive=yes "$PROFILE_OUT" 2>/dev/null | head -80 >"$OUT/idle-inclusive.txt"
echo "top functions: $OUT/idle-inclusive.txt"
