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
#   DURATION=20 scripts/bench.sh presence    # shorter measured window (default 60 s)
#   scripts/bench.sh overload                # sync under overload (issue 8): see the scenarios below
#   scripts/bench.sh yjs-compare             # Yjs (issue 10): Tandem's /yjs and pycrdt-websocket side by side
#   scripts/bench.sh history                 # sync-large with version history's cost in Redis (issue 15)
#
# Environment: DURATION (s), BENCH_OUT (dir), TANDEM_BIN / BENCH_BIN (binaries), BENCH_ARGS (extra
# tandem-bench options for every scenario), TANDEM_EXTRA (extra `tandem serve` options),
# SERVER_CPUS / BENCH_CPUS (taskset CPU lists: pin tandem + redis-server and the bench apart, e.g.
# SERVER_CPUS=0 BENCH_CPUS=1, to see how much the bench's own CPU use costs the server).
#
# Yjs (issue 10, docs/benchmarks.md "yjs"): `yjs` and `yjs-pycrdt` run one load (YJS_CLIENTS clients over
# YJS_ROOMS rooms, updates at YJS_RATE Hz and awareness at YJS_AWARENESS_RATE Hz) against Tandem's /yjs and
# against pycrdt-websocket's WebsocketServer (scripts/pycrdt-websocket-server.py, run by PYCRDT_PYTHON,
# default .venv/bin/python: `make venv`); `yjs-compare` climbs YJS_LOADS ("CLIENTSxROOMS …") on both and
# writes the side-by-side summary (yjs-compare.txt); `yjs-awareness` is awareness alone at presence's size,
# next to `presence`, for the awareness-versus-presence cost.
#
# BENCH_CLUSTER=1 runs each scenario against a Redis Cluster of 3 primaries with a replica each (issue 11)
# instead of one redis-server, and reports each primary's Redis CPU and commands, and Redis commands per
# commit over all shards (test-artifacts/bench/<scenario>.cluster.txt). tandem-bench's own Redis figures
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

# Commits (commit + rebase) a node has made, from its metrics.
node_commits() {
    curl -s "http://127.0.0.1:$OPS_PORT/metrics" | awk '/^tandem_sync_pushes_total\{action="(commit|rebase)"\}/ { s += $2 } END { printf "%d\n", s }'
}

# The per-shard report of a cluster run: Redis CPU (share of a core) and commands per shard over the
# run, how the commands spread, and Redis commands per commit over all shards.
cluster_report() {
    local before=$1 after=$2 seconds=$3 commits=$4
    python3 - "$before" "$after" "$seconds" "$commits" <<'PY'
import sys
def read(path):
    rows = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 3: rows[parts[0]] = (float(parts[1]), int(parts[2]))
    return rows
before, after = read(sys.argv[1]), read(sys.argv[2])
seconds, commits = float(sys.argv[3]), int(float(sys.argv[4]))
total = sum(after[p][1] - before.get(p, (0, 0))[1] for p in after)
print(f"Redis Cluster, {len(after)} primaries, over the whole run ({seconds:.0f} s, connect and warm-up included): {commits} commits")
for port in sorted(after):
    cpu = after[port][0] - before.get(port, (0, 0))[0]
    commands = after[port][1] - before.get(port, (0, 0))[1]
    share = 100 * commands / total if total else 0
    print(f"  shard :{port}: Redis CPU {100 * cpu / seconds:.1f} % of a core, {commands} commands ({share:.0f} % of all)")
print(f"  Redis commands per commit (all shards): {total / commits:.2f}" if commits else "  no commits (a presence run)")
PY
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
    REDIS_PORT=$(free_port)
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync everysec \
        --save "" --daemonize no --logfile "$WORK/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$WORK/redis.log" >&2; exit 1; }
    TANDEM_REDIS="redis://127.0.0.1:$REDIS_PORT"
    start_tandem "$name" "$TANDEM_REDIS"
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
    for _ in $(seq 200); do
        grep -q "listening" "$OUT/$name.server2.log" 2>/dev/null && break
        kill -0 "$TANDEM2_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening" "$OUT/$name.server2.log" || { echo "second tandem did not start" >&2; cat "$OUT/$name.server2.log" >&2; exit 1; }
}

