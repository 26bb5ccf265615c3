# The harness shared by scripts/profile-sync.sh, profile-presence.sh and profile-idle.sh (sourced, not run):
# redis-server and tandem started on free ports with the one being profiled under valgrind's callgrind, the
# counters zeroed and dumped around a window, and the totals and top functions written to $OUT.
#
# The sourcing script sets TANDEM (the binary), OUT (the output directory) and PROFILE (which process is
# profiled: the name given to `callgrind`), then calls, in order:
#   profile_init                          tools checked, $OUT and a work directory made, cleanup on exit
#   profile_start_redis ARGS…             redis-server (REDIS_PORT, REDIS_PID), extra ARGS after the defaults
#   profile_start_tandem NAME NODE_ID     tandem (WS_PORT, OPS_PORT, TANDEM_PID), under callgrind if NAME is PROFILE
#   profile_bench_window SCENARIO ARGS…   tandem-bench SCENARIO ($BENCH) against it; the window is its measured one
#     or profile_idle_window SECONDS      a window of SECONDS with no load
#   profile_results                       IR (instructions in the window) and PROFILE_OUT (the callgrind file)
#   profile_annotate                      the top functions, inclusive and self, into $OUT
#   profile_stop                          (optional) both processes stopped, to profile another run
# profile_bench_window calls `window_started` and `window_ended` if the script defines them (e.g. to read
# Redis's commit counters), and leaves SECONDS_PROFILED. PROFILE_WS_PATH is the bench's path (default /v1/ws).

profile_init() {
    for tool in valgrind callgrind_control callgrind_annotate redis-server redis-cli cc strip; do
        command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind redis-server)" >&2; exit 1; }
    done
    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/tandem-profile.XXXXXX)
    REDIS_PID=""
    TANDEM_PID=""
    trap profile_cleanup EXIT
}

profile_stop() {
    # Only the processes this script started, by pid (a script profiling several runs stops each in turn).
    for pid in $TANDEM_PID $REDIS_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $TANDEM_PID $REDIS_PID; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    TANDEM_PID=""
    REDIS_PID=""
}

profile_cleanup() {
    profile_stop
    rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

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

profile_start_redis() {
    REDIS_PORT=$(free_port)
    callgrind redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save "" "$@" \
        --daemonize no --logfile "$WORK/redis.log" >"$WORK/redis.valgrind.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 300); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
}

# Two workarounds for Debian 12's valgrind 3.19 with Swift 6 binaries, for scripts that run one under it
# (WORK set): SOURCE copied to COPY, and $WORK/sigsuspend.so built, to run `LD_PRELOAD=$WORK/sigsuspend.so`:
# - valgrind cannot read the DWARF 5 debug info the toolchain writes (it gives up), so it profiles a copy
#   without debug info (functions are still named, from the symbol table);
# - it writes to the signal mask a program passes to sigsuspend, and libdispatch's main thread passes a
#   constant one (in read-only memory): valgrind crashes. A preloaded sigsuspend copies the mask first.
valgrind_ready_copy() {
    local source=$1 copy=$2
    cp "$source" "$copy"
    strip --strip-debug "$copy"
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
}

profile_start_tandem() {
    local name=$1 node_id=$2
    valgrind_ready_copy "$TANDEM" "$WORK/tandem"

    WS_PORT=$(free_port)
    OPS_PORT=$(free_port)
    LD_PRELOAD="$WORK/sigsuspend.so" callgrind "$name" "$WORK/tandem" serve --host 127.0.0.1 --port "$WS_PORT" \
        --ops-port "$OPS_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" --node-id "$node_id" >"$WORK/tandem.log" 2>&1 &
    TANDEM_PID=$!
    for _ in $(seq 600); do grep -q listening "$WORK/tandem.log" && break; sleep 0.2; done
    grep -q listening "$WORK/tandem.log" || { echo "tandem did not start" >&2; cat "$WORK/tandem.log" >&2; exit 1; }
}

profiled_pid() { [ "$PROFILE" = redis ] && echo "$REDIS_PID" || echo "$TANDEM_PID"; }

profile_bench_window() {
    local scenario=$1
    shift
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg); bench: $*"
    "$BENCH" "$scenario" --url "ws://127.0.0.1:$WS_PORT${PROFILE_WS_PATH:-/v1/ws}" "$@" --json-out "$OUT/profile-bench.json" \
        >"$OUT/profile-bench.txt" 2>&1 &
    local bench_pid=$!
    for _ in $(seq 1200); do grep -q "measuring for" "$OUT/profile-bench.txt" 2>/dev/null && break; sleep 0.1; done
    callgrind_control --zero "$(profiled_pid)" >/dev/null
    local started
    started=$(date +%s.%N)
    if declare -F window_started >/dev/null; then window_started; fi
    wait "$bench_pid" || true
    if declare -F window_ended >/dev/null; then window_ended; fi
    callgrind_control --dump=window "$(profiled_pid)" >/dev/null
    SECONDS_PROFILED=$(python3 -c "import time; print(round(time.time() - $started, 1))")
}

profile_idle_window() {
    callgrind_control --zero "$(profiled_pid)" >/dev/null
    local started
    started=$(date +%s.%N)
    sleep "$1"
    callgrind_control --dump=window "$(profiled_pid)" >/dev/null
    SECONDS_PROFILED=$(python3 -c "import time; print(round(time.time() - $started, 1))")
}

profile_results() {
    sleep 1
    PROFILE_OUT=$(ls -t "$OUT"/callgrind."$PROFILE".* 2>/dev/null | head -1)
    IR=$(callgrind_annotate "$PROFILE_OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
}

profile_annotate() {
    callgrind_annotate --inclusive=yes "$PROFILE_OUT" 2>/dev/null | head -80 >"$OUT/$PROFILE-inclusive.txt"
    callgrind_annotate "$PROFILE_OUT" 2>/dev/null | head -70 >"$OUT/$PROFILE-self.txt"
    echo "top functions: $OUT/$PROFILE-inclusive.txt, $OUT/$PROFILE-self.txt"
}
