# Tandem — the two commands a fresh Debian 12 machine needs are `make run` and `make test`.
# Both install missing Debian packages first (apt-get update once, then apt-get install).

SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3

# Build and run: the C libraries Tandem links (jemalloc: the release node's allocator) and the redis-server it embeds.
RUN_PACKAGES := pkg-config libhiredis-dev libmicrohttpd-dev libbz2-dev libjemalloc-dev redis-server
# Tests also drive a real Prometheus (promtool), a real headless Chromium and, for the Yjs interop
# tests (Tests/yjs), the real Yjs, lib0 and y-protocols on node.
TEST_PACKAGES := $(RUN_PACKAGES) prometheus chromium chromium-driver nodejs node-yjs node-y-protocols

TANDEM_ARGS ?=
# Builds and test runs get a TMPDIR of their own, removed when they end: the Swift driver leaves a
# TemporaryDirectory.* in $TMPDIR for every compile job (see the script), and the tests' files go with it.
# `make test` fails if the Swift tests left anything there but the toolchain's own files (--fail-on-leftovers).
PRIVATE_TMP := scripts/with-private-tmpdir.sh

.PHONY: run test test-ops test-tls test-sanitizers build release bench fuzz fuzz-short deps deps-test venv clean clean-tmp

# `make run` is the one-command demo: development mode (no JWT secret), so Tandem listens on 127.0.0.1
# only. For a reachable node give it a secret: make run TANDEM_ARGS="--jwt-secret-file secret.txt".
run: deps release
	.build/release/tandem serve $(TANDEM_ARGS)

release: deps
	$(PRIVATE_TMP) $(SWIFT) build -c release --product tandem
	$(PRIVATE_TMP) $(SWIFT) build -c release --product tandem-bench

build: deps
	$(PRIVATE_TMP) $(SWIFT) build

test: deps-test venv
	$(PRIVATE_TMP) $(SWIFT) build --build-tests
	$(PRIVATE_TMP) --fail-on-leftovers $(SWIFT) test --skip-build --no-parallel
	$(PRIVATE_TMP) .venv/bin/python -m pytest -q Tests/yjs
	$(MAKE) test-ops
	$(MAKE) fuzz-short

# The ops-plane checks: a real Prometheus scraping two nodes (Tests/ops) and a real headless Chromium
# on the status page and the browser client (Tests/browser).
test-ops: deps-test venv
	$(PRIVATE_TMP) $(SWIFT) build --product tandem
	$(PRIVATE_TMP) .venv/bin/python -m pytest -q Tests/ops
	$(PRIVATE_TMP) .venv/bin/python -m pytest -q Tests/browser

# wss:// in TandemClient and TandemKit (the package's TLS trait, off by default because swift-nio-ssl
# compiles BoringSSL): built in its own scratch path (.build-tls) so the normal build stays valid, then the
# TLS tests (a TLS-terminating proxy with certificates made by openssl, a real node on a real Redis).
test-tls: deps-test
	$(PRIVATE_TMP) $(SWIFT) build --build-tests --traits TLS --scratch-path .build-tls
	$(PRIVATE_TMP) $(SWIFT) test --skip-build --no-parallel --traits TLS --scratch-path .build-tls \
		--filter 'TandemKitTLSTests|WebSocketURLTests|WebSocketClientTests|CloseRightAfterUpgradeTests|URLCheckTests'

# Benchmarks (docs/benchmarks.md): `make bench`, or one scenario with `make bench SCENARIO=presence`
# (presence | sync | sync-large | storm).
SCENARIO ?=
bench: release
	scripts/bench.sh $(SCENARIO)

# Fuzzing (Fuzz/README.md): every libFuzzer harness for FUZZ_SECONDS (default 600 each), then the network
# fuzzer (`tandem-bench fuzz`: two release nodes on one Redis, hostile clients) for as long. Fails on any
# crash or failed assertion; artifacts in test-artifacts/fuzz/. `make fuzz FUZZ_SECONDS=60` for a taste.
FUZZ_SECONDS ?= 600
FUZZ_CLIENTS ?= 10
fuzz: deps release
	Fuzz/run.sh $(FUZZ_SECONDS)
	.build/release/tandem-bench fuzz --tandem .build/release/tandem --duration $(FUZZ_SECONDS) --clients $(FUZZ_CLIENTS)

# The short pass `make test` runs (about 3 minutes once built): 18 s per harness, two harnesses at a time
# (one per core: 7 rounds instead of 13, each harness still gets its 18 s), then 60 s of network fuzzing
# against the debug build the tests just made.
FUZZ_SHORT_SECONDS ?= 18
FUZZ_SHORT_JOBS ?= 2
FUZZ_SHORT_NETWORK_SECONDS ?= 60
fuzz-short: deps
	FUZZ_JOBS=$(FUZZ_SHORT_JOBS) Fuzz/run.sh $(FUZZ_SHORT_SECONDS)
	$(PRIVATE_TMP) $(SWIFT) build
	$(PRIVATE_TMP) .build/debug/tandem-bench fuzz --tandem .build/debug/tandem --duration $(FUZZ_SHORT_NETWORK_SECONDS) --clients $(FUZZ_CLIENTS)

# The Swift test suite under ThreadSanitizer, then AddressSanitizer (docs/security.md), each built in its
# own scratch path (.build-tsan, .build-asan) so the normal build stays valid; the `tandem` nodes the tests
# start are sanitized too. Fails on any sanitizer report or failing test; reports in
# test-artifacts/sanitizers/. The first build of each takes 10-20 minutes on two cores.
# One sanitizer: `make test-sanitizers SANITIZERS=thread`; some suites: SANITIZER_FILTER=SyncGapTests.
SANITIZERS ?= thread address
test-sanitizers: deps-test venv
	SWIFT="$(SWIFT)" SANITIZER_FILTER="$(SANITIZER_FILTER)" scripts/test-sanitizers.sh $(SANITIZERS)

deps:
	@scripts/install-packages.sh $(RUN_PACKAGES)

deps-test:
	@scripts/install-packages.sh $(TEST_PACKAGES)

venv: .venv/.installed

.venv/.installed: Tests/ops/requirements.txt Tests/browser/requirements.txt Tests/yjs/requirements.txt
	$(PYTHON) -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check -r Tests/ops/requirements.txt -r Tests/browser/requirements.txt -r Tests/yjs/requirements.txt
	touch $@

clean:
	rm -rf .build .build-fuzz .build-tsan .build-asan .venv test-artifacts

# What `swift build` / `swift test` run by hand leave in $TMPDIR (the driver's TemporaryDirectory.*, over an hour old).
clean-tmp:
	scripts/clean-tmp.sh
