#!/usr/bin/env bash
# The Swift test suite under ThreadSanitizer, then AddressSanitizer (`make test-sanitizers`).
#
#   scripts/test-sanitizers.sh                    # thread, then address: build and run the whole suite
#   scripts/test-sanitizers.sh address            # one sanitizer
#   SANITIZER_FILTER=SyncGapTests scripts/test-sanitizers.sh thread   # some suites (a `swift test --filter`)
#
# Each sanitizer builds in its own scratch path (.build-tsan, .build-asan; git-ignored), so the normal
# .build stays valid. The `tandem` the process tests start is the one built beside the sanitized test
# binary (TANDEM_BUILT_PRODUCTS_DIR points there, and the script checks it is instrumented), so a node
# in a child process is checked too. redis-server, node and python children are not Swift and are not
# instrumented.
#
# Every report, from the test process or any child, goes to test-artifacts/sanitizers/<sanitizer>/
# (`log_path`: one file per process that reported) and is printed at the end; any report fails the run,
# as does any failing test. ThreadSanitizer keeps going after a report (halt_on_error=0), so one run
# shows every race, and exits 66 at the end; AddressSanitizer stops the process at its first error (its
# default), and LeakSanitizer checks each process at exit. A crash (a Swift trap is SIGILL) is reported by
# the sanitizer with its stack, in the same log. Suppressions (only for the Swift runtime or third-party
# code, each naming its upstream issue) are in scripts/tsan-suppressions.txt and
# scripts/lsan-suppressions.txt; the suppressions matched are listed in the log too, and do not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

SANITIZERS=("$@")
[ ${#SANITIZERS[@]} -gt 0 ] || SANITIZERS=(thread address)
FILTER=${SANITIZER_FILTER:-}
SWIFT=${SWIFT:-swift}
# Build and test with a lower priority: the machine is usually shared.
NICE=${SANITIZER_NICE:-5}
TIMEOUT_SCALE=${TANDEM_TEST_TIMEOUT_SCALE:-}

failed=()
for sanitizer in "${SANITIZERS[@]}"; do
    case "$sanitizer" in
    thread) scratch=.build-tsan runtime_symbol=__tsan_init default_scale=5 ;;
    address) scratch=.build-asan runtime_symbol=__asan_init default_scale=3 ;;
    *) echo "unknown sanitizer '$sanitizer' (thread | address)" >&2; exit 2 ;;
    esac
    reports=$PWD/test-artifacts/sanitizers/$sanitizer
    rm -rf "$reports"
    mkdir -p "$reports"
    flags=(--sanitize="$sanitizer" --scratch-path "$scratch")

    echo "== $sanitizer sanitizer: building in $scratch"
    start=$SECONDS
    nice -n "$NICE" scripts/with-private-tmpdir.sh "$SWIFT" build --build-tests "${flags[@]}"
    echo "== $sanitizer sanitizer: built in $((SECONDS - start)) s"

    bin=$(scripts/with-private-tmpdir.sh "$SWIFT" build "${flags[@]}" --show-bin-path)
    # (grep -c, not -q: -q would stop reading early and fail nm with SIGPIPE under pipefail)
    if [ "$(nm "$bin/tandem" | grep -c " T $runtime_symbol\$")" -eq 0 ]; then
        echo "$bin/tandem is not built with the $sanitizer sanitizer" >&2
        exit 1
    fi

    (
        case "$sanitizer" in
        thread)
            export TSAN_OPTIONS="log_path=$reports/report halt_on_error=0 exitcode=66 history_size=7 second_deadlock_stack=1 handle_sigill=1 handle_abort=1 suppressions=$PWD/scripts/tsan-suppressions.txt${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
            ;;
        address)
            export ASAN_OPTIONS="log_path=$reports/report halt_on_error=1 detect_leaks=1 handle_sigill=1 handle_abort=1${ASAN_OPTIONS:+ $ASAN_OPTIONS}"
            export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan-suppressions.txt${LSAN_OPTIONS:+ $LSAN_OPTIONS}"
            ;;
        esac
        export TANDEM_BUILT_PRODUCTS_DIR=$bin
        # Swift's own backtracer would start swift-backtrace with clone(), which ThreadSanitizer's clone
        # interceptor cannot survive in a process with many threads (a CHECK failure in the child, and the
        # backtracer then waits 30 s for it): the crash would be lost. The sanitizer reports it instead.
        export SWIFT_BACKTRACE=enable=no
        # Sanitized code runs several times slower: every bounded wait in the tests (waitUntil, a child's
        # output, suite time limits) is stretched by this factor (Tests/Support/Polling.swift).
        export TANDEM_TEST_TIMEOUT_SCALE=${TIMEOUT_SCALE:-$default_scale}
        # Tests too heavy to finish under this sanitizer skip themselves (see TestTimeouts.sanitizer).
        export TANDEM_SANITIZER=$sanitizer

        echo "== $sanitizer sanitizer: running the tests${FILTER:+ matching '$FILTER'} (timeouts x$TANDEM_TEST_TIMEOUT_SCALE)"
        start=$SECONDS
        status=0
        nice -n "$NICE" scripts/with-private-tmpdir.sh --fail-on-leftovers "$SWIFT" test --skip-build --no-parallel "${flags[@]}" ${FILTER:+--filter "$FILTER"} ||
            status=$?
        echo "== $sanitizer sanitizer: tests ran in $((SECONDS - start)) s, exit status $status"
        exit "$status"
    ) && status=0 || status=$?

    shopt -s nullglob
    files=("$reports"/report*)
    shopt -u nullglob
    reported=()
    suppressed=0
    for file in "${files[@]}"; do
        # At exit ThreadSanitizer lists the suppressions it matched ("ThreadSanitizer: Matched 2
        # suppressions (pid=…):" then "2 race:pattern"), LeakSanitizer likewise ("Suppressions used:",
        # "count bytes template", "3 400 pattern"); a file with nothing else is not a report.
        matched=$(sed -n -e 's/^ThreadSanitizer: Matched \([0-9]*\) suppressions.*/\1/p' \
            -e 's/^ *\([0-9][0-9]*\) *[0-9][0-9]* [^ ]*$/\1/p' "$file" | awk '{ t += $1 } END { print t + 0 }')
        suppressed=$((suppressed + matched))
        if grep -v -q -E '^ThreadSanitizer: Matched [0-9]+ suppressions|^[0-9]+ [a-z_]+:|^Suppressions used:|^ *count +bytes +template|^ *[0-9]+ +[0-9]+ +[^ ]+$|^-+$|^$' "$file"; then
            reported+=("$file")
        fi
    done
    [ "$suppressed" -eq 0 ] || echo "== $sanitizer sanitizer: $suppressed report(s) matched the suppressions in scripts/"
    if [ ${#reported[@]} -gt 0 ]; then
        for file in "${reported[@]}"; do
            echo "---- $file"
            cat "$file"
        done
        count=$(cat "${reported[@]}" | grep -c -E "WARNING: ThreadSanitizer|ERROR: (Thread|Address|Leak)Sanitizer|Sanitizer: CHECK failed" || true)
        echo "== $sanitizer sanitizer: $count report(s) from ${#reported[@]} process(es), in $reports" >&2
        failed+=("$sanitizer")
    elif [ "$status" -ne 0 ]; then
        echo "== $sanitizer sanitizer: tests failed (no sanitizer report)" >&2
        failed+=("$sanitizer")
    else
        echo "== $sanitizer sanitizer: no reports"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "sanitizer runs failed: ${failed[*]}" >&2
    exit 1
fi
