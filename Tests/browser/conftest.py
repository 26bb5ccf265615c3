"""Fixtures for the browser tests: a redis-server, two Tandem nodes sharing it, live WebSocket traffic,
one headless Chromium (Selenium), and a static file server for the client library's test page.

Session-scoped so the whole suite pays for one cluster and one browser; every fixture stops what it
started in its teardown, which pytest runs on failures too.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, str(Path(__file__).parent))

from harness import ARTIFACTS, REPO, RedisServer, TandemNode  # noqa: E402
from traffic import LiveTraffic, standard_specs  # noqa: E402

STORM_THRESHOLD = 5
DESKTOP = (1366, 1000)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("failed-*"):  # only this run's failures
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def redis(artifacts):
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster(redis):
    """Two nodes, n1 and n2, on one Redis; n1 with a low storm threshold."""
    web_root = REPO / "Web" / "status"
    nodes = []
    try:
        n1 = TandemNode("n1", redis, web_root, ["--storm-threshold", str(STORM_THRESHOLD)])
        nodes.append(n1.start())
        n2 = TandemNode("n2", redis, web_root, ["--storm-threshold", str(STORM_THRESHOLD)])
        nodes.append(n2.start())
        yield {"n1": n1, "n2": n2, "redis": redis}
    finally:
        for node in reversed(nodes):
            node.stop()


@pytest.fixture(scope="session")
def traffic(cluster):
    load = LiveTraffic(standard_specs(cluster["n1"], cluster["n2"]))
    try:
        yield load.start()
    finally:
        load.stop()


def chrome_options(width: int, height: int) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--hide-scrollbars", "--force-color-profile=srgb",
                     "--no-first-run", "--disable-extensions", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="session")
def driver(artifacts):
    service = Service(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"),
                      log_output=str(artifacts / "logs" / "chromedriver.log"))
    (artifacts / "logs").mkdir(parents=True, exist_ok=True)
    browser = webdriver.Chrome(service=service, options=chrome_options(*DESKTOP))
    browser.set_page_load_timeout(20)
    browser.set_script_timeout(20)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def browser(driver, request):
    """The shared browser, back at desktop size; a screenshot and the console log are saved on failure."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.set_window_size(*DESKTOP)
    # Leave the previous test's page first: its client, reconnecting to a node that test stopped, could
    # otherwise log a failed WebSocket handshake after the log below was emptied (seen once in a fresh-clone run).
    driver.get("about:blank")
    driver.get_log("browser")  # start with an empty console log
    yield driver
    report = getattr(request.node, "rep_call", None)
    logs = driver.get_log("browser")
    if report is not None and report.failed:
        name = request.node.name
        try:
            driver.save_screenshot(str(ARTIFACTS / f"failed-{name}.png"))
            (ARTIFACTS / f"failed-{name}.console.txt").write_text("\n".join(str(entry) for entry in logs))
        except Exception:  # noqa: BLE001 - best effort while reporting a failure
            pass
    elif report is not None:
        # Failed fetches of a stopped node are expected; a JavaScript exception never is.
        errors = [e for e in logs if e.get("level") == "SEVERE" and "Failed to load resource" not in e.get("message", "")
                  and "net::ERR_" not in e.get("message", "")]
        assert not errors, f"JavaScript errors in the console: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """/web/… → Web/, /pages/… → Tests/browser/pages/ (nothing else of the repository)."""

    roots = {"/web/": REPO / "Web", "/pages/": Path(__file__).parent / "pages"}
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript"}

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, root in self.roots.items():
            if path.startswith(prefix):
                target = (root / path[len(prefix):]).resolve()
                if target == root.resolve() or root.resolve() in target.parents:
                    return str(target)
        return str(Path("/nonexistent"))

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def static_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
