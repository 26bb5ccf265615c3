#!/usr/bin/env bash
# Instructions per Redis script call on the client side (issues 8 and 14): from the caller's
# `evalScript` to the bytes on the socket, and from the reply to the completion. Starts its own
# redis-server on a free port and runs `tandem-bench redis-cost` twice per shape under valgrind's
# callgrind (every thread of the bench process; this machine has no hardware counters for perf): once
# with CALLS calls and once with 2*CALLS; the difference over CALLS is the cost of one call, start-up and
# connect cancelled out. Counts instructions, not time, so a busy machine does not skew it much.
#
#   scripts/redis-cost.sh                                    # .build/release/tandem-bench, both shapes
#   BENCH_BIN=/tmp/old/tandem-bench scripts/redis-cost.sh    # another build (before a change)
#
# Environment: BENCH_BIN, CALLS (default 4000), BURST (default 8), SHAPES (default "presence commit"),
# OUT (default test-artifacts/redis-cost: the larger run's callgrind file and its top functions per shape),
# EXTRA (more redis-cost options, e.g. --single).
#
# SIDE=server measures the other end instead (issue 8): instructions of redis-server per group commit of
# one push (the overload scenario's batches at 10,000 pushes/s), redis-server under callgrind, the commits
# made by scripts/lib/commit-load.py from GroupCommitScript.commit as it is in the source (no build
# needed: a change to the script is measured as soon as it is saved). DOCS docs (default 2) with 5
# sessions each, WARMUP commits first (default 700: every session past its 64-push ring, so each commit
# also evicts a push id, as in a long run), then CALLS (default 200) and 2 × CALLS commits with the counters
# dumped around each; the difference over CALLS is one commit. Prints the split: outside EVALSHA (reading
# and parsing the call, dispatch, the reply), EVALSHA set-up (KEYS/ARGV tables, the reply's conversion,
# Lua's GC every 50 calls), Lua work, and the inner redis.calls (their own work in brackets). SCRIPT=FILE
# measures another copy of GroupCommitScript.swift (e.g. `git show main:… > /tmp/old.swift`). ROUND=K (stop
# 30): each call a commit round of K docs' batches (GroupCommitScript.commitRound, DOCS default K), the
# figures per doc's commit; ROUND=0 (default): one `commit` call per batch, as before. OWN=1 (stop 31): each
# call's ownSubscribers 1, so every commit counts its channel's listeners (`PUBSUB NUMSUB`) as a node alone
# on its docs does; default −1, always publish (the figures before stop 31).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SIDE:-client}" = server ]; then
    exec scripts/lib/redis-server-cost.sh
fi
# shellcheck source=lib/profile.sh
source scripts/lib/profile.sh  # valgrind_ready_copy, free_port (functions only)
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
CALLS=${CALLS:-4000}
BURST=${BURST:-8}
SHAPES=${SHAPES:-"presence commit"}
OUT=${OUT:-test-artifacts/redis-cost}
EXTRA=${EXTRA:-}
for tool in valgrind callgrind_annotate redis-server redis-cli cc strip; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/tandem-redis-cost.XXXXXX)
PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no --daemonize no \
    --logfile "$WORK/redis.log" &
REDIS_PID=$!
cleanup() { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# valgrind 3.19 and Swift 6 binaries: a copy without DWARF 5 debug info, a preloaded sigsuspend.
valgrind_ready_copy "$BENCH" "$WORK/tandem-bench"

instructions() { # SHAPE CALLS OUTFILE → instructions of one run (every thread)
    # shellcheck disable=SC2086
    LD_PRELOAD="$WORK/sigsuspend.so" valgrind --tool=callgrind --callgrind-out-file="$3" \
        "$WORK/tandem-bench" redis-cost --redis "redis://127.0.0.1:$PORT" --shape "$1" --count "$2" --burst "$BURST" $EXTRA \
        >"$WORK/bench.log" 2>&1 || { cat "$WORK/bench.log" >&2; exit 1; }
    callgrind_annotate "$3" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}

for shape in $SHAPES; do
    small=$(instructions "$shape" "$CALLS" "$WORK/callgrind.small")
    large=$(instructions "$shape" $((2 * CALLS)) "$OUT/callgrind.$shape")
    echo "$shape: $(((large - small) / CALLS)) instructions per call (burst $BURST; $small for $CALLS calls, $large for $((2 * CALLS)))" |
        tee -a "$OUT/summary.txt"
    callgrind_annotate --inclusive=yes "$OUT/callgrind.$shape" >"$WORK/annotated" 2>/dev/null
    head -70 "$WORK/annotated" >"$OUT/inclusive.$shape.txt"
    callgrind_annotate "$OUT/callgrind.$shape" >"$WORK/annotated" 2>/dev/null
    head -70 "$WORK/annotated" >"$OUT/self.$shape.txt"
done
