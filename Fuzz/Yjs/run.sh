#!/usr/bin/env bash
# Builds the TandemYjs libFuzzer harnesses (Fuzz/Yjs/Package.swift) and runs each for a given time.
#
#   Fuzz/Yjs/run.sh                        # every harness, 300 s each
#   Fuzz/Yjs/run.sh 60 fuzz-yjs-update     # one harness, 60 s
#
# Each harness starts from its committed seeds (Fuzz/Yjs/Corpus/<target>, read only) plus what
# earlier runs found (.build-fuzz-yjs/corpus/<target>, git-ignored). A crash or failed invariant
# writes test-artifacts/fuzz-yjs/<target>/crash-* (reproduce with `.build-fuzz-yjs/release/<target>
# FILE`) and makes this script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz-yjs-update fuzz-yjs-merge fuzz-yjs-message)
SCRATCH=.build-fuzz-yjs
OUT=test-artifacts/fuzz-yjs

for target in "${TARGETS[@]}"; do
    set +o pipefail
    # The gold linker's "Cannot export local symbol" warnings for ASan helpers are harmless.
    nice -n 10 swift build --package-path Fuzz/Yjs --scratch-path "$SCRATCH" -c release --product "$target" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing 2>&1 |
        grep -v -e "Cannot export local symbol" -e "prohibited flag(s)"
    status=${PIPESTATUS[0]}
    set -o pipefail
    [ "$status" -eq 0 ] || { echo "fuzz build of $target failed" >&2; exit "$status"; }
done

failed=0
for target in "${TARGETS[@]}"; do
    work=$SCRATCH/corpus/$target
    artifacts=$OUT/$target
    mkdir -p "$work" "$artifacts"
    status=0
    SWIFT_BACKTRACE=enable=no nice -n 10 "$SCRATCH/release/$target" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" "$work" "Fuzz/Yjs/Corpus/$target" \
        >"$artifacts/log.txt" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$artifacts/log.txt" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$artifacts/log.txt" | tail -1)
    cov=$(grep -o "cov: [0-9]*" "$artifacts/log.txt" | tail -1)
    if [ "$status" -eq 0 ]; then
        printf '%-18s %5s s %10s runs %7s exec/s  %s  ok\n' "$target" "$SECONDS_EACH" "${runs:-?}" "${rate:-?}" "$cov"
    else
        printf '%-18s FAILED (exit %s): see %s/log.txt\n' "$target" "$status" "$artifacts"
        grep -m1 -E "invariant violated|Fatal error|ERROR: (AddressSanitizer|libFuzzer)" "$artifacts/log.txt" | sed 's/^/    /'
        failed=1
    fi
done
exit "$failed"
