"""Checks Grafana/ (dashboard, alerting rules, scrape config) against a real Prometheus scraping three real
Tandem nodes under generated load. See Tests/ops/README.md.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import requests
import yaml

from conftest import HOSTILE_NODE, Stack
from promql_sources import (
    ALERTS, ALERTS_TEST, alert_rules, dashboard_queries, find_query, iter_panels, load_dashboard,
    substitute,
)
from tandem_stack import ARTIFACTS_DIR, GRAFANA_DIR, PromQLError, redis_command, require_tool, wait_for

# How Grafana would fill the variables. $__rate_interval is at least 4 scrape intervals; with the 1 s
# scrapes here 30s and 1m are both realistic. Multi-value variables become (a|b) regexes.
RATE_INTERVALS = ["1m", "30s"]
ALL_NODES = ".*"
KEY_SERIES_TIMEOUT = 60.0  # seconds a key series may take to show data, counted from the first poll
REQUIRED_ROWS = ["Traffic", "Presence", "Sync", "Queues", "Connections & reconnect storms", "Abuse and limits",
                 "Redis", "Redis memory", "Process", "Ops port", "Overload, schemas, Yjs and cluster", "Yjs",
                 "Push admission and group commit", "Redis work, Redis Cluster and cross-node presence", "History",
                 "Push stages, cross-node hop and Yjs relays"]
REQUIRED_ALERTS = ["TandemReconnectStorm", "TandemSyncLagHigh", "TandemConflictRateHigh", "TandemQueueGrowing",
                   "TandemRedisDown", "TandemNodeDown", "TandemFileDescriptorsRunningOut", "TandemHandshakeTimeouts",
                   "TandemPendingHandshakesHigh", "TandemAbuseCloses", "TandemRedisMemoryHigh",
                   "TandemRedisKeysWithoutTTL", "TandemSchemaReloadFailed", "TandemDocDiverged", "TandemRedisLostCommits",
                   "TandemHistorySealLagging", "TandemHistorySealFailing", "TandemRedisShardErrors"]
# Metric families a node makes only when first used, so the single-Redis stack here never exports them.
# They still need a panel (test_every_exported_metric_has_a_panel), and are exempt from "exported by every
# node" (test_every_referenced_metric_is_exported_by_every_node).
LAZY_FAMILIES = {
    # Made per shard the first time a Redis Cluster shard is used (RedisShardMetrics); none on one Redis.
    "tandem_redis_shard_commands_total": "counter",
    "tandem_redis_shard_errors_total": "counter",
    "tandem_redis_shard_redirections_total": "counter",
}
# Metric families with no dashboard panel, each with the reason. Every other family a node exports must
# be drawn by some dashboard query, so that a new metric cannot ship without one.
NO_PANEL = {
    # A setting, not a measurement (--doc-ttl in seconds): TandemRedisKeysWithoutTTL reads it to stay quiet
    # when docs never expire; the Redis memory row's "keys without a TTL" panel is what to look at.
    "tandem_doc_ttl_seconds",
}


def variables(rate_interval: str = "30s", node: str = ALL_NODES) -> dict[str, str]:
    return {"__rate_interval": rate_interval, "node": node, "datasource": "prometheus"}


def run_tool(*argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=GRAFANA_DIR.parent)
    log = ARTIFACTS_DIR / ("-".join(a.replace("/", "_") for a in argv[1:3]) + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(argv)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


# ====================================================================== static checks (no servers)

def test_promtool_check_rules(artifacts_dir):
    result = run_tool(require_tool("promtool"), "check", "rules", str(ALERTS.relative_to(GRAFANA_DIR.parent)))
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_check_config(artifacts_dir):
    result = run_tool(require_tool("promtool"), "check", "config", "Grafana/prometheus.yml")
    assert result.returncode == 0, f"promtool check config failed:\n{result.stdout}{result.stderr}"


def test_promtool_unit_tests_pass(artifacts_dir):
    result = run_tool(require_tool("promtool"), "test", "rules", str(ALERTS_TEST.relative_to(GRAFANA_DIR.parent)))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def test_every_alert_has_firing_and_quiet_unit_tests():
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule.name for rule in alert_rules()}
    assert set(REQUIRED_ALERTS) <= names, f"alerts.yml lacks {set(REQUIRED_ALERTS) - names}"
    assert names <= firing, f"no firing unit test for {sorted(names - firing)}"
    assert names <= quiet, f"no not-firing unit test for {sorted(names - quiet)}"


def test_alert_rules_have_for_severity_and_annotations():
    for rule in alert_rules():
        r = rule.rule
        assert r.get("for"), f"{rule.name}: no `for`"
        assert r.get("labels", {}).get("severity") in {"critical", "warning", "info"}, f"{rule.name}: severity"
        annotations = r.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), f"{rule.name}: summary/description"


def test_dashboard_structure():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 38
    assert dashboard.get("uid") and dashboard.get("title")
    templating = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = templating["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    node = templating["node"]
    assert node["type"] == "query" and node["multi"] and node["includeAll"]
    node_query = node["query"]["query"] if isinstance(node["query"], dict) else node["query"]
    assert node_query == "label_values(tandem_node_info, node)"
    assert node["datasource"]["uid"] == "${datasource}"

    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == REQUIRED_ROWS, f"rows: {rows}"

    problems = []
    for row, panel in iter_panels(dashboard):
        where = f"{row} / {panel.get('title')}"
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: panel datasource is not ${{datasource}}")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit") and panel["type"] == "timeseries":
            problems.append(f"{where}: no unit")
        if not panel.get("targets"):
            problems.append(f"{where}: no targets")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where} [{target.get('refId')}]: target datasource is not ${{datasource}}")
            expr = target.get("expr", "")
            for window in re.findall(r"\b(?:rate|irate|increase|deriv)\([^\[]*\[([^\]]+)\]", expr):
                if window != "$__rate_interval":
                    problems.append(f"{where}: range [{window}] instead of [$__rate_interval]")
            if "tandem_" in expr and 'up{job="tandem"}' not in expr and '$node' not in expr:
                problems.append(f"{where}: not filtered by $node: {expr}")
    assert not problems, "\n".join(problems)


def test_provisioning_examples_parse():
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/tandem-prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1 and datasources["datasources"][0]["type"] == "prometheus"
    dashboards = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/tandem.yml").read_text())
    assert dashboards["apiVersion"] == 1 and dashboards["providers"][0]["type"] == "file"
    config = yaml.safe_load((GRAFANA_DIR / "prometheus.yml").read_text())
    assert "alerts.yml" in config["rule_files"]
    assert [j for j in config["scrape_configs"] if j["job_name"] == "tandem"]


# ====================================================================== against the live stack

def test_all_nodes_scraped(scraped_stack: Stack):
    prom = scraped_stack.prometheus
    up = {s["metric"]["instance"]: s["value"][1] for s in prom.query('up{job="tandem"}')}
    assert up == {n.target: "1" for n in scraped_stack.nodes.values()}, f"up: {up}"
    nodes = {s["metric"]["node"]: s["metric"]["instance"] for s in prom.query("tandem_node_info")}
    assert nodes == {name: n.target for name, n in scraped_stack.nodes.items()}, f"tandem_node_info: {nodes}"
    # What Grafana runs for the node variable's label_values(tandem_node_info, node).
    values = prom.api("label/node/values", **{"match[]": "tandem_node_info"})
    assert sorted(values) == sorted(scraped_stack.nodes), f"node variable values: {values}"


def test_rules_loaded_and_evaluating(scraped_stack: Stack):
    prom = scraped_stack.prometheus

    def evaluated():
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_for("Prometheus to evaluate the alerting rules", evaluated, timeout=20)
    assert sorted({r["name"] for r in rules}) == sorted({r.name for r in alert_rules()})
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    assert not broken, "rules failing in Prometheus:\n" + "\n".join(broken)


def test_every_dashboard_query_evaluates(scraped_stack: Stack):
    prom = scraped_stack.prometheus
    node_values = [ALL_NODES, "n1", "(n1|n2)"]
    failures, report = [], []
    for query in dashboard_queries():
        for interval in RATE_INTERVALS:
            for node in node_values:
                expr = substitute(query.expr, variables(interval, node))
                try:
                    result = prom.query(expr)
                    report.append({"query": query.name, "expr": expr, "series": len(result),
                                   "sample": [{"metric": r["metric"], "value": r["value"][1]} for r in result[:6]]})
                except PromQLError as error:
                    failures.append(f"{query.name} ($__rate_interval={interval}, $node={node}): {error}")
    (ARTIFACTS_DIR / "dashboard-queries.json").write_text(json.dumps(report, indent=2))
    assert report, "the dashboard has no queries"
    assert not failures, "\n\n".join(failures)


def test_every_alert_expression_evaluates(scraped_stack: Stack):
    failures = []
    for rule in alert_rules():
        try:
            scraped_stack.prometheus.query(rule.expr)
        except PromQLError as error:
            failures.append(f"{rule.name}: {error}")
    assert not failures, "\n\n".join(failures)


_METRIC_NAME = re.compile(r"\b((?:tandem|process)_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b((?:tandem|process)_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _shipped_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard target and alerting rule, unsubstituted."""
    return ([(f"dashboard {q.name}", q.expr) for q in dashboard_queries()]
            + [(f"alert {r.name}", r.expr) for r in alert_rules()])


