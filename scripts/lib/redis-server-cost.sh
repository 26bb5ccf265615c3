#!/usr/bin/env bash
# redis-server's instructions per group commit of one push: `SIDE=server scripts/redis-cost.sh` (read its
# comment). Run from the repository's root.
set -euo pipefail
SCRIPT=${SCRIPT:-Sources/TandemServer/Redis/GroupCommitScript.swift}
ROUND=${ROUND:-0}  # > 0: commit rounds of ROUND docs (GroupCommitScript.commitRound); figures per doc's commit
DOCS=${DOCS:-$((ROUND > 2 ? ROUND : 2))}
WARMUP=${WARMUP:-700}
CALLS=${CALLS:-200}
OUT=${OUT:-test-artifacts/redis-cost}
for tool in valgrind callgrind_control callgrind_annotate redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
# shellcheck source=profile.sh
source scripts/lib/profile.sh # free_port
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/tandem-redis-server-cost.XXXXXX)
PER=$((ROUND > 0 ? ROUND : 1))  # commits per call
# WARMUP and CALLS count commits: with rounds, calls of PER commits each (the same commits per doc).
WARMUP=$((WARMUP / PER))
CALLS=$((CALLS / PER))
ROUND=$ROUND python3 scripts/lib/commit-load.py "$SCRIPT" "$WORK" "$DOCS" "$WARMUP" "$CALLS"
PORT=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.%p" --dump-instr=no \
    redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no --logfile "$WORK/redis.log" \
    >"$WORK/valgrind.log" 2>&1 &
REDIS_PID=$!
cleanup() { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 600); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$PORT" script load "$(cat "$WORK/script.lua")" >/dev/null
pipe() { # FILE → every reply a success, or the run stops
    local result
    result=$(redis-cli -p "$PORT" --pipe <"$1" | tail -1)
    case $result in "errors: 0, "*) ;; *) echo "$1: $result" >&2; exit 1 ;; esac
}
pipe "$WORK/warmup.resp"
callgrind_control -z "$REDIS_PID" >/dev/null 2>&1
pipe "$WORK/small.resp"
callgrind_control -d small "$REDIS_PID" >/dev/null 2>&1
pipe "$WORK/large.resp"
callgrind_control -d large "$REDIS_PID" >/dev/null 2>&1
# Every call committed: each doc's clock is the number of its commits.
while read -r key want; do
    got=$(redis-cli -p "$PORT" get "$key")
    [ "$got" = "$want" ] || { echo "$key is $got, want $want: not every call committed" >&2; exit 1; }
done <"$WORK/expect"
redis-cli -p "$PORT" info commandstats | grep cmdstat >"$OUT/server.commandstats.txt"

# The dumps are numbered in order (the counters were zeroed before the first).
small_file="$WORK/callgrind.$REDIS_PID.1"
large_file="$WORK/callgrind.$REDIS_PID.2"
cp "$large_file" "$OUT/callgrind.server-commit"
callgrind_annotate --inclusive=yes --threshold=99.99 "$large_file" 2>/dev/null >"$WORK/annotated-large"
callgrind_annotate --inclusive=yes "$small_file" 2>/dev/null >"$WORK/annotated-small"
total() { awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$1"; }
small=$(total "$WORK/annotated-small")
large=$(total "$WORK/annotated-large")
# Inclusive counts in the larger window (2 × CALLS commits) of: the command, the Lua call, the inner
# redis.call (luaRedisGenericCommand is static in Debian's build: found as the one caller of scriptCall).
inclusive() { grep -m1 -E "$1" "$WORK/annotated-large" | awk '{ gsub(",", "", $1); print $1 }'; }
evalsha=$(inclusive '\?\?\?:evalShaCommand ')
pcall=$(inclusive '\?\?\?:lua_pcall ')
commands=$(inclusive '\?\?\?:scriptCall ')
generic_fn=$(callgrind_annotate --inclusive=yes --tree=caller --threshold=99.99 "$large_file" 2>/dev/null |
    awk '/\* +\?\?\?:scriptCall / { print prev } { prev = $0 }' | grep -o '???:[^ ]*' | head -1)
generic=$(inclusive "$(printf '%s' "${generic_fn:-???:luaRedisGenericCommand}" | sed 's/[?]/\\?/g') ")
n=$((2 * CALLS * PER))
if [ "$ROUND" -gt 0 ]; then shape="commit rounds of $ROUND docs"; else shape="one call per doc"; fi
{
    echo "redis-server: $(((large - small) / (CALLS * PER))) instructions per group commit of one push, $shape ($small for $CALLS calls, $large for $((2 * CALLS)); $SCRIPT)"
    echo "  outside EVALSHA (read, parse, dispatch, reply)  $(((large - evalsha) / n))"
    echo "  EVALSHA set-up (KEYS/ARGV, reply, GC)           $(((evalsha - pcall) / n))"
    echo "  Lua work                                        $(((pcall - generic) / n))"
    echo "  inner redis.calls                               $((generic / n)) (the commands' own work $((commands / n)))"
    echo "  inner commands per commit                       $(awk -v per="$PER" -F'[=,:]' '$1 != "cmdstat_evalsha" && $1 != "cmdstat_script|load" && $1 != "cmdstat_ping" && $1 != "cmdstat_echo" && $1 != "cmdstat_info" { c += $3 } /cmdstat_evalsha/ { e = $3 } END { printf "%.2f", c / (e * per) }' "$OUT/server.commandstats.txt")"
} | tee -a "$OUT/summary.txt"
