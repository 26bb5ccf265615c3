#!/usr/bin/env bash
# Runs a command with TMPDIR set to a new directory of its own, removed when the command ends (also on
# failure or Ctrl-C); the command's exit status is kept.
#
#   scripts/with-private-tmpdir.sh swift build --build-tests
#   scripts/with-private-tmpdir.sh --fail-on-leftovers swift test --skip-build --no-parallel
#
# Why: the Swift 6.3 toolchain's driver leaves a `TemporaryDirectory.XXXXXX` (with a `.keep-directory`
# file, and filelists such as `supplementaryOutputs-1`) in $TMPDIR every time it runs and never removes
# it — five or six per `swift build` / `swift test` even with nothing to build, one more per compile job,
# 9,000+ in /tmp after a day of builds (swiftlang/swift-driver#1720, #1613, #2049; the tests leave none,
# scripts/clean-tmp.sh says how that was measured and removes what builds run by hand left). The Makefile runs builds and test runs through this script so
# they leave nothing behind; whatever the tests and their child processes put in $TMPDIR goes with it too.
#
# --fail-on-leftovers: before removing the directory, list what the command left in it besides the
# toolchain's own files (the driver's TemporaryDirectory.* holding only its bookkeeping, SwiftPM's empty
# `*.lock` files) and fail (exit 3) if there is anything: a test that leaves files behind fills /tmp on
# every machine that runs `swift test` by hand, where no private TMPDIR cleans up after it.
set -uo pipefail
check=0
if [ "${1:-}" = "--fail-on-leftovers" ]; then
    check=1
    shift
fi
private=$(mktemp -d "${TMPDIR:-/tmp}/tandem-tmp.XXXXXX") || exit 1
trap 'rm -rf "$private"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TMPDIR=$private "$@"
status=$?
if [ "$check" -eq 1 ]; then
    leftovers=()
    while IFS= read -r -d '' entry; do
        name=${entry##*/}
        case "$name" in
        TemporaryDirectory.*)
            # The driver's: nothing but its marker, filelists and SwiftPM's manifest scratch files.
            if ! find "$entry" -mindepth 1 ! -name .keep-directory ! -name 'supplementaryOutputs-*' \
                ! -name manifest.swift ! -name vfs.yaml -print -quit | grep -q .; then
                continue
            fi
            ;;
        *.lock)
            [ -f "$entry" ] && [ ! -s "$entry" ] && continue
            ;;
        esac
        leftovers+=("$name")
    done < <(find "$private" -mindepth 1 -maxdepth 1 -print0)
    if [ ${#leftovers[@]} -gt 0 ]; then
        echo "with-private-tmpdir: '$*' left ${#leftovers[@]} entr$([ ${#leftovers[@]} -eq 1 ] && echo y || echo ies) in TMPDIR:" >&2
        for name in "${leftovers[@]:0:20}"; do
            echo "  $name: $(find "$private/$name" -mindepth 1 -maxdepth 2 -printf '%P ' 2>/dev/null | cut -c1-200)" >&2
        done
        [ "$status" -ne 0 ] || status=3
    fi
fi
exit "$status"