def test_every_referenced_metric_is_exported_by_every_node(scraped_stack: Stack):
    """A panel or alert on a misspelt or removed metric evaluates fine and shows nothing, forever: every
    metric name in the dashboard and the rules must be scraped from every node (all are created at start)."""
    prom = scraped_stack.prometheus
    where: dict[str, list[str]] = {}
    for place, expr in _shipped_expressions():
        for name in _METRIC_NAME.findall(expr):
            where.setdefault(name, []).append(place)
    assert "tandem_handshakes_pending" in where and "process_open_fds" in where
    instances = {node.target for node in scraped_stack.nodes.values()}
    missing = []
    for name, places in sorted(where.items()):
        if name in LAZY_FAMILIES:
            continue  # only exported once used (a Redis Cluster shard): not on this stack's single Redis
        exported = {s["metric"]["instance"] for s in prom.query(f'count by (instance) ({{__name__="{name}"}})')}
        if exported != instances:
            missing.append(f"{name}: exported by {sorted(exported)}, not {sorted(instances - exported)}; "
                           f"used by {places[0]}" + (f" and {len(places) - 1} more" if len(places) > 1 else ""))
    assert not missing, "metrics the dashboard or the rules use but a node does not export:\n" + "\n".join(missing)


_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
_SERIES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def _exported_families(stack: Stack, node: str = "n1") -> dict[str, str]:
    """{family: type} from the `# TYPE` lines of one node's /metrics, as Prometheus scrapes it."""
    response = requests.get(stack.nodes[node].ops_url + "/metrics", timeout=10)
    response.raise_for_status()
    return dict(_TYPE_LINE.findall(response.text))


