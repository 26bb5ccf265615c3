#!/usr/bin/env bash
# Tandem benchmarks (what `make bench` runs after the release build).
#
# For each scenario: starts a redis-server on a free port (AOF everysec, like the embedded one) and a
# release `tandem serve` pointed at it, runs tandem-bench with --server-pid/--redis-pid/--redis/--ops,
# writes test-artifacts/bench/<scenario>.json (+ .txt table, server and redis logs), stops everything.
# Each scenario gets a fresh server and Redis so one cannot slow the next.
#
#   scripts/bench.sh                         # presence sync sync-large storm, at the issue's sizes
#   scripts/bench.sh presence storm          # only these
#   scripts/bench.sh presence-2k             # presence at 2,000 clients / 40 docs (issue 14)
#   scripts/bench.sh presence-compare        # presence, presence-2k and both against the bare fan-out
#                                            # server (presence-bare, presence-2k-bare), then the comparison
#   scripts/bench.sh presence-2nodes         # presence over two tandem nodes sharing one Redis (issue 11):
#                                            # half of each doc's members on each node, latency reported
#                                            # separately for same-node and cross-node pairs
#   scripts/bench.sh presence-2nodes-light   # the same with 400 clients (what 2 cores carry with two nodes)
#   scripts/bench.sh presence-2nodes-curve   # the same at 200…1,000 clients (CURVE_CLIENTS), then latency
#                                            # against load as a table (scripts/bench-presence-curve.py)
#   DURATION=20 scripts/bench.sh presence    # shorter measured window (default 60 s)
#   scripts/bench.sh overload                # sync under overload (issue 8): see the scenarios below
#   scripts/bench.sh sync-10k-bare           # the same loads against the bare sync relay (issue 8's floor;
#                                            # also sync-20k-bare, sync-40k-bare, sync-80k-bare)
#   scripts/bench.sh yjs-compare             # Yjs (issue 10): Tandem's /yjs and pycrdt-websocket side by side
#   scripts/bench.sh history                 # sync-large with version history's cost in Redis (issue 15)
#   scripts/bench.sh history-at              # /at latency on a doc of 1,000 records and 100,000 commits
#                                            # (HISTORY_AT_ARGS: scripts/history-at.py options)
#   BENCH_CLUSTER=1 scripts/bench.sh presence-200docs sync-200docs   # load spread over 3 shards (issue 11)
#
# Environment: DURATION (s), BENCH_OUT (dir), TANDEM_BIN / BENCH_BIN (binaries), BENCH_ARGS (extra
# tandem-bench options for every scenario), TANDEM_EXTRA (extra `tandem serve` options),
# SERVER_CPUS / BENCH_CPUS (taskset CPU lists: pin tandem + redis-server and the bench apart, e.g.
# SERVER_CPUS=0 BENCH_CPUS=1, to see how much the bench's own CPU use costs the server),
# PRESENCE_2NODES_CLIENTS (presence-2nodes' client count, default 1000).
#
# Yjs (issue 10, docs/benchmarks.md "yjs"): `yjs` and `yjs-pycrdt` run one load (YJS_CLIENTS clients over
# YJS_ROOMS rooms, updates at YJS_RATE Hz and awareness at YJS_AWARENESS_RATE Hz) against Tandem's /yjs and
# against pycrdt-websocket's WebsocketServer (scripts/pycrdt-websocket-server.py, run by PYCRDT_PYTHON,
# default .venv/bin/python: `make venv`); `yjs-compare` climbs YJS_LOADS ("CLIENTSxROOMS …") on both and
# writes the side-by-side summary (yjs-compare.txt: deliveries/s, p99s and server CPU per delivery of each,
# then awareness against presence, whose runs it adds unless YJS_COMPARE_AWARENESS=0); `yjs-awareness` is awareness alone at presence's size,
# next to `presence`, for the awareness-versus-presence cost.
#
# BENCH_CLUSTER=1 runs each scenario against a Redis Cluster of 3 primaries with a replica each (issue 11)
# instead of one redis-server, and reports each primary's Redis CPU, commands and docs, and Redis commands
# per commit and per presence update over all shards (test-artifacts/bench/<scenario>.cluster.txt). tandem-bench's own Redis figures
# (--redis/--redis-pid) are then left out: they describe one server.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1,000–2,000 clients plus the server's sockets on the same machine: raise the descriptor limit
# (the bench and the server inherit it). Falls back to the hard limit if 65536 is not allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

OUT=${BENCH_OUT:-test-artifacts/bench}
DURATION=${DURATION:-60}
TANDEM=${TANDEM_BIN:-.build/release/tandem}
BENCH=${BENCH_BIN:-.build/release/tandem-bench}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(presence sync sync-large storm)

