"""Fixtures for the ops checks: a real Redis, three real Tandem nodes, a real Prometheus and generated load.

Everything is torn down by the fixture's ExitStack, also when start-up or a test fails; the logs of every
process, the generated Prometheus config and the load generator's counters stay in test-artifacts/prometheus/.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import LoadThread  # noqa: E402
from ops_prober import OpsProber, ProbeTarget  # noqa: E402
from tandem_stack import (  # noqa: E402
    ARTIFACTS_DIR, Prometheus, TandemNode, find_tandem_binary, start_prometheus, start_redis, start_tandem,
    wait_for,
)

# Node settings that make every metric move within seconds. n1 has a storm threshold of 1 reconnect/s (the
# load's churner does ~4/s there) and a 1 MB outbound limit (the flooder gets closed as a slow consumer);
# n2 keeps the defaults for both. Both allow 4 connections per user (the greedy user asks for 5).
# n3 is the hostile clients' node (loadgen.py `hostile_url`), with bounds tight enough that a handful of
# sockets reaches each of them: idle sockets time out after 1 s and a burst of 24 passes the 16 pending
# handshakes, a client in 3 docs is full, 2 requests may wait for a join, and a client that stops reading
# misses two pings within about 2 s.
NODE_ARGS = {
    "n1": ["--tick-ms", "50", "--presence-ttl-ms", "2000", "--storm-threshold", "1",
           "--max-outbound-bytes", "1000000", "--max-connections-per-user", "4"],
    "n2": ["--tick-ms", "50", "--presence-ttl-ms", "2000", "--max-connections-per-user", "4"],
    "n3": ["--tick-ms", "50", "--presence-ttl-ms", "2000", "--handshake-timeout-ms", "1000",
           "--max-pending-handshakes", "16", "--max-docs-per-connection", "3", "--max-pending-requests", "2",
           "--ping-interval-ms", "1000"],
}
HOSTILE_NODE = "n3"
PER_USER_LIMIT = 4
# n2 guards its document API with an ops token (from a file, as an operator would give it): Prometheus,
# health checks and the status page must not notice.
OPS_TOKEN = "tests-ops-token-0123456789abcdef"
TOKEN_NODE = "n2"
LOAD_MAX_SECONDS = 150  # the load stops by itself after this even if teardown never runs


@dataclass
class Stack:
    redis_port: int
    nodes: dict[str, TandemNode]
    prometheus: Prometheus
    load: LoadThread
    started: float
    prober: OpsProber

    def node_for_instance(self, instance: str) -> str:
        for name, node in self.nodes.items():
            if node.target == instance:
                return name
        raise KeyError(instance)

    def instance(self, name: str) -> str:
        return self.nodes[name].target


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    if ARTIFACTS_DIR.exists():
        shutil.rmtree(ARTIFACTS_DIR)
    ARTIFACTS_DIR.mkdir(parents=True)
    return ARTIFACTS_DIR


def _dump(prom: Prometheus, artifacts: Path) -> None:
    """Prometheus' view of targets, rules and alerts, for debugging a failed run."""
    for name in ("targets", "rules", "alerts"):
        try:
            body = requests.get(f"{prom.url}/api/v1/{name}", timeout=5).json()
            (artifacts / f"prometheus-{name}.json").write_text(json.dumps(body, indent=2))
        except Exception as error:  # noqa: BLE001 - best effort
            (artifacts / f"prometheus-{name}.json").write_text(json.dumps({"dump_error": repr(error)}))


@pytest.fixture(scope="session")
def stack(artifacts_dir: Path):
    binary = find_tandem_binary()
    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tandem-ops-")))
        summary: dict = {"binary": str(binary), "node_args": NODE_ARGS}
        cleanup.callback(lambda: (artifacts_dir / "summary.json").write_text(json.dumps(summary, indent=2)))

        redis, redis_port = start_redis(artifacts_dir)
        cleanup.callback(lambda: summary.__setitem__("redis_exit", redis.stop()))

        token_file = work / "ops-token"
        token_file.write_text(OPS_TOKEN + "\n")
        nodes: dict[str, TandemNode] = {}
        for name, args in NODE_ARGS.items():
            if name == TOKEN_NODE:
                args = [*args, "--ops-token-file", str(token_file)]
            node = start_tandem(binary, name, redis_port, artifacts_dir, args)
            nodes[name] = node
            # Stopped with SIGTERM; the exit code (0 = graceful) is kept in summary.json.
            cleanup.callback(lambda n=node: summary.setdefault("node_exit", {}).__setitem__(n.name, n.process.stop()))
        summary["nodes"] = {n: {"ws": node.ws_url, "ops": node.ops_url} for n, node in nodes.items()}

        prom = start_prometheus(list(nodes.values()), work, artifacts_dir)
        cleanup.callback(lambda: summary.__setitem__("prometheus_exit", prom.process.stop()))
        cleanup.callback(_dump, prom, artifacts_dir)
        summary["prometheus"] = prom.url

        load = LoadThread([nodes["n1"].ws_url, nodes["n2"].ws_url], max_seconds=LOAD_MAX_SECONDS,
                          per_user_limit=PER_USER_LIMIT, hostile_url=nodes[HOSTILE_NODE].ws_url).start()

        def stop_load() -> None:
            load.stop()
            summary["load"] = load.stats.snapshot()
            summary["load_thread_error"] = repr(load.error) if load.error else None
            (artifacts_dir / "load-stats.json").write_text(json.dumps(load.stats.snapshot(), indent=2))

        cleanup.callback(stop_load)  # runs first: clients leave before the nodes stop

        prober = OpsProber([ProbeTarget(name, node.ops_url, OPS_TOKEN if name == TOKEN_NODE else None)
                            for name, node in nodes.items()], max_seconds=LOAD_MAX_SECONDS).start()

        def stop_prober() -> None:
            prober.stop()
            summary["ops_prober"] = prober.stats.snapshot()

        cleanup.callback(stop_prober)

        yield Stack(redis_port, nodes, prom, load, time.monotonic(), prober)


@pytest.fixture(scope="session")
def scraped_stack(stack: Stack) -> Stack:
    """The stack once Prometheus has scraped every node successfully."""

    def all_up():
        for node in stack.nodes.values():
            node.process.assert_alive()
        targets = stack.prometheus.api("targets")["activeTargets"]
        healthy = {t["labels"]["instance"] for t in targets if t["health"] == "up" and t["labels"]["job"] == "tandem"}
        return healthy >= {n.target for n in stack.nodes.values()}

    wait_for("Prometheus to scrape every Tandem node (/api/v1/targets health=up)", all_up, timeout=30)
    # rate() needs two samples inside its window: wait until both nodes have a few scrapes.
    wait_for("three scrapes of each node",
             lambda: len(stack.prometheus.query('count_over_time(up{job="tandem"}[1m]) >= 3')) == len(stack.nodes),
             timeout=30)
    return stack