def test_every_exported_metric_has_a_panel(scraped_stack: Stack):
    """A metric without a panel is invisible to whoever runs Tandem: every family a node exports (and each one
    it makes only when first used, LAZY_FAMILIES) must be drawn by some dashboard query, or be listed with its
    reason in NO_PANEL."""
    exported = _exported_families(scraped_stack)
    assert "tandem_connections" in exported and "process_open_fds" in exported, sorted(exported)
    lazy_exported = sorted(set(LAZY_FAMILIES) & set(exported))
    assert not lazy_exported, f"LAZY_FAMILIES are exported by a node on one Redis, so they are not lazy: {lazy_exported}"
    drawn = {name for q in dashboard_queries() for name in _METRIC_NAME.findall(q.expr)}
    families = {**exported, **LAZY_FAMILIES}

    def has_panel(family: str, kind: str) -> bool:
        return bool({family, *(family + suffix for suffix in _SERIES_SUFFIXES.get(kind, ()))} & drawn)

    missing = sorted(f"{family} ({kind})" for family, kind in families.items()
                     if family not in NO_PANEL and not has_panel(family, kind))
    assert not missing, ("metric families with no dashboard panel (add one to Grafana/tandem-dashboard.json, or "
                         "list the family in NO_PANEL with the reason):\n" + "\n".join(missing))
    stale = sorted(name for name in NO_PANEL if name not in families or has_panel(name, families[name]))
    assert not stale, f"NO_PANEL entries that are not exported or do have a panel now: {stale}"


