#!/usr/bin/env bash
# Instructions per cross-node presence delta (issue 11 item 4), counted by valgrind's callgrind: two tandem
# nodes on one redis-server, node A under callgrind and node B native, tandem-bench presence with half of
# each doc's members on each (--second-url). Every delta A publishes crosses to B, and every delta B
# publishes is received by A off pub/sub (hiredis reply → hand-off to the doc's loop → decode → forward).
# The counters of A are zeroed when the bench's measured window starts and dumped when it ends; A's own
# metrics give what it published (tandem_presence_publish_seconds_count: one per Redis write that
# publishes a tick's delta) and what it received (tandem_presence_remote_deltas_total) in the window.
# Totals include A's local work too (its own clients' updates and deliveries, ticks); the per-stage
# inclusive costs (the subscriber's message path, the shard's `received`, the decode) are listed from the
# profile in $OUT/summary-crossnode.txt, with node B's wake-ups per delta it received by thread (its threads'
# context switches in the window: the hand-offs of the receiving side, counted natively).
#
#   scripts/profile-crossnode.sh                               # .build/release binaries
#   TANDEM_BIN=/tmp/old/tandem scripts/profile-crossnode.sh    # another build (e.g. before a change)
#
# Environment: TANDEM_BIN, BENCH_BIN, OUT (default test-artifacts/profile), BENCH_ARGS (the load; default
# 16 clients over 2 docs at 4 updates/s each for 30 s, 4 members of each doc on each node).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/profile.sh

TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
OUT=${OUT:-test-artifacts/profile}
PROFILE=crossnode
BENCH_ARGS=${BENCH_ARGS:-"--clients 16 --docs 2 --rate 4 --duration 30 --warmup 3"}

profile_init
profile_start_redis
profile_start_tandem crossnode node-a

# Node B: natively, from the same copy, on ports of its own (stopped by pid on exit with the others).
B_WS_PORT=$(free_port)
B_OPS_PORT=$(free_port)
"$WORK/tandem" serve --host 127.0.0.1 --port "$B_WS_PORT" --ops-port "$B_OPS_PORT" \
    --redis "redis://127.0.0.1:$REDIS_PORT" --node-id node-b >"$WORK/tandem-b.log" 2>&1 &
B_PID=$!
stop_b() { kill -TERM "$B_PID" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$B_PID" 2>/dev/null || break; sleep 0.2; done; }
trap 'stop_b; profile_cleanup' EXIT
for _ in $(seq 300); do grep -q listening "$WORK/tandem-b.log" && break; sleep 0.2; done
grep -q listening "$WORK/tandem-b.log" || { echo "node B did not start" >&2; cat "$WORK/tandem-b.log" >&2; exit 1; }

# A's counters: deltas it published and received from B.
counters() {
    curl -sf "http://127.0.0.1:$OPS_PORT/metrics" | awk '
        /^tandem_presence_publish_seconds_count/ { published += $NF }
        /^tandem_presence_remote_deltas_total/ { received += $NF }
        END { printf "%d %d\n", published, received }'
}
# B runs natively, so its threads' context switches count its wake-ups (A's, under valgrind, are serialized):
# voluntary switches per thread name (`/proc/PID/task/*/status`), summed by name with the event loops'
# numbers dropped (NIO-ELT-0-#1 → NIO-ELT), and what B received from A in the window (its own metrics).
b_counters() {
    curl -sf "http://127.0.0.1:$B_OPS_PORT/metrics" | awk '/^tandem_presence_remote_deltas_total/ { n += $NF } END { printf "%d\n", n }'
}
b_switches() {
    local task name
    for task in /proc/"$B_PID"/task/*; do
        name=$(tr -d '\n' <"$task/comm" 2>/dev/null | sed -E 's/-?[0-9#-]+$//') || continue
        awk -v name="$name" '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 }
            END { printf "%s %d %d\n", name, v, n }' "$task/status" 2>/dev/null || true
    done | awk '{ v[$1] += $2; n[$1] += $3 } END { for (k in v) printf "%s %d %d\n", k, v[k], n[k] }' | sort
}
window_started() { read -r PUB0 REC0 < <(counters); B_REC0=$(b_counters); b_switches >"$WORK/b-switches-0"; }
window_ended() { read -r PUB1 REC1 < <(counters); B_REC1=$(b_counters); b_switches >"$WORK/b-switches-1"; }

# shellcheck disable=SC2086
profile_bench_window presence $BENCH_ARGS --second-url "ws://127.0.0.1:$B_WS_PORT/v1/ws"
PUBLISHED=$((PUB1 - PUB0))
RECEIVED=$((REC1 - REC0))
profile_results

# Inclusive instructions of the stages of the cross-node path: a function's cost with its callees, found by
# a piece of its mangled name (valgrind reads the symbol table of a stripped copy: names stay mangled).
INCLUSIVE=$(callgrind_annotate --inclusive=yes --threshold=100 "$PROFILE_OUT" 2>/dev/null || true)
stage() {
    local label=$1 pattern=$2 ir
    ir=$( (grep -E "$pattern" <<<"$INCLUSIVE" || true) | head -1 | awk '{gsub(",", "", $1); print $1}')
    [ -n "$ir" ] || ir=0
    echo "  $label: $ir ($((ir / (RECEIVED > 0 ? RECEIVED : 1))) per received delta)"
}
{
    echo "node A under callgrind, B native; $(basename "$TANDEM"); in the window A published $PUBLISHED deltas and received $RECEIVED from B (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "crossnode: $IR instructions in $SECONDS_PROFILED s, $((IR / (RECEIVED > 0 ? RECEIVED : 1))) per received delta ($PROFILE_OUT)"
    echo "stages (inclusive):"
    stage "subscriber push (handlePush: hook, decode, hand-off when not batched)" "SubscriberConnectionHandlerC10handlePush"
    stage "subscriber read burst end (batched hand-off)" "SubscriberConnectionHandlerC13readBurstEnded"
    stage "hiredis reply parsing (redisGetReplyFromReader)" "redisGetReplyFromReader"
    stage "node's message hook (RedisHooks.message/messages)" "RedisHooksC[0-9]+messages?y"
    stage "decode (NodeMessage.decode)" "NodeMessageO6decode"
    stage "parser (JSONParser.parse)" "JSONParserV5parse_8maxDepth"
    stage "every execute on the loops (the hand-offs among them)" "SelectableEventLoopC7NIOCore0cD0AadEP7execute"
    stage "shard applies it (DocShard.received on the loop)" "DocShardC8received_3doc12arrivedNanos.*cfU_"
    stage "presence state (PresenceDoc.receive)" "PresenceDocV7receive_5nowMs"
    stage "publishing (NodeMessage.encode)" "NodeMessageO6encode12upsertRanges"
    B_RECEIVED=$((B_REC1 - B_REC0))
    echo "node B (native) received $B_RECEIVED deltas from A in the window; its threads' context switches (voluntary = it slept and was woken; involuntary = preempted), total and per delta B received:"
    join "$WORK/b-switches-0" "$WORK/b-switches-1" | awk -v n="$B_RECEIVED" '{ v = $4 - $2; i = $5 - $3
        printf "  %-22s voluntary %7d (%.2f per delta)  involuntary %6d (%.2f per delta)\n", $1, v, v / (n > 0 ? n : 1), i, i / (n > 0 ? n : 1) }'
    grep -E "sent  |delivered  |end-to-end|cross|same|errors by code" "$OUT/profile-bench.txt" || true
} | tee "$OUT/summary-$PROFILE.txt"
profile_annotate || true  # (head closes the pipe early: SIGPIPE, not a failure)
