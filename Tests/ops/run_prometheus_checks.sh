#!/usr/bin/env bash
# Runs the Grafana/Prometheus checks (Tests/ops): promtool on Grafana/alerts.yml and a real Prometheus
# scraping two real Tandem nodes under generated load. See Tests/ops/README.md.
#
#   Tests/ops/run_prometheus_checks.sh [pytest args...]
#
# Environment:
#   TANDEM_BIN          tandem binary to test (default: build .build/debug/tandem with `swift build`)
#   TANDEM_SKIP_BUILD=1 do not run `swift build --product tandem` first
#   PYTHON              interpreter used to create .venv (default: python3)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

for tool in redis-server prometheus promtool; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is not installed (Debian: apt-get install -y redis-server prometheus)" >&2
        exit 2
    fi
done

if [[ ! -x .venv/bin/python ]]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r Tests/ops/requirements.txt

if [[ -z "${TANDEM_BIN:-}" && "${TANDEM_SKIP_BUILD:-0}" != 1 ]]; then
    swift build --product tandem
fi

exec .venv/bin/python -m pytest Tests/ops "$@"
