"""The demo's History panel (issue 15) in a real Chromium against the real nodes: the slider previews the
board at an earlier clock (the protocol's `at`, answered from the doc's history), and Restore makes that
the current board (one new commit, which a participant on the other node receives as a patch)."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import quote, urlencode

import websockets
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness import make_token


def test_history_panel_previews_and_restores(browser, cluster, static_server):
    n1, n2 = cluster["n1"], cluster["n2"]
    doc = f"demo:{uuid.uuid4().hex[:8]}"
    query = urlencode({"ws": n1.ws_url, "doc": doc, "token": make_token("hana", {"demo:*": "editor"}, "Hana")})
    browser.get(f"{static_server}/web/demo/index.html?{query}")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.demo.doc.synced"))
    for i in range(1, 4):
        browser.execute_script(f"window.demo.doc.put('note:{i}', {{x: 0.1 * {i}, y: 0.2, text: 'note {i}', by: 'Hana'}})")
        WebDriverWait(browser, 10).until(lambda d, i=i: d.execute_script("return window.demo.doc.clock") == i)

    # Open the panel: the slider spans clocks 0–3 and starts at the head, whose preview has three notes.
    browser.find_element(By.CSS_SELECTOR, "#history summary").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "history-preview").get_attribute("data-clock") == "3")
    assert browser.find_element(By.ID, "history-slider").get_attribute("max") == "3"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history-preview .preview-note")) == 3

    # Slide to clock 1: the preview shows the board then (one note); the board itself is unchanged.
    browser.execute_script("const s = document.getElementById('history-slider'); s.value = '1'; s.dispatchEvent(new Event('change'));")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "history-preview").get_attribute("data-clock") == "1")
    previewed = [e.get_attribute("data-note") for e in browser.find_elements(By.CSS_SELECTOR, "#history-preview .preview-note")]
    assert previewed == ["note:1"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#board .note")) == 3

    # A participant on the other node sees the restore as an ordinary patch.
    async def participant():
        token = make_token("omar", {"demo:*": "viewer"}, "Omar")
        async with websockets.connect(f"{n2.ws_url}?token={quote(token)}", open_timeout=10) as ws:
            assert json.loads(await ws.recv())["t"] == "welcome"
            await ws.send(json.dumps({"t": "join", "doc": doc}))
            async with asyncio.timeout(20):
                while True:
                    message = json.loads(await ws.recv())
                    if message["t"] == "patch" and message["clock"] == 4:
                        return message

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(participant())
        loop.run_until_complete(asyncio.sleep(0.5))
        browser.find_element(By.ID, "history-restore").click()

        def restored(d):
            loop.run_until_complete(asyncio.sleep(0.05))
            return d.execute_script("return window.demo.doc.clock") == 4 and len(d.find_elements(By.CSS_SELECTOR, "#board .note")) == 1

        WebDriverWait(browser, 15, poll_frequency=0.05).until(restored, message="the board never became clock 1's")
        assert "restored clock 1 as clock 4" in browser.find_element(By.ID, "history-status").text
        patch = loop.run_until_complete(asyncio.wait_for(task, 20))
        assert patch["by"] == "ops-restore" and set(patch["ops"]) == {"note:2", "note:3"}, patch
    finally:
        if not task.done():
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()