start_tandem() {
    local name=$1 redis=$2
    WS_PORT=$(free_port)
    OPS_PORT=$(free_port)
    # shellcheck disable=SC2086
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$TANDEM" serve --host 127.0.0.1 --port "$WS_PORT" --ops-port "$OPS_PORT" --redis "$redis" \
        --node-id "bench-$name" ${TANDEM_EXTRA:-} >"$OUT/$name.server.log" 2>&1 &
    TANDEM_PID=$!
    for _ in $(seq 200); do
        grep -q "listening" "$OUT/$name.server.log" 2>/dev/null && break
        kill -0 "$TANDEM_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening" "$OUT/$name.server.log" || { echo "tandem did not start" >&2; cat "$OUT/$name.server.log" >&2; exit 1; }
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
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BENCH" bare-server --host 127.0.0.1 --port 0 >"$OUT/$name.server.log" 2>&1 &
    TANDEM_PID=$!
    for _ in $(seq 100); do
        grep -q "listening" "$OUT/$name.server.log" 2>/dev/null && break
        kill -0 "$TANDEM_PID" 2>/dev/null || break
        sleep 0.1
    done
    WS_PORT=$(grep -o 'ws=[0-9]*' "$OUT/$name.server.log" | cut -d= -f2)
    [ -n "$WS_PORT" ] || { echo "bare-server did not start" >&2; cat "$OUT/$name.server.log" >&2; exit 1; }
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
    local status=0 started commits_before
    if [ -n "${BENCH_CLUSTER:-}" ]; then
        cluster_sample >"$WORK/cluster.before"
        commits_before=$(node_commits)
        started=$(date +%s.%N)
    fi
    # shellcheck disable=SC2086
    ${BENCH_CPUS:+taskset -c "$BENCH_CPUS"} "$BENCH" "$@" "${common[@]}" ${BENCH_ARGS:-} | tee "$OUT/$name.txt" || status=$?
    if [ -n "${BENCH_CLUSTER:-}" ]; then
        cluster_sample >"$WORK/cluster.after"
        cluster_report "$WORK/cluster.before" "$WORK/cluster.after" "$(echo "$(date +%s.%N) - $started" | bc)" \
            "$(( $(node_commits) - commits_before ))" | tee "$OUT/$name.cluster.txt"
    fi
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
    presence-2nodes) SECOND_NODE=1 run_scenario presence-2nodes presence --clients 1000 --docs 20 --rate 20 \
        --duration "$DURATION" --warmup 5 --target-cross-p99-ms 65 ;;
    sync) run_scenario sync sync --editors 50 --docs 1 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    sync-large) run_scenario sync-large sync --editors 500 --docs 50 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    storm) run_scenario storm storm --clients 2000 --docs 20 ;;
    # Version history (issue 15): sync-large (5,000 commits/s over 50 docs) with the sealer running; compare
    # throughput and p99 with sync-large on a build before history, and read the bytes per commit and the
    # ratio to the compressed ops ($OUT/history.history.txt). history-small is a light run for a quick figure.
    history) run_scenario history sync --editors 500 --docs 50 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
    history-small) run_scenario history-small sync --editors 20 --docs 2 --rate 10 --duration "$DURATION" --conflict 0.1 ;;
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
        WS_PATH=/yjs run_scenario yjs-awareness yjs --clients 1000 --rooms 20 --rate 0 --awareness-rate 20 --duration "$DURATION" --warmup 5
        python3 scripts/bench-yjs-compare.py "$OUT" | tee "$OUT/yjs-awareness-vs-presence.txt" || true ;;
    *) echo "unknown scenario $scenario (presence, presence-2k, presence-bare, presence-2k-bare, presence-compare, presence-2nodes, sync, sync-large, storm, history, history-small, sync-10k, sync-20k, sync-40k, sync-80k, sync-hot, overload, yjs, yjs-pycrdt, yjs-compare, yjs-awareness)" >&2; exit 2 ;;
    esac
done
echo
echo "results: $OUT/*.json"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "scenarios that did not run to the end: ${FAILED[*]}" >&2
    exit 1
fi
