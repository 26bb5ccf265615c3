"""The status page in a real headless Chromium against two real Tandem nodes under live traffic.

Tests run in file order; the last one stops and restarts n2 (the other tests do not depend on it).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from urllib.parse import quote

import websockets
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import STORM_THRESHOLD
from harness import make_token, wait_until
from pagestate import open_status, page_state, wait_until_page_matches_api

# What traffic.standard_specs puts in each doc, over both nodes.
EXPECTED_DOCS = {"board:alpha": (6, 4, 2), "board:beta": (4, 3, 1)}


def full_page_screenshot(driver, path):
    """Screenshot of the whole page (Chrome DevTools: capture beyond the viewport)."""
    import base64

    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def test_numbers_match_api_on_both_nodes(browser, cluster, traffic, artifacts):
    n1, n2 = cluster["n1"], cluster["n2"]
    # Both nodes have heartbeated and the traffic has pushed to every doc at least once.
    def settled():
        status = n1.status()
        return ({n["node"] for n in status["nodes"]} == {"n1", "n2"} and len(status["docs"]) >= 2
                and all((d.get("headClock") or 0) > 0 for d in status["docs"]))
    wait_until(settled, 10, message="both nodes listed and pushes in every doc")
    open_status(browser, n1)
    page, api = wait_until_page_matches_api(browser, n1)

    # The live traffic is what the page shows: members from both nodes, editors and viewers.
    assert {n["node"] for n in api["nodes"]} == {"n1", "n2"}
    assert all(n["alive"] and n["state"] == "serving" for n in api["nodes"])
    assert int(page["connections"]) >= 6
    docs = {row["key"]: row for row in page["docs"]}
    for doc, (members, editors, viewers) in EXPECTED_DOCS.items():
        assert (int(docs[doc]["members"]), int(docs[doc]["editors"]), int(docs[doc]["viewers"])) == (members, editors, viewers)
        assert int(docs[doc]["headClock"]) > 0
    assert "notes:gamma" not in docs  # only n2 serves it: n1 lists the docs it has members in
    self_rows = browser.find_elements(By.CSS_SELECTOR, "#nodes-table tr.row-self")
    assert [row.get_attribute("data-node") for row in self_rows] == ["n1"]
    # Charts have drawn the history.
    samples = browser.execute_script("return [...document.querySelectorAll('canvas')].map(c => Number(c.dataset.samples || 0))")
    assert len(samples) == 7 and min(samples) > 0
    # Nothing is loaded from anywhere but the node itself (works offline).
    foreign = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => !n.startsWith(location.origin))")
    assert foreign == []
    full_page_screenshot(browser, artifacts / "desktop.png")

    # n2's page lists the same two nodes and the doc only n2 serves.
    open_status(browser, n2)
    page, _ = wait_until_page_matches_api(browser, n2)
    assert {row["key"] for row in page["nodes"]} == {"n1", "n2"}
    assert "notes:gamma" in {row["key"] for row in page["docs"]}


FLICKER_PROBE_JS = r"""
window.__probe = {
  connections: document.querySelector('[data-metric="connections"]'),
  rows: new Map([...document.querySelectorAll('#docs-table tr[data-doc], #nodes-table tr[data-node]')]
    .map((tr) => [tr.dataset.doc || tr.dataset.node, tr])),
  removed: [],
  polls: window.tandemStatus.polls,
  lastT: [...document.querySelectorAll('canvas')].map((c) => Number(c.dataset.lastT)),
  draws: [...document.querySelectorAll('canvas')].map((c) => Number(c.dataset.draws)),
  texts: [],
};
const probe = window.__probe;
probe.observer = new MutationObserver((mutations) => {
  for (const m of mutations) for (const n of m.removedNodes)
    if (n.nodeType === 1) probe.removed.push(n.tagName + ':' + (n.dataset.doc || n.dataset.node || n.dataset.metric || n.className));
});
probe.observer.observe(document.body, { subtree: true, childList: true });
probe.textObserver = new MutationObserver(() => probe.texts.push(probe.connections.textContent));
probe.textObserver.observe(probe.connections, { subtree: true, childList: true, characterData: true });
"""

FLICKER_RESULT_JS = r"""
const probe = window.__probe;
const now = document.querySelector('[data-metric="connections"]');
// A row whose doc or node is still listed must be the same element; a doc whose members all left (the
// live traffic's clients come and go) may leave the table, and its row with it.
const current = (key) => document.querySelector(`tr[data-doc="${CSS.escape(key)}"]`) || document.querySelector(`tr[data-node="${CSS.escape(key)}"]`);
const rowsKept = [...probe.rows].every(([key, tr]) => current(key) === null || current(key) === tr);
const rowsStillListed = [...probe.rows].filter(([key]) => current(key) !== null).length;
return {
  sameElement: now === probe.connections && probe.connections.isConnected,
  rowsKept,
  rowCount: probe.rows.size,
  rowsStillListed,
  keys: [...probe.rows.keys()],
  removed: probe.removed,
  // Rows of docs or nodes that are no longer listed (another test's clients left) may go; nothing else.
  unexpectedRemovals: probe.removed.filter((r) => !(r.startsWith('TR:') && current(r.slice(3)) === null)),
  polls: window.tandemStatus.polls - probe.polls,
  texts: probe.texts,
  lastTAdvanced: [...document.querySelectorAll('canvas')].map((c, i) => Number(c.dataset.lastT) > probe.lastT[i]),
  drawsAdvanced: [...document.querySelectorAll('canvas')].map((c, i) => Number(c.dataset.draws) > probe.draws[i]),
};
"""


def test_refresh_updates_in_place_without_rerender(browser, cluster, traffic):
    n1 = cluster["n1"]
    open_status(browser, n1)
    wait_until_page_matches_api(browser, n1)
    connections = browser.find_element(By.CSS_SELECTOR, '[data-metric="connections"]')
    before = int(connections.get_attribute("data-value"))
    # Both nodes and both docs listed before the probe (a node appears with its first heartbeat).
    WebDriverWait(browser, 15, poll_frequency=0.2).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#docs-table tr[data-doc], #nodes-table tr[data-node]")) >= 4,
        message="the page never listed two nodes and two docs")
    browser.execute_script(FLICKER_PROBE_JS)

    # Three more connections on n1: the same element must show them, then the count going back.
    async def hold_connections(count: int, seconds_event: asyncio.Event):
        token = make_token("flicker", {"*": "viewer"})
        sockets = [await websockets.connect(f"{n1.ws_url}?token={quote(token)}", open_timeout=10) for _ in range(count)]
        await seconds_event.wait()
        for ws in sockets:
            await ws.close()

    release = asyncio.Event()
    future = asyncio.run_coroutine_threadsafe(hold_connections(3, release), traffic.loop)
    try:
        WebDriverWait(browser, 10, poll_frequency=0.1).until(
            lambda _: connections.get_attribute("data-value") == str(before + 3),
            message=f"connections never showed {before + 3}")
    finally:
        traffic.loop.call_soon_threadsafe(release.set)
        future.result(10)
    WebDriverWait(browser, 10, poll_frequency=0.1).until(
        lambda _: connections.get_attribute("data-value") == str(before), message=f"connections never went back to {before}")
    # At least three more refreshes, so the charts have new samples to draw.
    start = browser.execute_script("return window.tandemStatus.polls")
    WebDriverWait(browser, 10, poll_frequency=0.2).until(lambda d: d.execute_script("return window.tandemStatus.polls") >= start + 3)

    result = browser.execute_script(FLICKER_RESULT_JS)
    assert result["sameElement"], "the connections number was replaced by another element"
    assert result["rowsKept"] and result["rowCount"] >= 4 and result["rowsStillListed"] >= 2, \
        f"keyed table rows were re-created: {result['removed']}, rows {result['keys']}"
    assert result["unexpectedRemovals"] == [], f"elements were removed during refreshes: {result['removed']}"
    assert str(before + 3) in result["texts"] and result["texts"][-1] == str(before), result["texts"]
    assert result["polls"] >= 5
    assert all(result["lastTAdvanced"]), "a chart did not move on to newer samples"
    assert all(result["drawsAdvanced"]), "a chart was not redrawn"


OVERFLOW_JS = r"""
const width = innerWidth;
const wide = [...document.querySelectorAll('body *')].filter((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.right > width + 1 && getComputedStyle(e).visibility !== 'hidden';
}).map((e) => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' right=' + Math.round(e.getBoundingClientRect().right));
return { scrollWidth: document.documentElement.scrollWidth, innerWidth: width, wide };
"""


def test_phone_width_has_no_horizontal_overflow(browser, cluster, traffic, artifacts):
    n1 = cluster["n1"]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    open_status(browser, n1)
    wait_until_page_matches_api(browser, n1)
    layout = browser.execute_script(OVERFLOW_JS)
    assert layout["innerWidth"] == 390
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    assert layout["wide"] == [], f"elements wider than the screen: {layout['wide']}"

    for metric in ("connections", "presence-sessions", "redis-status", "pushes-rate"):
        element = browser.find_element(By.CSS_SELECTOR, f'[data-metric="{metric}"]')
        assert element.is_displayed() and element.text.strip() not in ("", "–"), metric
    for row in browser.find_elements(By.CSS_SELECTOR, "#docs-table tr[data-doc], #nodes-table tr[data-node]"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        assert row.is_displayed()
        members = row.find_elements(By.CSS_SELECTOR, '[data-field="members"], [data-field="connections"]')
        assert members and members[0].is_displayed() and members[0].text.strip()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(artifacts / "phone.png"))
    browser.execute_script("document.querySelector('#docs-heading').scrollIntoView()")
    browser.save_screenshot(str(artifacts / "phone-docs.png"))


def test_storm_banner_during_a_reconnect_storm(browser, cluster, traffic, artifacts):
    n1 = cluster["n1"]
    open_status(browser, n1)
    banner = browser.find_element(By.ID, "storm-banner")
    WebDriverWait(browser, 20).until(lambda _: not banner.is_displayed(), message="a storm was already on")
    assert n1.status()["reconnects"]["storm"] is False

    # 30 sessions dropped (no close frame) and resumed 3 times: ~90 reconnects in a few seconds, far
    # over 5/s averaged over 10 s.
    resumed = traffic.storm(n1, clients=30, rounds=3)
    assert resumed >= 60, f"only {resumed} reconnects were resumed"

    WebDriverWait(browser, 15, poll_frequency=0.1).until(lambda _: banner.is_displayed(), message="no storm banner during the storm")
    status = wait_until(lambda: (s := n1.status())["reconnects"]["storm"] and s, 5, message="storm in /api/status")
    assert banner.get_attribute("aria-live") == "assertive"
    text = banner.text
    assert "Reconnect storm" in text
    assert f"threshold {STORM_THRESHOLD}/s" in text, text
    rate = float(browser.find_element(By.CSS_SELECTOR, '[data-metric="storm-rate"]').get_attribute("data-value"))
    assert rate > STORM_THRESHOLD
    peak = float(browser.find_element(By.CSS_SELECTOR, '[data-metric="storm-peak"]').get_attribute("data-value"))
    assert peak >= rate - 1e-9 or peak >= status["reconnects"]["stormPeakRate"] - 1
    assert re.search(r"since \d\d:\d\d:\d\d", text), text
    browser.save_screenshot(str(artifacts / "storm.png"))

    # The storm ends once the 10 s average is back under the threshold.
    WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda _: not banner.is_displayed(), message="the storm banner never went away")
    assert n1.status()["reconnects"]["storm"] is False
    assert "storm is over" in browser.find_element(By.ID, "announcer").get_attribute("textContent")
    # By now the charts hold half a minute of traffic, the storm included (shaded).
    full_page_screenshot(browser, artifacts / "desktop-after-storm.png")


def test_unreachable_node_and_recovery(browser, cluster, traffic, artifacts):
    n1, n2 = cluster["n1"], cluster["n2"]
    open_status(browser, n2)
    banner = browser.find_element(By.ID, "unreachable-banner")

    # A hung node (SIGSTOP: the port accepts, nothing answers): unreachable after the 2.5 s timeout.
    os.kill(n2.process.pid, signal.SIGSTOP)
    try:
        WebDriverWait(browser, 10, poll_frequency=0.1).until(lambda _: banner.is_displayed(), message="no banner for a hung node")
        assert "no answer within" in browser.find_element(By.ID, "unreachable-detail").text
    finally:
        os.kill(n2.process.pid, signal.SIGCONT)
    WebDriverWait(browser, 10, poll_frequency=0.1).until(lambda _: not banner.is_displayed(), message="no recovery after SIGCONT")

    # A stopped node: connection refused.
    before = page_state(browser)
    n2.stop()

    WebDriverWait(browser, 10, poll_frequency=0.1).until(lambda _: banner.is_displayed(), message="no unreachable banner")
    assert re.search(r"Node unreachable since \d\d:\d\d:\d\d, retrying", banner.text), banner.text
    state = page_state(browser)
    assert state["stale"] and state["live"] == "down"
    assert state["connections"] == before["connections"], "the last data should stay on the page"
    assert browser.find_element(By.CSS_SELECTOR, "main").value_of_css_property("opacity") != "1"
    # Still retrying: more failed attempts pile up.
    polls = state["polls"]
    WebDriverWait(browser, 10).until(lambda d: page_state(d)["polls"] >= polls + 2)
    assert banner.is_displayed()
    browser.save_screenshot(str(artifacts / "unreachable.png"))

    # The other node's page shows n2 as stopped meanwhile.
    original = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        open_status(browser, n1)
        WebDriverWait(browser, 10, poll_frequency=0.2).until(
            lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-node="n2"] [data-field="state"]').text == "stopped",
            message="n1's page never showed n2 as stopped")
        assert "row-down" in browser.find_element(By.CSS_SELECTOR, 'tr[data-node="n2"]').get_attribute("class")
    finally:
        browser.close()
        browser.switch_to.window(original)

    n2.restart()  # same client and ops ports
    WebDriverWait(browser, 15, poll_frequency=0.1).until(lambda _: not banner.is_displayed(), message="the page never recovered")
    WebDriverWait(browser, 5).until(lambda d: page_state(d)["live"] == "live" and not page_state(d)["stale"])
    assert "reachable again" in browser.find_element(By.ID, "announcer").get_attribute("textContent")
    wait_until_page_matches_api(browser, n2)