def test_every_literal_label_value_exists(scraped_stack: Stack):
    """The same for label values in selectors (`reason="abuse"`, `queue=~"early_requests|pending_joins"`): a
    typo there filters everything out. Every labelled series is created at start, so each value must exist."""
    prom = scraped_stack.prometheus
    problems, checked = [], 0
    for place, expr in _shipped_expressions():
        for metric, matchers in _SELECTOR.findall(expr):
            for label, _op, value in _MATCHER.findall(matchers):
                if "$" in value or not re.fullmatch(r"[\w|]+", value):
                    continue  # a Grafana variable or a real regex: not a list of values
                known = set(prom.api(f"label/{label}/values", **{"match[]": metric}))
                checked += 1
                for wanted in value.split("|"):
                    if wanted not in known:
                        problems.append(f"{place}: {metric}{{{label}}} has no value {wanted!r} (has {sorted(known)})")
    assert checked >= 10, f"only {checked} label matchers found: the parser is broken"
    assert not problems, "\n".join(problems)


def test_node_variable_filters_by_node(scraped_stack: Stack):
    prom = scraped_stack.prometheus
    query = find_query("Connections by node")
    seen_all = wait_for(
        "both nodes in the all-nodes result",
        lambda: {s["metric"].get("node") for s in prom.query(substitute(query.expr, variables()))} >= {"n1", "n2"},
        timeout=20)
    assert seen_all
    for name in scraped_stack.nodes:
        result = prom.query(substitute(query.expr, variables(node=name)))
        assert {s["metric"].get("node") for s in result} == {name}, f"$node={name} gave {result}"
    # A multi-value selection, formatted as Grafana does for Prometheus.
    result = prom.query(substitute(query.expr, variables(node="(n2)")))
    assert {s["metric"].get("node") for s in result} == {"n2"}


# ---------------------------------------------------------------------- key series have data

@dataclass(frozen=True)
class KeySeries:
    """A dashboard query (panel title + refId) that the load must light up, and what counts as lit."""

    id: str
    panel: str
    ref_id: str
    want: str  # human description for the failure message
    ok: Callable[[list[dict]], bool]
    sync: bool = False


def _value(sample: dict) -> float:
    return float(sample["value"][1])


def positive(label: Optional[str] = None, *values: str) -> Callable[[list[dict]], bool]:
    """Some series (or, per listed label value, each of them) has a finite value > 0."""

    def check(result: list[dict]) -> bool:
        good = [s for s in result if math.isfinite(_value(s)) and _value(s) > 0]
        if label is None:
            return bool(good)
        return set(values) <= {s["metric"].get(label) for s in good}

    return check


def finite(result: list[dict]) -> bool:
    return any(math.isfinite(_value(s)) for s in result)


def equals(label: str, value: str, want: float) -> Callable[[list[dict]], bool]:
    return lambda result: any(s["metric"].get(label) == value and _value(s) == want for s in result)


def positive_each(label: str, values: tuple[str, ...], **where: str) -> Callable[[list[dict]], bool]:
    """For each of `values` of `label`, a series with the `where` labels too (e.g. node="n3") is > 0."""

    def check(result: list[dict]) -> bool:
        good = {s["metric"].get(label) for s in result
                if all(s["metric"].get(k) == v for k, v in where.items())
                and math.isfinite(_value(s)) and _value(s) > 0}
        return set(values) <= good

    return check


def present(label: str, *values: str) -> Callable[[list[dict]], bool]:
    """A finite series (0 is fine) for each listed value of `label`: for gauges that are only briefly
    above 0, such as requests waiting for a join."""
    return lambda result: set(values) <= {s["metric"].get(label) for s in result if math.isfinite(_value(s))}


def between(low: float, high: float, label: str, *values: str) -> Callable[[list[dict]], bool]:
    """For each listed value of `label`, a series strictly between `low` and `high`."""
    return lambda result: set(values) <= {s["metric"].get(label) for s in result if low < _value(s) < high}


H = HOSTILE_NODE
ALL = ("n1", "n2", H)


