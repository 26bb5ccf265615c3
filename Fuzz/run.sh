#!/usr/bin/env bash
# Builds the libFuzzer harnesses (Fuzz/Package.swift) and runs each for a given time; what `make fuzz`
# (FUZZ_SECONDS each, default 600) and the short pass of `make test` (18 s each, FUZZ_JOBS=2) run.
#
#   Fuzz/run.sh                       # every harness, 600 s each
#   Fuzz/run.sh 30 fuzz-json          # one harness, 30 s
#   FUZZ_JOBS=2 Fuzz/run.sh 600       # two harnesses at a time (default: one; the machine is shared)
#
# Each harness starts from its committed seeds (Fuzz/Corpus/<target>, read only) plus what earlier runs
# found (.build-fuzz/corpus/<target>, git-ignored), with Fuzz/Dictionaries/<target>.dict if present.
# A crash or failed invariant writes test-artifacts/fuzz/<target>/crash-* (reproduce with
# `.build-fuzz/release/<target> FILE`) and makes this script exit non-zero. The table of executions
# per target goes to test-artifacts/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-${FUZZ_SECONDS:-600}}
shift || true
ALL=(fuzz-json fuzz-client-message fuzz-doc-replica fuzz-presence fuzz-hiredis-reply fuzz-query-string fuzz-ops-route
    fuzz-yjs-update fuzz-yjs-merge fuzz-yjs-message fuzz-yjs-room fuzz-ws-frames fuzz-client-frames)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
OUT=test-artifacts/fuzz
SCRATCH=.build-fuzz
BIN=$SCRATCH/release

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    echo "building fuzz harnesses (release, -sanitize=fuzzer,address) in $SCRATCH"
    # The gold linker warns "Cannot export local symbol" for every ASan helper: harmless, filtered.
    # One product at a time: a plain `swift build` of this package would also build the root package's
    # executables with the fuzzer's `main`.
    for target in "${TARGETS[@]}"; do
        set +o pipefail
        nice -n 10 scripts/with-private-tmpdir.sh swift build --package-path Fuzz --scratch-path "$SCRATCH" -c release --product "$target" \
            -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing 2>&1 |
            grep -v -e "Cannot export local symbol" -e "prohibited flag(s): -D_FILE_OFFSET_BITS"
        status=${PIPESTATUS[0]}
        set -o pipefail
        [ "$status" -eq 0 ] || { echo "fuzz build of $target failed" >&2; exit "$status"; }
    done
fi
mkdir -p "$OUT"

run_one() {
    local target=$1
    local work=$SCRATCH/corpus/$target artifacts=$OUT/$target
    mkdir -p "$work" "$artifacts"
    local args=(-max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
        -artifact_prefix="$artifacts/" "$work" "Fuzz/Corpus/$target")
    [ -f "Fuzz/Dictionaries/$target.dict" ] && args=(-dict="Fuzz/Dictionaries/$target.dict" "${args[@]}")
    # Swift's own backtracer would run inside ASan's crash handler; libFuzzer prints the stack itself.
    local status=0
    # Deterministic hashing: Dictionary and Set iterate in the same order every run, so a crash input
    # crashes again when replayed (with per-process seeds, one found by fuzz-presence did so 1 time in 2).
    SWIFT_BACKTRACE=enable=no SWIFT_DETERMINISTIC_HASHING=1 nice -n 10 "$BIN/$target" "${args[@]}" >"$artifacts/log.txt" 2>&1 || status=$?
    local runs rate
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$artifacts/log.txt" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$artifacts/log.txt" | tail -1)
    if [ "$status" -eq 0 ]; then
        printf '%-22s %6s s %12s runs %8s exec/s   ok\n' "$target" "$SECONDS_EACH" "${runs:-?}" "${rate:-?}"
    else
        printf '%-22s %6s s %12s runs %8s exec/s   FAILED (exit %s): %s\n' "$target" "$SECONDS_EACH" "${runs:-?}" \
            "${rate:-?}" "$status" "$(ls -t "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* 2>/dev/null | head -1)"
        grep -m1 -E "invariant violated|Fatal error|ERROR: (AddressSanitizer|libFuzzer)" "$artifacts/log.txt" | sed 's/^/    /'
        grep -m3 -E "^ +#[0-9]+ .* in .*(Sources/Tandem|Fuzz/Sources)" "$artifacts/log.txt" | sed 's/^/    /'
        return 1
    fi
}

failed=0
{
    echo "fuzz run $(date -u +%Y-%m-%dT%H:%M:%SZ), $SECONDS_EACH s per target, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
        pids=()
        for target in "${TARGETS[@]}"; do
            run_one "$target" &
            pids+=($!)
            while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do sleep 1; done
        done
        for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    else
        for target in "${TARGETS[@]}"; do run_one "$target" || failed=1; done
    fi
    [ "$failed" -eq 0 ] || echo "crashes: see $OUT/<target>/log.txt; reproduce with $BIN/<target> <crash file>"
} | tee "$OUT/summary.txt"
grep -q FAILED "$OUT/summary.txt" && exit 1
exit 0
