"""The demo one command away (issue 12): `tandem serve` started as `make run` starts it — development mode,
embedded Redis, no --web-root, from the checkout — serves the status page at / with a visible link to the
demo, and the demo at /demo/ connects to this node's own client port. A newcomer's path, in a real Chromium.

(Ports are 0 instead of 7070/7071 so the test does not collide with anything else on the machine.)
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading

import pytest
from selenium.webdriver.common.by import By

from harness import ARTIFACTS, REPO, stop_process, tandem_binary, wait_until

LISTENING = re.compile(r"ops\.port=\d+.*\blistening")


@pytest.fixture
def make_run_node():
    data = tempfile.TemporaryDirectory(prefix="tandem-make-run-")
    log_path = ARTIFACTS / "logs" / "tandem-make-run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(tandem_binary()), "serve", "--port", "0", "--ops-port", "0", "--data-dir", data.name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    banner: dict[str, str] = {}
    ready = threading.Event()

    def read():
        with open(log_path, "ab") as log:
            for raw in process.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace")
                if LISTENING.search(line) and not ready.is_set():
                    banner.update(dict(re.findall(r"([\w.]+)=(\S+)", line)))
                    ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60), f"no listening line; see {log_path}"
        yield banner
    finally:
        stop_process(process)
        data.cleanup()


def test_a_newcomer_finds_the_demo_from_the_status_page(browser, make_run_node):
    banner = make_run_node
    ops = banner["ops"].rstrip("/")
    # The banner names both addresses a newcomer needs.
    assert banner["demo"] == f"{ops}/demo/", banner
    assert banner["ws"].startswith("ws://127.0.0.1:"), banner

    browser.get(f"{ops}/")
    assert "Tandem status" in browser.title
    link = browser.find_element(By.CSS_SELECTOR, "#demo-link a")
    wait_until(lambda: link.is_displayed(), timeout=10, message="the demo link shows on the status page")
    link.click()

    wait_until(lambda: browser.current_url == f"{ops}/demo/", timeout=10, message="the demo opened")
    conn = browser.find_element(By.ID, "conn")
    wait_until(lambda: conn.text == "connected", timeout=20, message="the demo connected to the node's client port")
    assert browser.find_element(By.ID, "node").text == banner["node"]

    # A note added with the keyboard is committed by the node (the clock advances) and shows on the board.
    board = browser.find_element(By.ID, "board")
    board.click()
    board.send_keys("n")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-note]"), timeout=10, message="a note appears")
    wait_until(lambda: browser.find_element(By.ID, "clock").text not in ("", "0"), timeout=10,
               message="the node committed the note")

    # A second window on the demo sees the first one.
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(f"{ops}/demo/")
        wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#people li")) == 2, timeout=20,
                   message="both windows listed")
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-note]"), timeout=10,
                   message="the note is there for the second window too")
    finally:
        browser.close()
        browser.switch_to.window(first)
