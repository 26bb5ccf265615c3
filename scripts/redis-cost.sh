#!/usr/bin/env bash
# Instructions per Redis script call on the client side (issues 8 and 14): from the caller's
# `evalScript` to the bytes on the socket, and from the reply to the completion. Starts its own
# redis-server on a free port and runs `tandem-bench redis-cost` twice per shape under
# `perf stat -e instructions:u` (user space of the bench process, every thread): once with CALLS and once
# with 2*CALLS; the difference over CALLS is the cost of one call, start-up and connect cancelled out.
# (With the measured machine busy the count still holds: instructions, not time.)
#
#   scripts/redis-cost.sh                              # .build/release/tandem-bench, both shapes
#   BENCH_BIN=/tmp/old/tandem-bench scripts/redis-cost.sh   # another build (before a change)
#   CALLGRIND=1 scripts/redis-cost.sh                  # also a callgrind profile of each shape (top functions)
#
# Environment: BENCH_BIN, CALLS (default 20000), BURST (default 8), SHAPES (default "presence commit"),
# OUT (default test-artifacts/redis-cost), EXTRA (more redis-cost options, e.g. --single).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
CALLS=${CALLS:-20000}
BURST=${BURST:-8}
SHAPES=${SHAPES:-"presence commit"}
OUT=${OUT:-test-artifacts/redis-cost}
EXTRA=${EXTRA:-}
for tool in perf redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/tandem-redis-cost.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no --daemonize no \
    --logfile "$WORK/redis.log" &
REDIS_PID=$!
cleanup() { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

instructions() { # SHAPE CALLS → instructions:u of one run
    # shellcheck disable=SC2086
    perf stat -x, -e instructions:u -o "$WORK/perf.txt" \
        "$BENCH" redis-cost --redis "redis://127.0.0.1:$PORT" --shape "$1" --count "$2" --burst "$BURST" $EXTRA >/dev/null
    awk -F, '/instructions/ { print $1 }' "$WORK/perf.txt"
}

for shape in $SHAPES; do
    instructions "$shape" 1000 >/dev/null # warm the page cache and Redis
    small=$(instructions "$shape" "$CALLS")
    large=$(instructions "$shape" $((2 * CALLS)))
    echo "$shape: $(((large - small) / CALLS)) instructions per call (burst $BURST; $small for $CALLS calls, $large for $((2 * CALLS)))" |
        tee -a "$OUT/summary.txt"
    if [ -n "${CALLGRIND:-}" ]; then
        # shellcheck disable=SC2086
        valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$shape" \
            "$BENCH" redis-cost --redis "redis://127.0.0.1:$PORT" --shape "$shape" --count "$CALLS" --burst "$BURST" $EXTRA \
            >/dev/null 2>"$WORK/valgrind.log"
        callgrind_annotate --inclusive=yes "$OUT/callgrind.$shape" 2>/dev/null | head -60 >"$OUT/inclusive.$shape.txt"
        callgrind_annotate "$OUT/callgrind.$shape" 2>/dev/null | head -60 >"$OUT/self.$shape.txt"
        echo "  callgrind: $OUT/callgrind.$shape, top functions in $OUT/inclusive.$shape.txt and self.$shape.txt"
    fi
done