for bin in "$TANDEM" "$BENCH"; do
    [ -x "$bin" ] || { echo "missing $bin: run 'swift build -c release --product tandem --product tandem-bench'" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "redis-server not found (make deps)" >&2; exit 1; }
mkdir -p "$OUT"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

REDIS_PID=""
TANDEM_PID=""
TANDEM2_PID=""
WORK=""
CLUSTER_PIDS=()
CLUSTER_PORTS=()
stop_all() {
    # Only the processes this script started, by pid.
    local tandem
    for tandem in "$TANDEM_PID" "$TANDEM2_PID"; do
        if [ -n "$tandem" ] && kill -0 "$tandem" 2>/dev/null; then
            kill -TERM "$tandem" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$tandem" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$tandem" 2>/dev/null || true
        fi
    done
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    local pid
    for pid in "${CLUSTER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${CLUSTER_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    CLUSTER_PIDS=()
    CLUSTER_PORTS=()
    if [ -n "${PYCRDT_PID:-}" ] && kill -0 "$PYCRDT_PID" 2>/dev/null; then kill -KILL "$PYCRDT_PID" 2>/dev/null || true; fi
    TANDEM_PID=""
    TANDEM2_PID=""
    OPS_PORT2=""
    REDIS_PID=""
    [ -n "$WORK" ] && rm -rf "$WORK"
    WORK=""
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

# A free port whose cluster bus port (port + 10000) is free and valid too.
free_cluster_port() {
    python3 -c '
import random, socket
while True:
    port = random.randint(20000, 50000)
    try:
        for p in (port, port + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()
    except OSError:
        continue
    print(port)
    break'
}

# BENCH_CLUSTER: six cluster-enabled redis-servers (AOF everysec), made one cluster of 3 primaries with a
# replica each; REDIS_SEEDS lists them all for --redis.
start_cluster() {
    local i port
    for i in 1 2 3 4 5 6; do
        port=$(free_cluster_port)
        mkdir -p "$WORK/$port"
        ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/$port" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --appendonly yes --appendfsync everysec --save "" --daemonize no --logfile "$WORK/$port/redis.log" &
        CLUSTER_PIDS+=($!)
        CLUSTER_PORTS+=("$port")
    done
    for port in "${CLUSTER_PORTS[@]}"; do
        for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") --cluster-replicas 1 --cluster-yes \
        >"$WORK/cluster-create.log" 2>&1 || { echo "redis-cli --cluster create failed" >&2; cat "$WORK/cluster-create.log" >&2; exit 1; }
    for port in "${CLUSTER_PORTS[@]}"; do
        for _ in $(seq 300); do redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break; sleep 0.1; done
    done
    REDIS_SEEDS=$(printf 'redis://127.0.0.1:%s,' "${CLUSTER_PORTS[@]}")
    REDIS_SEEDS=${REDIS_SEEDS%,}
    REDIS_PORT=${CLUSTER_PORTS[0]}
}

# The ports of the cluster's primaries that serve slots.
cluster_primaries() {
    redis-cli -p "${CLUSTER_PORTS[0]}" cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { split($2, a, "[:@]"); print a[2] }' | sort -n
}

# One line per primary: port, CPU seconds (sys + user), commands processed.
cluster_sample() {
    local port
    for port in $(cluster_primaries); do
        echo "$port $(redis-cli -p "$port" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { print s }') $(redis-cli -p "$port" info stats | tr -d '\r' | awk -F: '/^total_commands_processed:/ { print $2 }')"
    done
}

# One line per primary: port, docs it holds keys of (distinct {doc} hash tags; the bench may SCAN, Tandem
# never does). Taken mid-run: presence keys leave Redis with the last member.
cluster_docs() {
    local port
    for port in $(cluster_primaries); do
        echo "$port $(redis-cli -p "$port" --scan --pattern 'tandem:{*' | sed -n 's/^tandem:{\([^}]*\)}.*/\1/p' | grep -v '^nodes$' | sort -u | wc -l)"
    done
}

# A counter summed over the serving nodes' /metrics (both nodes with SECOND_NODE): $1 is an awk regex
# matching the sample lines to add.
nodes_counter() {
    local port
    for port in "$OPS_PORT" ${OPS_PORT2:+"$OPS_PORT2"}; do curl -s "http://127.0.0.1:$port/metrics"; done |
        awk -v pattern="$1" '$0 ~ pattern { s += $2 } END { printf "%d\n", s }'
}

# Commits (commit + rebase) and accepted presence updates the nodes have made, from their metrics.
node_commits() { nodes_counter '^tandem_sync_pushes_total\\{action="(commit|rebase)"\\}'; }
node_updates() { nodes_counter '^tandem_presence_updates_total\\{result="accepted"\\}'; }

# BENCH_CLUSTER: samples the cluster and the nodes' counters before the bench starts and after it has
# finished ($WORK/bench.done), so over the whole run: connect, join and warm-up included (the bench's own
# "measuring for" comes late when the machine is overloaded, so it cannot mark the window from outside).
# Which docs each shard holds is read when the bench starts measuring (every member has joined by then;
# presence keys leave Redis with a doc's last member). Files in $WORK: window.{before,after}
# (cluster_sample), window.docs (cluster_docs), window.counts (time, commits, presence updates).
cluster_window() {
    cluster_sample >"$WORK/window.before"
    echo "$(date +%s.%N) $(node_commits) $(node_updates)" >"$WORK/window.counts"
    until grep -q "measuring for" "$WORK/bench.err" 2>/dev/null || [ -e "$WORK/bench.done" ]; do sleep 0.1; done
    [ -e "$WORK/bench.done" ] || cluster_docs >"$WORK/window.docs"
    until [ -e "$WORK/bench.done" ]; do sleep 0.1; done
    cluster_sample >"$WORK/window.after"
    echo "$(date +%s.%N) $(node_commits) $(node_updates)" >>"$WORK/window.counts"
}

# The per-shard report of a cluster run: Redis CPU (share of a core) and commands per shard over the
# run, how the commands spread, and Redis commands per commit over all shards.
cluster_report() {
    python3 - "$1" <<'PY'
import sys
def read(path, width):
    rows = {}
    try:
        lines = open(path).readlines()
    except OSError:
        return rows
    for line in lines:
        parts = line.split()
        if len(parts) == width: rows[parts[0]] = tuple(float(x) for x in parts[1:])
    return rows
work = sys.argv[1]
before, after, docs = read(f"{work}/window.before", 3), read(f"{work}/window.after", 3), read(f"{work}/window.docs", 2)
try:
    counts = [[float(x) for x in line.split()] for line in open(f"{work}/window.counts")]
    (t0, c0, u0), (t1, c1, u1) = counts[0], counts[1]
except (OSError, ValueError, IndexError):
    print("Redis Cluster: no figures (no samples)")
    sys.exit(0)
seconds, commits, updates = t1 - t0, int(c1 - c0), int(u1 - u0)
zero = (0.0, 0.0)
total = sum(after[p][1] - before.get(p, zero)[1] for p in after)
all_docs = sum(d[0] for d in docs.values())
print(f"Redis Cluster, {len(after)} primaries, over the whole run ({seconds:.1f} s, connect, join and warm-up included): "
      f"{commits} commits, {updates} presence updates accepted, {all_docs:.0f} docs in Redis while measuring")
for port in sorted(after):
    cpu = after[port][0] - before.get(port, zero)[0]
    commands = after[port][1] - before.get(port, zero)[1]
    share = 100 * commands / total if total else 0
    held = docs.get(port, (0,))[0]
    doc_share = 100 * held / all_docs if all_docs else 0
    print(f"  shard :{port}: Redis CPU {100 * cpu / seconds:.1f} % of a core, {commands:.0f} commands ({share:.0f} % of all), "
          f"{held:.0f} docs ({doc_share:.0f} %)")
print(f"  Redis commands per commit (all shards): {total / commits:.2f}" if commits else "  no commits")
print(f"  Redis commands per presence update (all shards): {total / updates:.3f}" if updates else "  no presence updates")
PY
}

# Two nodes (SECOND_NODE): how each node handled the other's presence messages — forwarded at once or left
# for its tick — and the hop the forward adds on the receiving node (pub/sub arrival → written to its
# members, `tandem_presence_remote_forward_seconds`, both nodes' histograms added; from bucket bounds).
remote_presence_report() {
    local port
    for port in "$OPS_PORT" "$OPS_PORT2"; do curl -s "http://127.0.0.1:$port/metrics"; done | python3 -c '
import re, sys
forwarded = at_tick = 0.0
histograms = {}
for line in sys.stdin:
    m = re.match(r"tandem_presence_remote_deltas_total\{result=\"(\w+)\"\} (\S+)", line)
    if m:
        if m.group(1) == "forwarded": forwarded += float(m.group(2))
        else: at_tick += float(m.group(2))
    m = re.match(r"tandem_(presence_remote_forward|presence_remote_shard_hop|presence_publish|presence_tick|event_loop_lag)_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m:
        buckets = histograms.setdefault(m.group(1), {})
        buckets[float(m.group(2))] = buckets.get(float(m.group(2)), 0) + float(m.group(3))
total = forwarded + at_tick
print(f"other node'"'"'s presence messages: {forwarded:.0f} forwarded at once, {at_tick:.0f} left for the tick"
      + (f" ({100 * at_tick / total:.2f} %)" if total else ""))
def quantile(buckets, q):
    count = buckets.get(float("inf"), 0)
    for bound in sorted(buckets):
        if buckets[bound] >= q * count: return "> 10 s" if bound == float("inf") else f"<= {bound * 1000:g} ms"
labels = [
    ("presence_publish", "sender: tick start -> publishing write replied, per write"),
    ("presence_remote_shard_hop", "receiver: pub/sub arrival -> doc'"'"'s shard, per message"),
    ("presence_remote_forward", "receiver: pub/sub arrival -> written to members, per delta and loop"),
    ("presence_tick", "tick duration, per shard tick"),
    ("event_loop_lag", "event loop lag (probe), both nodes"),
]
for name, label in labels:
    buckets = histograms.get(name, {})
    count = buckets.get(float("inf"), 0)
    if count:
        print(f"{label} (n={count:.0f}): p50 {quantile(buckets, 0.5)}, p99 {quantile(buckets, 0.99)}, p99.9 {quantile(buckets, 0.999)}")
'
}

start_servers() {
    local name=$1
    WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
    if [ -n "${BENCH_CLUSTER:-}" ]; then
        start_cluster
        TANDEM_REDIS=$REDIS_SEEDS
        start_tandem "$name" "$REDIS_SEEDS"
        return
    fi
    start_redis
    TANDEM_REDIS="redis://127.0.0.1:$REDIS_PORT"
    start_tandem "$name" "$TANDEM_REDIS"
}

# A fresh redis-server in $WORK (AOF every second, no RDB): REDIS_PORT, REDIS_PID.
start_redis() {
    REDIS_PORT=$(free_port)
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync everysec \
        --save "" --daemonize no --logfile "$WORK/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$WORK/redis.log" >&2; exit 1; }
}

# Waits (up to 20 s) for a server process PID to log "listening" in LOG; exits with the log if it does not.
wait_listening() {
    local pid=$1 log=$2 what=$3
    for _ in $(seq 200); do
        grep -q "listening" "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening" "$log" || { echo "$what did not start" >&2; cat "$log" >&2; exit 1; }
}

# A second node on the same Redis (SECOND_NODE=1): WS_PORT2, OPS_PORT2, TANDEM2_PID, its log <name>.server2.log.
start_second_tandem() {
    local name=$1
    WS_PORT2=$(free_port)
    OPS_PORT2=$(free_port)
    # shellcheck disable=SC2086
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$TANDEM" serve --host 127.0.0.1 --port "$WS_PORT2" --ops-port "$OPS_PORT2" \
        --redis "$TANDEM_REDIS" --node-id "bench-$name-b" ${TANDEM_EXTRA:-} >"$OUT/$name.server2.log" 2>&1 &
    TANDEM2_PID=$!
    wait_listening "$TANDEM2_PID" "$OUT/$name.server2.log" "second tandem"
}

start_tandem() {
    local name=$1 redis=$2
    WS_PORT=$(free_port)
    OPS_PORT=$(free_port)
    # shellcheck disable=SC2086
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$TANDEM" serve --host 127.0.0.1 --port "$WS_PORT" --ops-port "$OPS_PORT" --redis "$redis" \
        --node-id "bench-$name" ${TANDEM_EXTRA:-} >"$OUT/$name.server.log" 2>&1 &
    TANDEM_PID=$!
    wait_listening "$TANDEM_PID" "$OUT/$name.server.log" tandem
}

# Busy share of all cores over 2 seconds, from /proc/stat (others' compiles and tests skew results).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

machine_state() {
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n), busy $(cpu_busy) % over 2 s"
    echo "busiest processes right now:"
    top -bn1 -o %CPU | sed -n '8,12p' | sed 's/^/  /'
}

# The bare fan-out server (`tandem-bench bare-server`, issue 14's yardstick) in place of tandem + Redis.
start_bare() {
    local name=$1
    WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
    # shellcheck disable=SC2086
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BENCH" bare-server --host 127.0.0.1 --port 0 --node-id "bench-${name%-bare}" >"$OUT/$name.server.log" 2>&1 &
    TANDEM_PID=$!
    wait_listening "$TANDEM_PID" "$OUT/$name.server.log" bare-server
    WS_PORT=$(grep -o 'ws=[0-9]*' "$OUT/$name.server.log" | cut -d= -f2)
}

# Like run_scenario, against the bare server: no Redis, no ops port (the bench's server figures are its CPU).
run_bare_scenario() {
    local name=$1
    shift
    echo
    echo "=== $name (bare fan-out server): $*${SERVER_CPUS:+ (server on CPUs $SERVER_CPUS)}${BENCH_CPUS:+ (bench on CPUs $BENCH_CPUS)}"
    machine_state
    start_bare "$name"
    local status=0
    # shellcheck disable=SC2086
    ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BENCH" "$@" --url "ws://127.0.0.1:$WS_PORT/v1/ws" --server-pid "$TANDEM_PID" \
        --json-out "$OUT/$name.json" ${BENCH_ARGS:-} | tee "$OUT/$name.txt" || status=$?
    stop_all
    if [ "$status" -ne 0 ]; then
        echo "tandem-bench $name exited with $status" >&2
        FAILED+=("$name")
    fi
    return 0
}

# The bare sync relay (`tandem-bench bare-sync-server`, issue 8's yardstick, stop 28) in place of tandem, on
# its own fresh Redis: group commits through one script call per doc, no validation, no metrics.
start_bare_sync() {
    local name=$1
    WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
    start_redis
    # shellcheck disable=SC2086
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BENCH" bare-sync-server --host 127.0.0.1 --port 0 --redis "redis://127.0.0.1:$REDIS_PORT" \
        ${BARE_SYNC_EXTRA:-} >"$OUT/$name.server.log" 2>&1 &
    TANDEM_PID=$!
    wait_listening "$TANDEM_PID" "$OUT/$name.server.log" bare-sync-server
    WS_PORT=$(grep -o 'ws=[0-9]*' "$OUT/$name.server.log" | cut -d= -f2)
}

# Like run_scenario, against the bare sync relay: its Redis's CPU and commands are measured, no ops port.
run_bare_sync_scenario() {
    local name=$1
    shift
    echo
    echo "=== $name (bare sync relay): $*${SERVER_CPUS:+ (server on CPUs $SERVER_CPUS)}${BENCH_CPUS:+ (bench on CPUs $BENCH_CPUS)}"
    machine_state
    start_bare_sync "$name"
    local status=0
    # shellcheck disable=SC2086
    ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BENCH" "$@" --url "ws://127.0.0.1:$WS_PORT/v1/ws" --server-pid "$TANDEM_PID" \
        --redis "redis://127.0.0.1:$REDIS_PORT" --redis-pid "$REDIS_PID" --json-out "$OUT/$name.json" ${BENCH_ARGS:-} | tee "$OUT/$name.txt" || status=$?
    redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null | tr -d '\r' | grep -E '^cmdstat_(evalsha|eval):' \
        >"$OUT/$name.commandstats.txt" || true
    stop_all
    if [ "$status" -ne 0 ]; then
        echo "tandem-bench $name exited with $status" >&2
        FAILED+=("$name")
    fi
    return 0
}

run_scenario() {
    local name=$1
    shift
    echo
    echo "=== $name: $*${SERVER_CPUS:+ (server on CPUs $SERVER_CPUS)}${BENCH_CPUS:+ (bench on CPUs $BENCH_CPUS)}"
    machine_state
    start_servers "$name"
    local common=(--url "ws://127.0.0.1:$WS_PORT${WS_PATH:-/v1/ws}" --ops "http://127.0.0.1:$OPS_PORT" --server-pid "$TANDEM_PID"
        --json-out "$OUT/$name.json")
    if [ -n "${SECOND_NODE:-}" ]; then
        start_second_tandem "$name"
        # Server CPU, RSS and /metrics figures are the first node's; each node serves half the clients.
        common+=(--second-url "ws://127.0.0.1:$WS_PORT2/v1/ws")
    fi
    [ -n "${BENCH_CLUSTER:-}" ] || common+=(--redis "redis://127.0.0.1:$REDIS_PORT" --redis-pid "$REDIS_PID")
    local status=0 window_sampler=""
    if [ -n "${BENCH_CLUSTER:-}" ]; then
        : >"$WORK/bench.err"
        cluster_window &
        window_sampler=$!
        until [ -s "$WORK/window.counts" ]; do sleep 0.05; done  # the "before" sample is taken
    fi
    # shellcheck disable=SC2086
    ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BENCH" "$@" "${common[@]}" ${BENCH_ARGS:-} \
        2> >(tee -a "${WORK}/bench.err" >&2) | tee "$OUT/$name.txt" || status=$?
    if [ -n "$window_sampler" ]; then
        touch "$WORK/bench.done"
        wait "$window_sampler" || true
        cluster_report "$WORK" | tee "$OUT/$name.cluster.txt"
    fi
    [ -z "${SECOND_NODE:-}" ] || remote_presence_report | tee "$OUT/$name.remote.txt"
    cp "$WORK/redis.log" "$OUT/$name.redis.log" 2>/dev/null || true
    # Redis time per script call (issue 8: the group commit is the EVALSHA; the whole run, warm-up included).
    if [ -z "${BENCH_CLUSTER:-}" ]; then
        redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null | tr -d '\r' | grep -E '^cmdstat_(evalsha|eval|xadd|publish|hset):' \
            >"$OUT/$name.commandstats.txt" || true
        grep '^cmdstat_evalsha:' "$OUT/$name.commandstats.txt" | sed 's/^/redis /' || true
    fi
    # Version history (issue 15): what it costs in Redis, per commit and against the compressed ops.
    if [ -z "${BENCH_CLUSTER:-}" ] && [[ "$name" == history* ]]; then
        sleep 3  # one more seal round after the last commits
        python3 scripts/history-bytes.py "$REDIS_PORT" | tee "$OUT/$name.history.txt" || true
    fi
    local problems
    problems=$(grep -ciE '(error|critical)' "$OUT/$name.server.log" || true)
    echo "server log: $problems error/critical lines ($OUT/$name.server.log)"
    if [ -n "${SECOND_NODE:-}" ]; then
        problems=$(grep -ciE '(error|critical)' "$OUT/$name.server2.log" || true)
        echo "second server log: $problems error/critical lines ($OUT/$name.server2.log)"
    fi
    stop_all
    if [ "$status" -ne 0 ]; then
        echo "tandem-bench $name exited with $status" >&2
        FAILED+=("$name")
    fi
    return 0
}

PYCRDT_PID=""
# The same tandem-bench load against pycrdt-websocket's WebsocketServer (one Python process, rooms in
# memory): no Redis, no ops port; its CPU and RSS from /proc by pid.
run_pycrdt_scenario() {
    local name=$1
    shift
    local python=${PYCRDT_PYTHON:-.venv/bin/python}
    "$python" -c 'import pycrdt.websocket' 2>/dev/null || { echo "$python cannot import pycrdt.websocket: run 'make venv'" >&2; FAILED+=("$name"); return 0; }
    echo
    echo "=== $name (pycrdt-websocket): $*${SERVER_CPUS:+ (server on CPUs $SERVER_CPUS)}${BENCH_CPUS:+ (bench on CPUs $BENCH_CPUS)}"
    machine_state
    local port status=0
    port=$(free_port)
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$python" scripts/pycrdt-websocket-server.py "$port" >"$OUT/$name.server.log" 2>&1 &
    PYCRDT_PID=$!
    for _ in $(seq 100); do
        grep -q "listening" "$OUT/$name.server.log" 2>/dev/null && break
        kill -0 "$PYCRDT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q "listening" "$OUT/$name.server.log"; then
        # shellcheck disable=SC2086
        ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BENCH" "$@" --server plain --url "ws://127.0.0.1:$port" --server-pid "$PYCRDT_PID" \
            --json-out "$OUT/$name.json" ${BENCH_ARGS:-} | tee "$OUT/$name.txt" || status=$?
    else
        echo "pycrdt-websocket did not start" >&2
        cat "$OUT/$name.server.log" >&2
        status=1
    fi
    kill -TERM "$PYCRDT_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PYCRDT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PYCRDT_PID" 2>/dev/null || true
    PYCRDT_PID=""
    if [ "$status" -ne 0 ]; then
        echo "tandem-bench $name exited with $status" >&2
        FAILED+=("$name")
    fi
    return 0
}

YJS_CLIENTS=${YJS_CLIENTS:-50}
YJS_ROOMS=${YJS_ROOMS:-1}
YJS_RATE=${YJS_RATE:-20}
YJS_AWARENESS_RATE=${YJS_AWARENESS_RATE:-20}
YJS_LOADS=${YJS_LOADS:-"20x1 50x1 100x2 200x4 300x6 400x8"}

yjs_load() {  # CLIENTS ROOMS: the tandem-bench yjs options of one load
    echo yjs --clients "$1" --rooms "$2" --rate "$YJS_RATE" --awareness-rate "$YJS_AWARENESS_RATE" --duration "$DURATION" --warmup 5
}

# Whether a yjs result met p99 <= 100 ms for updates and awareness (the ladder stops climbing after a miss).
yjs_met() {
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if all(t["met"] for t in r["targets"] if "p99" in t["name"]) else 1)' "$1" 2>/dev/null
}

# Awareness alone at presence's size (1,000 clients, 20 rooms, 20 Hz).
yjs_awareness_run() {
    WS_PATH=/yjs run_scenario yjs-awareness yjs --clients 1000 --rooms 20 --rate 0 --awareness-rate 20 --duration "$DURATION" --warmup 5
}

# Both servers up the YJS_LOADS ladder, each until its first load missing p99 <= 100 ms.
yjs_compare() {
    local load clients rooms tandem_on=1 pycrdt_on=1
    for load in $YJS_LOADS; do
        clients=${load%x*}
        rooms=${load#*x}
        if [ -n "$tandem_on" ]; then
            # shellcheck disable=SC2046
            WS_PATH=/yjs run_scenario "yjs-tandem-$load" $(yjs_load "$clients" "$rooms")
            yjs_met "$OUT/yjs-tandem-$load.json" || tandem_on=""
        fi
        if [ -n "$pycrdt_on" ]; then
            # shellcheck disable=SC2046
            run_pycrdt_scenario "yjs-pycrdt-$load" $(yjs_load "$clients" "$rooms")
            yjs_met "$OUT/yjs-pycrdt-$load.json" || pycrdt_on=""
        fi
        [ -n "$tandem_on$pycrdt_on" ] || break
    done
    # Awareness alone next to protocol-v1 presence at the same size (CPU per delivery of each), unless
    # YJS_COMPARE_AWARENESS=0.
    if [ "${YJS_COMPARE_AWARENESS:-1}" != 0 ]; then
        yjs_awareness_run
        run_scenario presence presence --clients 1000 --docs 20 --rate 20 --duration "$DURATION" --warmup 5
    fi
    python3 scripts/bench-yjs-compare.py "$OUT" $YJS_LOADS | tee "$OUT/yjs-compare.txt" || true
}

# A missed target is a result, not a failure: the script fails only if a scenario could not run.
FAILED=()

for scenario in "${SCENARIOS[@]}"; do
    case "$scenario" in
    presence) run_scenario presence presence --clients 1000 --docs 20 --rate 20 --duration "$DURATION" --warmup 5 ;;
    # Issue 14: presence at twice the size (2,000 clients, 40 docs of 50), where the two cores run out.
    presence-2k) run_scenario presence-2k presence --clients 2000 --docs 40 --rate 20 --duration "$DURATION" --warmup 5 ;;
    # The same loads against the bare fan-out server (issue 14 is measured side by side with it).
    presence-bare) run_bare_scenario presence-bare presence --clients 1000 --docs 20 --rate 20 --duration "$DURATION" --warmup 5 ;;
    presence-2k-bare) run_bare_scenario presence-2k-bare presence --clients 2000 --docs 40 --rate 20 --duration "$DURATION" --warmup 5 ;;
    # All four, then the comparison (deliveries/s, p99, CPU per delivery) against issue 14's targets.
    presence-compare)
        for s in presence presence-bare presence-2k presence-2k-bare; do "$(pwd)/scripts/bench.sh" "$s" || FAILED+=("$s"); done
        python3 scripts/bench-compare.py "$OUT" | tee "$OUT/presence-compare.txt" || true ;;
    # Issue 11 item 4: 1,000 clients over two nodes (20 docs, 20 Hz), same-node and cross-node p99 apart;
    # target cross-node p99 <= 65 ms (one hop: the receiving node forwards without waiting for its tick).
    # PRESENCE_2NODES_CLIENTS (default 1000) draws latency against load (docs/benchmarks.md, cross-node).
    presence-2nodes) SECOND_NODE=1 run_scenario presence-2nodes presence --clients "${PRESENCE_2NODES_CLIENTS:-1000}" --docs 20 --rate 20 \
        --duration "$DURATION" --warmup 5 --target-cross-p99-ms 65 ;;
    # Issue 11 item 5: how load spreads over a cluster's shards needs many docs (with BENCH_CLUSTER=1):
    # presence at presence's size over 200 docs of 5, and 2,000 pushes/s over 200 docs.
    presence-200docs) run_scenario presence-200docs presence --clients 1000 --docs 200 --rate 20 --duration "$DURATION" --warmup 5 ;;
    sync-200docs) run_scenario sync-200docs sync --editors 400 --docs 200 --rate 5 --duration "$DURATION" --conflict 0.1 ;;
    # Latency against load (issue 11 item 4): presence-2nodes at each of CURVE_CLIENTS (default 200 400 600
    # 800 1000), then the table (scripts/bench-presence-curve.py); with BENCH_ARGS=--trace-pubsub it also
    # has the cross-node-only legs.
    presence-2nodes-curve)
        curve_runs=()
        for n in ${CURVE_CLIENTS:-200 400 600 800 1000}; do
            SECOND_NODE=1 run_scenario "presence-2nodes-$n" presence --clients "$n" --docs 20 --rate 20 \
                --duration "$DURATION" --warmup 5 --target-cross-p99-ms 65
            curve_runs+=("presence-2nodes-$n")
        done
        python3 scripts/bench-presence-curve.py "$OUT" "${curve_runs[@]}" | tee "$OUT/presence-2nodes-curve.txt" || true ;;
    # The same at a load two cores carry with two nodes, Redis and the bench on them (400 clients).
    presence-2nodes-light) SECOND_NODE=1 run_scenario presence-2nodes-light presence --clients 400 --docs 20 --rate 20 \
        --duration "$DURATION" --warmup 5 --target-cross-p99-ms 65 ;;
    sync) run_scenario sync sync --editors 50 --docs 1 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    sync-large) run_scenario sync-large sync --editors 500 --docs 50 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    storm) run_scenario storm storm --clients 2000 --docs 20 ;;
    # Version history (issue 15): sync-large (5,000 commits/s over 50 docs) with the sealer running; compare
    # throughput and p99 with sync-large on a build before history, and read the bytes per commit and the
    # ratio to the compressed ops ($OUT/history.history.txt). history-small is a light run for a quick figure.
    history) run_scenario history sync --editors 500 --docs 50 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    history-small) run_scenario history-small sync --editors 20 --docs 2 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    # /at on a big doc (issue 15: p99 <= 50 ms at 1,000 records and 100,000 commits): scripts/history-at.py
    # builds the doc through the protocol, waits for the sealer, then times /at at random clocks.
    history-at)
        echo; echo "=== history-at: scripts/history-at.py ${HISTORY_AT_ARGS:-}"
        machine_state
        # One connection builds the doc as fast as the node commits: above the per-connection message rate.
        TANDEM_EXTRA="${TANDEM_EXTRA:-} --max-messages-per-sec 100000" start_servers history-at
        # shellcheck disable=SC2086
        python3 scripts/history-at.py "$WS_PORT" "$OPS_PORT" "$REDIS_PORT" --server-pid "$TANDEM_PID" ${HISTORY_AT_ARGS:-} | tee "$OUT/history-at.txt" \
            || FAILED+=(history-at)
        # What that doc's history takes in Redis (its checkpoints of 1,000 records weigh more than on history-small).
        python3 scripts/history-bytes.py "$REDIS_PORT" | tee "$OUT/history-at.history.txt" || true
        stop_all ;;
    # Sync under load (issue 8). 1,000 editors over 200 docs: 10,000 pushes/s offered (CPU and Redis commands
    # per commit), 20,000/s (the overload target: most committed, answered fast, the rest refused with a hint,
    # nothing unanswered), then 2× and 4× that (goodput must hold). One doc with 50 editors at 15,000/s.
    # Refused pushes are sent again after retryAfterMs (at most 3 times), as clients do.
    sync-10k) run_scenario sync-10k sync --editors 1000 --docs 200 --rate 10 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 ;;
    sync-20k) run_scenario sync-20k sync --editors 1000 --docs 200 --rate 20 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 --target-commits-per-sec 15000 ;;
    sync-40k) run_scenario sync-40k sync --editors 1000 --docs 200 --rate 40 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 ;;
    sync-80k) run_scenario sync-80k sync --editors 1000 --docs 200 --rate 80 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 ;;
    sync-hot) run_scenario sync-hot sync --editors 50 --docs 1 --rate 300 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 --target-commits-per-sec 10000 ;;
    # The same loads against the bare sync relay (issue 8 stop 28: the floor of a durable ordered relay here).
    sync-10k-bare) run_bare_sync_scenario sync-10k-bare sync --editors 1000 --docs 200 --rate 10 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 ;;
    sync-20k-bare) run_bare_sync_scenario sync-20k-bare sync --editors 1000 --docs 200 --rate 20 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 --target-commits-per-sec 15000 ;;
    sync-40k-bare) run_bare_sync_scenario sync-40k-bare sync --editors 1000 --docs 200 --rate 40 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 ;;
    sync-80k-bare) run_bare_sync_scenario sync-80k-bare sync --editors 1000 --docs 200 --rate 80 --duration "$DURATION" --conflict 0.1 --drain 5 \
        --target-result-p99-ms 250 --target-visible-p99-ms 500 ;;
    overload)
        for s in sync-10k sync-20k sync-40k sync-80k sync-hot; do "$(pwd)/scripts/bench.sh" "$s" || FAILED+=("$s"); done
        python3 scripts/bench-goodput.py "$OUT" sync-10k sync-20k sync-40k sync-80k || true ;;
    # shellcheck disable=SC2046
    yjs) WS_PATH=/yjs run_scenario yjs $(yjs_load "$YJS_CLIENTS" "$YJS_ROOMS") ;;
    # shellcheck disable=SC2046
    yjs-pycrdt) run_pycrdt_scenario yjs-pycrdt $(yjs_load "$YJS_CLIENTS" "$YJS_ROOMS") ;;
    yjs-compare) yjs_compare ;;
    # Awareness alone at presence's size (1,000 clients, 20 rooms, 20 Hz): its cost per delivery next to
    # protocol-v1 presence's (run `presence` in the same invocation; bench-yjs-compare.py compares them).
    yjs-awareness)
        yjs_awareness_run
        python3 scripts/bench-yjs-compare.py "$OUT" | tee "$OUT/yjs-awareness-vs-presence.txt" || true ;;
    *) echo "unknown scenario $scenario (presence, presence-2k, presence-bare, presence-2k-bare, presence-compare, presence-2nodes, presence-2nodes-light, presence-2nodes-curve, presence-200docs, sync-200docs, sync, sync-large, storm, history, history-small, history-at, sync-10k, sync-20k, sync-40k, sync-80k, sync-hot, overload, sync-10k-bare, sync-20k-bare, sync-40k-bare, sync-80k-bare, yjs, yjs-pycrdt, yjs-compare, yjs-awareness)" >&2; exit 2 ;;
    esac
done
echo
echo "results: $OUT/*.json"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "scenarios that did not run to the end: ${FAILED[*]}" >&2
    exit 1
fi
