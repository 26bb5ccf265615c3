"""Offline edits survive a reload (issue 12, item 4): tandem.js with tandem-offline.js keeps the records,
the clock and the pending pushes in IndexedDB. A page loses its network (a TCP relay in front of its node is
cut), edits, is reloaded while still offline and starts from what it saved; when the network is back it
pushes the edits, and a second page on the other node converges with it, no edit lost or applied twice."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from harness import make_token
from test_client import push, view, wait_view


class Relay:
    """A TCP relay to a node; `cut()` drops every relayed connection and refuses new ones until `restore()`."""

    def __init__(self, port: int):
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepting = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                if not self.accepting:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.accepting = False
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        with self.lock:
            self.accepting = True

    def close(self):
        self.cut()
        self.server.close()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"


@pytest.fixture
def relay(cluster):
    r = Relay(cluster["n1"].ws_port)
    yield r
    r.close()


# Opens client `label` with an OfflineStore named `store`, joins `doc`; resolves once the doc exists (not
# necessarily connected: the page may be offline).
OPEN_JS = r"""
const [label, url, token, store, doc, done] = arguments;
import("/web/client/tandem-offline.js").then(async ({ OfflineStore }) => {
  const persistence = await OfflineStore.open(store);
  const client = makeClient(label, { url, token, persistence, backoffMs: 50, maxBackoffMs: 300 });
  window.persistence = persistence;
  client.join(doc);
  client.connect().catch(() => {});
  done({ ok: true });
}, (e) => done({ error: String(e) }));
"""

SUBMIT_JS = r"""
const [label, doc, ops] = arguments;
clients[label].client.doc(doc).push(ops).catch(() => {});
"""


def open_page(browser, static_server, label, url, token, store, doc):
    browser.get(f"{static_server}/pages/client.html")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
    result = browser.execute_async_script(OPEN_JS, label, url, token, store, doc)
    assert result.get("ok"), result


def append(browser, label, doc, record, text):
    current = view(browser, label, doc)["records"].get(record, {}).get("text", "")
    browser.execute_script(SUBMIT_JS, label, doc, {record: ["patch", {"text": ["append", text, len(current)]}]})


def test_offline_edits_survive_a_reload_and_converge(browser, cluster, static_server, relay):
    doc = f"client-test:offline-{uuid.uuid4().hex[:8]}"
    store = f"tandem-test-{uuid.uuid4().hex[:8]}"
    grant = {"client-test:*": "editor"}
    ada = make_token("ada", grant, "Ada")

    # Page 1: online through the relay; a first record.
    open_page(browser, static_server, "a", relay.ws_url, ada, store, doc)
    wait_view(browser, "a", doc, lambda v: v["state"] == "open" and v["synced"], "page 1 online and in sync")
    assert push(browser, "a", doc, {"log": ["put", {"text": "0"}]})["action"] == "commit"

    # Offline: edits apply locally and wait; they are saved.
    relay.cut()
    wait_view(browser, "a", doc, lambda v: v["state"] != "open", "page 1 noticed the network is gone")
    for digit in "123":
        append(browser, "a", doc, "log", digit)
    browser.execute_script(SUBMIT_JS, "a", doc, {"offline": ["put", {"by": "ada"}]})
    wait_view(browser, "a", doc, lambda v: v["pending"] >= 1 and v["records"]["log"]["text"] == "0123", "offline edits applied")
    browser.execute_async_script("const done = arguments[0]; persistence.flushed().then(() => done(true));")

    # Reload while still offline: the page starts from what it saved.
    open_page(browser, static_server, "a", relay.ws_url, ada, store, doc)
    restored = wait_view(browser, "a", doc, lambda v: v["records"].get("log", {}).get("text") == "0123",
                         "the reloaded page has its offline edits")
    assert restored["state"] != "open" and restored["pending"] >= 1, restored
    assert restored["records"]["offline"] == {"by": "ada"}

    # Meanwhile someone on the other node edits too.
    bob = make_token("bob", grant, "Bob")
    browser.execute_async_script(
        "const [url, token, doc, done] = arguments;"
        "const b = makeClient('b', { url, token }); b.connect().then(() => b.join(doc).ready).then(() => done(true));",
        cluster["n2"].ws_url, bob, doc)
    append(browser, "b", doc, "log", "b")

    # Back online: the saved pushes go out and both pages converge, every edit applied exactly once.
    relay.restore()
    a = wait_view(browser, "a", doc, lambda v: v["state"] == "open" and v["synced"] and v["pending"] == 0,
                  "page 1 back online with nothing pending", timeout=20)
    b = wait_view(browser, "b", doc, lambda v: v["clock"] == a["clock"] and v["pending"] == 0, "page 2 at the same clock", timeout=20)
    a = view(browser, "a", doc)
    assert a["records"] == b["records"], (a, b)
    assert sorted(a["records"]["log"]["text"]) == sorted("0123b"), a["records"]
    assert "123" in a["records"]["log"]["text"], a["records"]
    assert a["records"]["offline"] == {"by": "ada"}