KEY_SERIES = [
    KeySeries("presence-updates", "Presence updates /s by result", "A", "accepted, rate_limited and not_joined > 0",
              positive("result", "accepted", "rate_limited", "not_joined")),
    KeySeries("presence-fanout", "Presence fan-out messages /s", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("presence-sessions", "Presence sessions", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("presence-members", "Presence members by mode", "A", "full, hidden and none > 0",
              positive("mode", "full", "hidden", "none")),
    KeySeries("presence-expired", "Presence expired /s", "A", "> 0", positive()),
    KeySeries("presence-tick", "Presence tick duration", "B", "p95 finite and > 0", positive()),
    KeySeries("reconnects", "Reconnects /s", "A", "> 0 on n1", positive("node", "n1")),
    KeySeries("storm", "Reconnect storm", "A", "n1 in a storm (1)", equals("node", "n1", 1.0)),
    KeySeries("closed-by-reason", "Connections closed /s by reason", "A",
              "abrupt, client_close, resumed, unsupported_data and slow_consumer > 0",
              positive("reason", "abrupt", "client_close", "resumed", "unsupported_data", "slow_consumer")),
    KeySeries("admission", "Admission rejections /s by reason", "A", "user_full > 0", positive("reason", "user_full")),
    KeySeries("protocol-errors", "Protocol errors /s by code", "A", "bad_message and unknown_type > 0",
              positive("code", "bad_message", "unknown_type")),
    KeySeries("queue-outbound", "Outbound queue (bytes to clients)", "A", "> 0 bytes on n2 (paused reader)",
              positive("node", "n2")),
    KeySeries("queue-redis-push", "Redis & push queues", "A", "series present (depth may be 0)", finite),
    KeySeries("slow-consumer-closed", "Slow consumers /s", "A", "> 0 on n1 (the flooder closed as a slow consumer)",
              positive("node", "n1")),
    KeySeries("slow-consumer-coalesced", "Slow consumers /s", "B", "> 0 (deltas coalesced)", positive()),
    KeySeries("redis-up", "Redis up", "A", "1 on n1", equals("node", "n1", 1.0)),
    KeySeries("redis-latency", "Redis command latency", "C", "p99 finite and > 0", positive()),
    # Abuse and limits: the hostile clients of loadgen.py on n3 (tight bounds, see conftest.NODE_ARGS).
    KeySeries("handshakes-pending", "Sockets mid-handshake", "A", "> 0 on n3 (idle sockets)", positive("node", H)),
    KeySeries("handshake-timeouts", "Handshake timeouts /s", "A", "> 0 on n3 (idle sockets)", positive("node", H)),
    KeySeries("admission-hostile", "Admission refusals /s by node and reason", "A",
              "pending_full (bursts of idle sockets displace older ones) and origin > 0 on n3",
              positive_each("reason", ("pending_full", "origin"), node=H)),
    KeySeries("limit-rejections", "Limit rejections /s by reason", "A",
              "docs_per_connection, join_rate, doc_join_rate and pending_requests > 0 on n3",
              positive_each("reason", ("docs_per_connection", "join_rate", "doc_join_rate", "pending_requests"),
                            node=H)),
    KeySeries("protocol-errors-by-node", "Protocol errors /s by node and code", "A",
              "bad_message, too_many_docs, rate_limited and unavailable > 0 on n3",
              positive_each("code", ("bad_message", "too_many_docs", "rate_limited", "unavailable"), node=H)),
    KeySeries("misbehaving-closes", "Connections closed /s: misbehaving clients", "A",
              "abuse, protocol_error and ping_timeout > 0 on n3",
              positive_each("reason", ("abuse", "protocol_error", "ping_timeout"), node=H)),
    KeySeries("misbehaving-closes-slow", "Connections closed /s: misbehaving clients", "A",
              "slow_consumer > 0 on n1 (the flooder)", positive_each("reason", ("slow_consumer",), node="n1")),
    KeySeries("other-closes", "Connections closed /s: misbehaving clients", "B", "> 0 on n1 (the churner)",
              positive("node", "n1")),
    KeySeries("pongs-coalesced", "Pongs coalesced & catch-ups replaced /s", "A", "> 0 on n3 (ping bursts)",
              positive("node", H)),
    KeySeries("catchups-replaced", "Pongs coalesced & catch-ups replaced /s", "B",
              "> 0 on n3 (the stalled re-joiner)", positive("node", H)),
    KeySeries("waiting-for-join", "Requests & joins waiting for a doc", "A",
              "early_requests and pending_joins series present (above 0 only while a join loads)",
              present("queue", "early_requests", "pending_joins")),
    # Redis memory: INFO of the test Redis (maxmemory 256mb, tandem_stack.REDIS_MAXMEMORY), every 5 s.
    KeySeries("redis-memory-used", "Redis memory used vs maxmemory", "A", "> 0 on every node",
              positive("node", *ALL)),
    KeySeries("redis-memory-max", "Redis memory used vs maxmemory", "B", "256 MiB on every node",
              lambda r: {s["metric"].get("node") for s in r if _value(s) == 256 * 1024 * 1024} >= set(ALL)),
    KeySeries("redis-memory-ratio", "Redis memory / maxmemory", "A", "between 0 and 1 on every node",
              between(0, 1, "node", *ALL)),
    KeySeries("redis-keys", "Redis keys", "A", "> 0 on every node", positive("node", *ALL)),
    KeySeries("redis-keys-without-ttl", "Redis keys without a TTL", "A", "series present on every node",
              present("node", *ALL)),
    # Standard process metrics, read from /proc by each node at scrape time.
    KeySeries("process-open-fds", "Open file descriptors", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("process-max-fds", "Open file descriptors", "B", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("process-fd-usage", "File descriptor usage", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("process-rss", "Resident memory", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("process-cpu", "CPU", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("process-virtual", "Virtual memory", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    KeySeries("process-uptime", "Uptime", "A", "> 0 on n1 and n2", positive("node", "n1", "n2")),
    # The ops port, driven by ops_prober.py (and by Prometheus itself).
    KeySeries("ops-connections", "Ops connections", "A", "> 0 on n1 and n2 (the scrape itself)",
              positive("node", "n1", "n2")),
    KeySeries("ops-rejected", "Ops requests rejected /s by reason", "A",
              "host_not_allowed, bad_request and unauthorized > 0",
              positive("reason", "host_not_allowed", "bad_request", "unauthorized")),
    KeySeries("ops-duration", "Ops request duration p99 by route", "A", "metrics, health, status and docs > 0",
              positive("route", "metrics", "health", "status", "docs")),
    KeySeries("sync-lag-p50", "Sync lag (commit → subscriber socket)", "A", "p50 finite and > 0", positive(), sync=True),
    KeySeries("sync-lag-p95", "Sync lag (commit → subscriber socket)", "B", "p95 finite and > 0", positive(), sync=True),
    KeySeries("sync-lag-p99", "Sync lag (commit → subscriber socket)", "C", "p99 finite and > 0", positive(), sync=True),
    KeySeries("conflict-rate", "Conflict rate", "A", "finite and > 0", positive(), sync=True),
    KeySeries("push-outcomes", "Push outcomes /s by action", "A", "commit > 0", positive("action", "commit"), sync=True),
    KeySeries("push-conflict-outcomes", "Push outcomes /s by action", "A", "rebase or discard > 0",
              lambda r: positive("action", "rebase")(r) or positive("action", "discard")(r), sync=True),
    KeySeries("push-latency", "Push latency (admission → result)", "B", "p95 finite and > 0", positive(), sync=True),
    KeySeries("ack-lag", "Client ack lag (clocks)", "C", "p99 > 0 (the lazy subscriber acks behind)", positive(),
              sync=True),
    KeySeries("concurrent-pushes", "Concurrent pushes & conflicts /s", "A", "> 0", positive(), sync=True),
    KeySeries("push-read-delay", "Push read delay (read → doc admission) by node", "B", "p99 > 0",
              positive(), sync=True),
    KeySeries("group-commits", "Group commits, pipelined batches, breaks & lost races /s", "A", "> 0",
              positive(), sync=True),
    KeySeries("batch-size", "Commits per group commit", "C", "mean >= 1",
              lambda r: any(_value(s) >= 1 for s in r), sync=True),
    KeySeries("redis-server-commands", "Redis server commands /s & commands per commit", "A",
              "> 0 on every node (INFO every 5 s)", positive("node", *ALL)),
    KeySeries("history-seal-lag", "History seal lag by node", "A", "series present on every node",
              present("node", *ALL)),
]


def _check_key_series(stack: Stack, key: KeySeries) -> None:
    query = find_query(key.panel, key.ref_id)
    expr = substitute(query.expr, variables("30s"))
    last: list[dict] = []

    def lit() -> bool:
        nonlocal last
        for node in stack.nodes.values():
            node.process.assert_alive()
        last = stack.prometheus.query(expr)
        return bool(last) and key.ok(last)

    try:
        wait_for(key.id, lit, timeout=KEY_SERIES_TIMEOUT, interval=1.0)
    except AssertionError as error:
        shown = [{"metric": s["metric"], "value": s["value"][1]} for s in last]
        pytest.fail(f"key series {key.id!r} has no data as wanted ({key.want}).\n"
                    f"  panel: {query.name}\n  expr: {expr}\n  last result: {json.dumps(shown)}\n"
                    f"  load: {json.dumps(stack.load.stats.snapshot()['counts'])}\n  ({error})")


@pytest.mark.parametrize("key", [k for k in KEY_SERIES if not k.sync], ids=lambda k: k.id)
def test_key_series_has_data(scraped_stack: Stack, key: KeySeries):
    _check_key_series(scraped_stack, key)


@pytest.fixture(scope="session")
def sync_enabled(scraped_stack: Stack) -> bool:
    """Waits until the load generator knows whether the nodes do document sync."""
    stats = scraped_stack.load.stats
    wait_for("a push to be answered (result, or an `unavailable` error)", lambda: stats.sync_state != "unknown",
             timeout=30)
    return stats.sync_state == "available"


@pytest.mark.parametrize("key", [k for k in KEY_SERIES if k.sync], ids=lambda k: k.id)
def test_sync_key_series_has_data(scraped_stack: Stack, sync_enabled: bool, key: KeySeries):
    if not sync_enabled:
        pytest.skip(f"the nodes refuse pushes ({scraped_stack.load.stats.sync_unavailable_message!r}): "
                    "document sync is not in this build yet")
    _check_key_series(scraped_stack, key)


def test_storm_alert_goes_pending_for_the_storming_node_only(scraped_stack: Stack):
    """End to end through Prometheus' rule evaluation: n1's storm shows in ALERTS, n2 stays quiet."""
    prom = scraped_stack.prometheus
    n1, n2 = scraped_stack.instance("n1"), scraped_stack.instance("n2")

    def storming_instances():
        result = prom.query('ALERTS{alertname="TandemReconnectStorm"}')
        return {s["metric"]["instance"] for s in result} or None

    instances = wait_for("ALERTS{alertname=\"TandemReconnectStorm\"} for n1", storming_instances, timeout=45,
                         interval=1.0)
    assert n1 in instances and n2 not in instances, f"storm alert instances: {instances}"


_THRESHOLD = re.compile(r"^(?P<signal>.*\S)\s*(?:>|<|>=|<=)\s*[0-9.]+\s*$", re.S)

# What each alert's expression without its final threshold must show under the generated load, per node:
# proof that the alert watches live series, not names that never get a value. (Whether the threshold and
# `for` fire and stay quiet when they should is promtool's part: Grafana/alerts_test.yml.)
ALERT_SIGNALS: dict[str, tuple[str, Callable[[float], bool], tuple[str, ...]]] = {
    "TandemHandshakeTimeouts": ("> 0 on n3 (idle sockets)", lambda v: v > 0, (H,)),
    "TandemPendingHandshakesHigh": ("a value on every node", math.isfinite, ALL),
    "TandemAbuseCloses": ("> 0 on n3 (malformed messages)", lambda v: v > 0, (H,)),
    "TandemRedisMemoryHigh": ("used / maxmemory between 0 and 1 on every node", lambda v: 0 < v < 1, ALL),
    "TandemRedisKeysWithoutTTL": ("a value on every node", math.isfinite, ALL),
    "TandemRedisLostCommits": ("a value on every node", math.isfinite, ALL),
    "TandemHistorySealLagging": ("a value on every node", math.isfinite, ALL),
    "TandemFileDescriptorsRunningOut": ("open / max between 0 and 0.8 on every node", lambda v: 0 < v < 0.8, ALL),
}


@pytest.mark.parametrize("alert", sorted(ALERT_SIGNALS))
def test_alert_signal_is_live(scraped_stack: Stack, alert: str):
    want, ok, nodes = ALERT_SIGNALS[alert]
    rule = next(r for r in alert_rules() if r.name == alert)
    match = _THRESHOLD.match(rule.expr.strip())
    assert match, f"{alert}: expression does not end in a threshold: {rule.expr}"
    signal = match.group("signal")
    instances = {scraped_stack.instance(n): n for n in nodes}
    last: list[dict] = []

    def lit() -> bool:
        nonlocal last
        last = scraped_stack.prometheus.query(signal)
        good = {s["metric"].get("instance") for s in last if ok(_value(s))}
        return set(instances) <= good

    try:
        wait_for(f"{alert} signal", lit, timeout=KEY_SERIES_TIMEOUT, interval=1.0)
    except AssertionError:
        shown = [{"metric": s["metric"], "value": s["value"][1]} for s in last]
        pytest.fail(f"{alert}: {signal} should be {want} ({instances}); last result: {json.dumps(shown)}")


def test_keys_without_ttl_show_foreign_keys_and_tandem_leaves_none(scraped_stack: Stack):
    """TandemRedisKeysWithoutTTL for real: keys another application writes to Tandem's database without an
    expiry show on every node's panel, and once they are gone the count returns to 0 — the keys Tandem
    itself wrote under the whole load (presence, sessions, docs, the big doc) all have a TTL."""
    prom = scraped_stack.prometheus
    expr = substitute(find_query("Redis keys without a TTL").expr, variables())
    port = scraped_stack.redis_port
    keys = [f"ops-test:foreign:{i}" for i in range(3)]

    def counts() -> dict[str, float]:
        return {s["metric"]["node"]: _value(s) for s in prom.query(expr)}

    wait_for("Tandem's docs written (the big doc)", lambda: scraped_stack.load.stats.snapshot()["counts"].get(
        "big_doc_written"), timeout=KEY_SERIES_TIMEOUT)
    try:
        for key in keys:
            assert redis_command(port, "SET", key, "not Tandem's") == b"+OK"
        wait_for("3 keys without a TTL on every node's panel",
                 lambda: all(counts().get(n, 0) >= 3 for n in ALL), timeout=30)
        firing_signal = {s["metric"]["instance"] for s in prom.query(
            next(r for r in alert_rules() if r.name == "TandemRedisKeysWithoutTTL").expr)}
        assert firing_signal == {scraped_stack.instance(n) for n in ALL}, firing_signal
    finally:
        redis_command(port, "DEL", *keys)
    wait_for("no keys without a TTL once the foreign ones are gone",
             lambda: all(counts().get(n) == 0 for n in ALL), timeout=30)


def test_ops_plane_answers_as_documented(scraped_stack: Stack):
    """The ops prober's probes of both nodes all got the documented answers (421 for a rebinding Host, 400
    for the clock that used to crash a node, 401 without n2's token), and Prometheus scraped n2 without one."""
    prom = scraped_stack.prometheus
    stats = scraped_stack.prober.stats

    def probed():
        counts = stats.snapshot()["counts"]
        wanted = ("healthz", "readyz", "status", "rebinding_host", "huge_clock", "no_token", "with_token")
        return all(counts.get(key, 0) >= 3 for key in wanted)

    wait_for("three rounds of ops probes", probed, timeout=30)
    assert not stats.snapshot()["failures"], "ops probes got wrong answers:\n" + "\n".join(stats.snapshot()["failures"])
    n2 = scraped_stack.instance("n2")
    assert [s["value"][1] for s in prom.query(f'up{{job="tandem", instance="{n2}"}}')] == ["1"]
    for node in scraped_stack.nodes.values():
        node.process.assert_alive()


def test_load_generator_ran_cleanly(scraped_stack: Stack):
    """Every activity of the load generator ran; crashes of an activity are listed."""
    counts = scraped_stack.load.stats.snapshot()["counts"]
    failures = scraped_stack.load.stats.snapshot()["failures"]
    for wanted in ("presence_sent", "reconnects", "ghosts", "reader_pauses", "admission_rejected", "pushes_sent"):
        assert counts.get(wanted, 0) > 0, f"load generator never did {wanted}: {counts}; failures: {failures}"
    assert not failures, "load generator activities failed:\n" + "\n".join(failures)


def test_hostile_clients_got_their_documented_answers(scraped_stack: Stack):
    """Each hostile activity on n3 ran at least twice and every time got what docs/protocol.md and
    docs/limits.md promise (a wrong answer is a failure of the activity, listed by the previous test)."""
    stats = scraped_stack.load.stats
    wanted = ("idle_sockets_closed", "bad_messages_closed_1008", "fragmented_ping_closed_1002", "hoarder_refused",
              "early_requests_refused", "ping_bursts", "stalled_closed", "big_doc_written",
              "foreign_origin_refused_403")

    def done():
        counts = stats.snapshot()["counts"]
        return all(counts.get(w, 0) >= (1 if w == "big_doc_written" else 2) for w in wanted)

    try:
        wait_for("two rounds of each hostile activity", done, timeout=KEY_SERIES_TIMEOUT)
    except AssertionError:
        pytest.fail(f"hostile activities incomplete: {stats.snapshot()['counts']}; failures: {stats.snapshot()['failures']}")
    assert not stats.snapshot()["failures"], "\n".join(stats.snapshot()["failures"])
    scraped_stack.nodes[HOSTILE_NODE].process.assert_alive()
