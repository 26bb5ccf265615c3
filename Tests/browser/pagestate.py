"""Reading the status page from Selenium and comparing it with /api/status."""

from __future__ import annotations

import time
from collections import deque

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

# One round trip: everything the tests compare, read from the stable data-* hooks of the page.
PAGE_STATE_JS = r"""
const q = (s) => document.querySelector(s);
const cellValue = (cell) => {
  if (cell.dataset.value !== undefined) return cell.dataset.value;
  const inner = cell.querySelector('[data-value]');
  return inner ? inner.dataset.value : cell.textContent.trim();
};
const rows = (selector, key) => [...document.querySelectorAll(selector)].map((tr) => {
  const row = { key: tr.dataset[key] };
  for (const cell of tr.querySelectorAll('[data-field]')) row[cell.dataset.field] = cellValue(cell);
  return row;
});
const connections = q('[data-metric="connections"]');
return {
  live: q('#live-state').dataset.state,
  polls: window.tandemStatus ? window.tandemStatus.polls : 0,
  node: q('[data-metric="node"]').dataset.value || null,
  connectionsText: connections.textContent,
  connections: connections.dataset.value === undefined ? null : connections.dataset.value,
  nodes: rows('#nodes-table tbody tr[data-node]', 'node'),
  docs: rows('#docs-table tbody tr[data-doc]', 'doc'),
  storm: !q('#storm-banner').hidden,
  unreachable: !q('#unreachable-banner').hidden,
  stale: document.body.classList.contains('stale'),
  redisMode: q('[data-metric="redis-mode"]').dataset.value ?? null,
  redisModeText: q('[data-metric="redis-mode"]').textContent,
};
"""


def page_state(driver) -> dict:
    return driver.execute_script(PAGE_STATE_JS)


def open_status(driver, node, timeout: float = 15) -> dict:
    """Loads a node's status page and waits until it shows that node's data."""
    driver.get(node.ops_url + "/")
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: (s := page_state(d))["live"] == "live" and s["node"] == node.node_id and s["connections"] not in (None, ""),
        message=f"status page of {node.node_id} never showed live data")
    return page_state(driver)


def as_int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def doc_tuple(doc: dict) -> tuple:
    return tuple(as_int(doc.get(k)) for k in ("members", "editors", "viewers", "headClock"))


def compare(page: dict, snapshots: list[dict]) -> list[str]:
    """What on the page matches none of the API snapshots (taken within about one refresh of it)."""
    problems = []
    if not snapshots:
        return ["no API snapshot yet"]
    latest = snapshots[-1]
    if page["node"] != latest["node"]:
        problems.append(f"node {page['node']!r} != {latest['node']!r}")
    connections = as_int(page["connections"])
    if connections not in {s["connections"] for s in snapshots}:
        problems.append(f"connections {connections} not in {sorted({s['connections'] for s in snapshots})}")
    elif page["connectionsText"] != f"{connections:,}":
        problems.append(f"connections text {page['connectionsText']!r} does not show {connections}")

    # Redis mode: a single server, or a cluster with how many of its shards are up.
    def mode(status):
        redis = status.get("redis") or {}
        shards = redis.get("shards") or []
        return f"cluster:{sum(1 for s in shards if s['up'])}/{len(shards)}" if redis.get("cluster") else "single"
    modes = {mode(s) for s in snapshots}
    if page["redisMode"] not in modes:
        problems.append(f"redis mode {page['redisMode']!r} not in {sorted(modes)}")
    elif page["redisMode"] == "single" and page["redisModeText"] != "single server":
        problems.append(f"redis mode text {page['redisModeText']!r}")

    page_nodes = {row["key"]: row for row in page["nodes"]}
    if set(page_nodes) != {n["node"] for n in latest["nodes"]}:
        problems.append(f"nodes {sorted(page_nodes)} != {sorted(n['node'] for n in latest['nodes'])}")
    for name, row in page_nodes.items():
        seen = {(n["connections"], n["docs"], n["state"]) for s in snapshots for n in s["nodes"] if n["node"] == name}
        shown = (as_int(row["connections"]), as_int(row["docs"]), row["state"])
        if shown not in seen:
            problems.append(f"node {name}: page {shown} not in {sorted(seen)}")

    page_docs = {row["key"]: row for row in page["docs"]}
    if not any(set(page_docs) == {d["doc"] for d in s["docs"]} for s in snapshots):
        problems.append(f"docs {sorted(page_docs)} != {sorted(d['doc'] for d in latest['docs'])}")
    for name, row in page_docs.items():
        seen = {doc_tuple(d) for s in snapshots for d in s["docs"] if d["doc"] == name}
        if doc_tuple(row) not in seen:
            problems.append(f"doc {name}: page (members, editors, viewers, head) {doc_tuple(row)} not in {sorted(seen)}")
    return problems


def wait_until_page_matches_api(driver, node, timeout: float = 15) -> tuple[dict, dict]:
    """Polls the page and the API together until every figure on the page equals one the API returned
    within the last 2.5 s (one refresh plus the request's own time). Returns (page, latest API)."""
    snapshots: deque = deque()
    last = {"problems": ["never compared"]}

    def agree(_):
        now = time.monotonic()
        snapshots.append((now, node.status()))
        while snapshots and snapshots[0][0] < now - 2.5:
            snapshots.popleft()
        page = page_state(driver)
        last["page"], last["problems"] = page, compare(page, [s for _, s in snapshots])
        return not last["problems"]

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.2).until(agree)
    except TimeoutException:
        raise AssertionError(f"page of {node.node_id} never matched /api/status: {last['problems']}") from None
    return last["page"], snapshots[-1][1]
