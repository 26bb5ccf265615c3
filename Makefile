# Tandem — the two commands a fresh Debian 12 machine needs are `make run` and `make test`.
# Both install missing Debian packages first (apt-get update once, then apt-get install).

SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3

# Build and run: the C libraries Tandem links and the redis-server it embeds.
RUN_PACKAGES := pkg-config libhiredis-dev libmicrohttpd-dev redis-server
# Tests also drive a real Prometheus (promtool), a real headless Chromium and, for the Yjs interop
# tests (Tests/yjs), the real Yjs, lib0 and y-protocols on node.
TEST_PACKAGES := $(RUN_PACKAGES) prometheus chromium chromium-driver nodejs node-yjs node-y-protocols

TANDEM_ARGS ?=

.PHONY: run test test-ops build release bench deps deps-test venv clean

# `make run` is the one-command demo: development mode (no JWT secret), so Tandem listens on 127.0.0.1
# only. For a reachable node give it a secret: make run TANDEM_ARGS="--jwt-secret-file secret.txt".
run: deps release
	.build/release/tandem serve $(TANDEM_ARGS)

release: deps
	$(SWIFT) build -c release --product tandem
	$(SWIFT) build -c release --product tandem-bench

build: deps
	$(SWIFT) build

test: deps-test venv
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel
	$(MAKE) test-ops

# The ops-plane checks: a real Prometheus scraping two nodes (Tests/ops) and a real headless Chromium
# on the status page and the browser client (Tests/browser).
test-ops: deps-test venv
	$(SWIFT) build --product tandem
	.venv/bin/python -m pytest -q Tests/ops
	.venv/bin/python -m pytest -q Tests/browser

# Benchmarks (docs/benchmarks.md): `make bench`, or one scenario with `make bench SCENARIO=presence`
# (presence | sync | sync-large | storm).
SCENARIO ?=
bench: release
	scripts/bench.sh $(SCENARIO)

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
	rm -rf .build .venv test-artifacts
