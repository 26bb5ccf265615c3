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

TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
PROFILE=${PROFILE:-tandem}
case "$PROFILE" in tandem | redis) ;; *) echo "PROFILE is tandem or redis" >&2; exit 2 ;; esac
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
BENCH_ARGS=${BENCH_ARGS:-"--editors 24 --docs 8 --rate 2.5 --duration 40 --warmup 3 --drain 5 --conflict 0.1"}
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

commits() {
    local total=0 key
    for key in $(redis-cli -p "$REDIS_PORT" --scan --pattern 'tandem:*:clock'); do
        total=$((total + $(redis-cli -p "$REDIS_PORT" get "$key")))
    done
    echo "$total"
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg); bench: $BENCH_ARGS"
# shellcheck disable=SC2086
"$BENCH" sync --url "ws://127.0.0.1:$WS_PORT/v1/ws" $BENCH_ARGS --json-out "$OUT/profile-bench.json" >"$OUT/profile-bench.txt" 2>&1 &
BENCH_PID=$!
for _ in $(seq 1200); do grep -q "measuring for" "$OUT/profile-bench.txt" 2>/dev/null && break; sleep 0.1; done
PROFILED_PID=$([ "$PROFILE" = tandem ] && echo "$TANDEM_PID" || echo "$REDIS_PID")
callgrind_control --zero "$PROFILED_PID" >/dev/null
STARTED=$(date +%s.%N)
FIRST=$(commits)
wait "$BENCH_PID" || true
LAST=$(commits)
callgrind_control --dump=window "$PROFILED_PID" >/dev/null
SECONDS_PROFILED=$(python3 -c "import time; print(round(time.time() - $STARTED, 1))")
COMMITS=$((LAST - FIRST))
sleep 1

PROFILE_OUT=$(ls -t "$OUT"/callgrind."$PROFILE".* 2>/dev/null | head -1)
IR=$(callgrind_annotate "$PROFILE_OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
{
    echo "$PROFILE under callgrind; $(basename "$TANDEM"); commits in the window: $COMMITS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$PROFILE: $IR instructions in $SECONDS_PROFILED s, $((IR / (COMMITS > 0 ? COMMITS : 1))) per commit ($PROFILE_OUT)"
    grep -E "throughput|results by action|redis commands per push|errors by code" "$OUT/profile-bench.txt" || true
} | tee "$OUT/summary-$PROFILE.txt"
callgrind_annotate --inclusive=yes "$PROFILE_OUT" 2>/dev/null | head -80 >"$OUT/$PROFILE-inclusive.txt"
callgrind_annotate "$PROFILE_OUT" 2>/dev/null | head -70 >"$OUT/$PROFILE-self.txt"
echo "top functions: $OUT/$PROFILE-inclusive.txt, $OUT/$PROFILE-self.txt"
