#!/usr/bin/env bash
# Runs a command with TMPDIR set to a new directory of its own, removed when the command ends (also on
# failure or Ctrl-C); the command's exit status is kept.
#
#   scripts/with-private-tmpdir.sh swift build --build-tests
#
# Why: the Swift 6.3 toolchain's driver leaves a `TemporaryDirectory.XXXXXX` (with a `.keep-directory`
# file, and filelists such as `supplementaryOutputs-1`) in $TMPDIR every time it runs and never removes
# it — five or six per `swift build` / `swift test` even with nothing to build, one more per compile job,
# 9,000+ in /tmp after a day of builds (swiftlang/swift-driver#1720, #1613, #2049; the tests leave none,
# scripts/clean-tmp.sh says how that was measured and removes what builds run by hand left). The Makefile runs builds and test runs through this script so
# they leave nothing behind; whatever the tests and their child processes put in $TMPDIR goes with it too.
set -uo pipefail
private=$(mktemp -d "${TMPDIR:-/tmp}/tandem-tmp.XXXXXX") || exit 1
trap 'rm -rf "$private"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TMPDIR=$private "$@"
