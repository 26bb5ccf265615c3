#!/usr/bin/env bash
# Removes the directories the Swift driver leaves in $TMPDIR (default /tmp) and prints how many it removed.
#
#   scripts/clean-tmp.sh            # driver directories older than 60 minutes
#   CLEAN_TMP_MINUTES=0 scripts/clean-tmp.sh
#
# Every run of the Swift driver leaves one `TemporaryDirectory.XXXXXX` (a `.keep-directory` file, and
# `supplementaryOutputs-N` filelists for compile jobs): its ArgsResolver makes it with
# removeTreeOnDeinit: false (swiftlang/swift-driver#1720, #1613, #2049). Measured with a private TMPDIR:
# `swift --version` leaves 1, `swiftc -print-target-info` 2, `swift package describe` 1, a `swift build`
# with nothing to build 6, `swift test --skip-build` 5, and a build one more per compile job. The test
# binary itself leaves none (the whole suite run directly with a private TMPDIR; the tests' own files go
# to one per-process directory removed at exit, see Tests/Support/PackagePaths.swift). `make` runs
# builds and tests through scripts/with-private-tmpdir.sh; this is for `swift build` / `swift test` run
# by hand, which is how the directories reach the thousands.
#
# Only directories older than CLEAN_TMP_MINUTES holding nothing but those driver files are removed, so a
# compile job still running keeps its own and nothing else in $TMPDIR is touched.
set -euo pipefail
dir=${TMPDIR:-/tmp}
minutes=${CLEAN_TMP_MINUTES:-60}
removed=0
while IFS= read -r -d '' candidate; do
    # Anything besides the driver's own files: not ours to remove.
    if find "$candidate" -mindepth 1 ! -name .keep-directory ! -name 'supplementaryOutputs-*' -print -quit | grep -q .; then
        continue
    fi
    rm -rf -- "$candidate"
    removed=$((removed + 1))
done < <(find "$dir" -maxdepth 1 -type d -name 'TemporaryDirectory.*' -mmin "+$minutes" -print0)
echo "removed $removed Swift driver directories older than $minutes minutes from $dir"
