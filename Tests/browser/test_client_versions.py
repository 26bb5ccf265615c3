"""tandem.js against a server that does not speak its protocol version: the close code reaches the page,
the client stops reconnecting and fires one clear "error" event."""

from __future__ import annotations

from selenium.webdriver.support.ui import WebDriverWait

VERSION_JS = r"""
const [url, done] = arguments;
const client = new Tandem.TandemClient({ url, user: "future", backoffMs: 50, maxBackoffMs: 100 });
const seen = { errors: [], closes: [], states: [] };
client.addEventListener("error", (e) => seen.errors.push(e.detail));
client.addEventListener("close", (e) => seen.closes.push(e.detail));
client.addEventListener("state", (e) => seen.states.push(e.detail.state));
client.connect().catch((e) => { seen.rejected = String(e); });
// Long enough for several reconnects at a 50-100 ms backoff, had the client retried.
setTimeout(() => done(seen), 1500);
"""


def test_a_newer_client_stops_and_says_why(browser, cluster, static_server):
    browser.get(f"{static_server}/pages/client.html")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
    url = cluster["n1"].ws_url.replace("/v1/ws", "/v2/ws")
    seen = browser.execute_async_script(VERSION_JS, url)
    assert len(seen["closes"]) == 1, seen
    assert seen["closes"][0]["code"] == 4401 and seen["closes"][0]["willReconnect"] is False, seen
    assert seen["closes"][0]["reason"].startswith("server_too_old"), seen
    assert [e["error"] for e in seen["errors"]] == ["server_too_old"], seen
    assert "upgraded" in seen["errors"][0]["message"], seen
    assert seen["states"][-1] == "closed", seen
    assert "reconnecting" not in seen["states"], seen
