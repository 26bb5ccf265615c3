"""Web/client/tandem.js in the real browser against the real nodes: two clients (one per node) in one
test page see each other's cursors and records; presence is throttled; a dropped client resumes its
session and catches up; a push refused as busy is retried when the server says; the demo board works end
to end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from urllib.parse import quote, urlencode

import requests
import websockets
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness import ARTIFACTS, REPO, RedisServer, TandemNode, make_token, wait_until

SETUP_JS = r"""
const [urlA, tokenA, urlB, tokenB, doc, done] = arguments;
const a = makeClient('a', { url: urlA, token: tokenA });
const b = makeClient('b', { url: urlB, token: tokenB });
Promise.all([a.connect(), b.connect()])
  .then(() => Promise.all([a.join(doc, { state: { cursor: [1, 2] } }).ready, b.join(doc, { state: { cursor: [3, 4] } }).ready]))
  .then(() => done({ ok: true, a: a.session, b: b.session, nodeA: a.node, nodeB: b.node }), (e) => done({ error: String(e) }));
"""

# What a client sees: its doc's other members' cursors, its records, clock and state.
VIEW_JS = r"""
const [label, doc] = arguments;
const c = clients[label].client, d = c.doc(doc);
return {
  state: c.state, session: c.session, clock: d.clock, synced: d.synced, pending: d.pending.length,
  others: d.others().map((m) => ({ sid: m.sid, user: m.user, cursor: m.state && m.state.cursor })),
  records: Object.fromEntries(d.records),
};
"""


def view(browser, label, doc):
    return browser.execute_script(VIEW_JS, label, doc)


def wait_view(browser, label, doc, predicate, message, timeout=10):
    last = {}

    def check(_):
        last["view"] = view(browser, label, doc)
        return predicate(last["view"])

    try:
        WebDriverWait(browser, timeout, poll_frequency=0.1).until(check)
    except Exception:
        raise AssertionError(f"{message}; {label} sees {json.dumps(last.get('view'))}") from None
    return last["view"]


def push(browser, label, doc, ops):
    return browser.execute_async_script(
        "const [label, doc, ops, done] = arguments;"
        "clients[label].client.doc(doc).push(ops).then(done, (e) => done({ error: String(e), code: e.code }));",
        label, doc, ops)


def open_two_clients(browser, cluster, static_server, doc):
    n1, n2 = cluster["n1"], cluster["n2"]
    browser.get(f"{static_server}/pages/client.html")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
    grant = {"client-test:*": "editor"}
    setup = browser.execute_async_script(
        SETUP_JS, n1.ws_url, make_token("ada", grant, "Ada"), n2.ws_url, make_token("bob", grant, "Bob"), doc)
    assert setup.get("ok"), setup
    assert (setup["nodeA"], setup["nodeB"]) == ("n1", "n2")
    return setup


def test_two_clients_see_cursors_and_records(browser, cluster, static_server):
    doc = f"client-test:{uuid.uuid4().hex[:8]}"
    setup = open_two_clients(browser, cluster, static_server, doc)

    # Each sees the other's initial cursor (from `joined` or the next presence delta), across nodes.
    wait_view(browser, "b", doc, lambda v: [(o["user"], o["cursor"]) for o in v["others"]] == [("ada", [1, 2])], "b never saw ada")
    wait_view(browser, "a", doc, lambda v: [(o["user"], o["cursor"]) for o in v["others"]] == [("bob", [3, 4])], "a never saw bob")

    # Presence updates are throttled to the server's presenceRate: 50 calls in a row send at most two
    # messages (one now, the newest after 1/rate s), and the other side ends up with the last state.
    sent = browser.execute_async_script(r"""
      const [doc, done] = arguments;
      const c = clients.a.client, ws = c.ws, original = ws.send.bind(ws);
      let presence = 0;
      ws.send = (data) => { if (JSON.parse(data).t === 'presence') presence += 1; original(data); };
      for (let i = 0; i < 50; i += 1) c.doc(doc).setPresence({ cursor: [i, i] });
      setTimeout(() => { ws.send = original; done({ presence, rate: c.limits.presenceRate }); }, 400);
    """, doc)
    assert sent["rate"] > 0 and 1 <= sent["presence"] <= 2, sent
    wait_view(browser, "b", doc, lambda v: v["others"] and v["others"][0]["cursor"] == [49, 49], "b never saw ada's last cursor")

    # A push is applied optimistically, committed, and reaches the other client.
    result = push(browser, "a", doc, {"r1": ["put", {"title": "hello"}]})
    assert result["action"] == "commit", result
    b_view = wait_view(browser, "b", doc, lambda v: v["records"].get("r1") == {"title": "hello"}, "b never got r1")
    assert b_view["clock"] == result["clock"]

    # An append at a stale offset is rebased by the server; both converge on what it decided.
    result = push(browser, "b", doc, {"r1": ["patch", {"title": ["append", "!", 0]}]})
    assert result["action"] == "rebase", result
    for label in ("a", "b"):
        wait_view(browser, label, doc, lambda v: v["records"]["r1"]["title"] == "hello!" and v["clock"] == result["clock"],
                  f"{label} did not converge on the rebase")

    # The server agrees.
    info = requests.get(f"{cluster['n1'].ops_url}/api/docs/{doc}", timeout=3).json()
    assert info["head"] == result["clock"]
    assert {m["sid"] for m in info["members"]} == {setup["a"], setup["b"]}
    WebDriverWait(browser, 5).until(lambda d: all('"hello!"' in d.find_element(By.ID, f"view-{x}").text for x in "ab"))
    browser.save_screenshot(str(ARTIFACTS / "client-page.png"))


def test_presence_modes_hidden_and_none(browser, cluster, static_server):
    """join(id, {presence}) sends the mode: a hidden client sees the others and is never seen; a none client
    gets no presence at all; neither can setPresence; a bad mode throws before anything is sent."""
    doc = f"client-test:{uuid.uuid4().hex[:8]}"
    setup = open_two_clients(browser, cluster, static_server, doc)
    grant = {"client-test:*": "editor"}
    joined = browser.execute_async_script(r"""
      const [urlB, tokenH, tokenN, doc, done] = arguments;
      const h = makeClient('h', { url: urlB, token: tokenH });
      const n = makeClient('n', { url: urlB, token: tokenN });
      let badMode = null;
      try { h.join('client-test:other', { presence: 'invisible' }); } catch (e) { badMode = String(e); }
      Promise.all([h.connect(), n.connect()])
        .then(() => Promise.all([h.join(doc, { presence: 'hidden' }).ready, n.join(doc, { presence: 'none' }).ready]))
        .then(() => {
          // Presence events of the none client from here on (it should get none).
          window.nonePresenceEvents = 0;
          n.doc(doc).addEventListener('presence', () => { window.nonePresenceEvents += 1; });
          const refused = [];
          for (const c of [h, n]) {
            try { c.doc(doc).setPresence({ cursor: [0, 0] }); } catch (e) { refused.push(String(e)); }
          }
          done({ h: h.session, n: n.session, badMode, refused });
        }, (e) => done({ error: String(e) }));
    """, cluster["n2"].ws_url, make_token("hal", grant, "Hal"), make_token("nia", grant, "Nia"), doc)
    assert "error" not in joined, joined
    assert joined["badMode"] and "presence must be" in joined["badMode"], joined
    assert len(joined["refused"]) == 2 and all("no presence to set" in r for r in joined["refused"]), joined

    # The hidden client sees ada's newest cursor; ada and bob only ever see each other.
    browser.execute_script("clients.a.client.doc(arguments[0]).setPresence({ cursor: [7, 7] });", doc)
    wait_view(browser, "h", doc, lambda v: sorted((o["user"], tuple(o["cursor"] or [])) for o in v["others"]) == [("ada", (7, 7)), ("bob", (3, 4))],
              "the hidden client never saw ada's cursor")
    wait_view(browser, "b", doc, lambda v: [o["user"] for o in v["others"]] == ["ada"] and v["others"][0]["cursor"] == [7, 7],
              "bob never saw ada's cursor")
    for label in ("a", "b"):
        assert {o["user"] for o in view(browser, label, doc)["others"]} <= {"ada", "bob"}
    assert view(browser, "n", doc)["others"] == [], "the none client has members"
    assert browser.execute_script("return window.nonePresenceEvents;") == 0, "the none client got presence"
    info = requests.get(f"{cluster['n2'].ops_url}/api/docs/{doc}", timeout=3).json()
    assert {m["sid"] for m in info["members"]} == {setup["a"], setup["b"]}


def node_metric(node, series):
    """The value of one exported series (0 when absent)."""
    text = requests.get(f"{node.ops_url}/metrics", timeout=3).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_checksums_are_verified_and_a_diverged_client_resyncs(browser, cluster, static_server):
    """Issue 13: tandem.js keeps the checksum of its confirmed records and checks every commit's `sum`
    (results, patches, snapshots). Its checksum is the server's; when its state differs (here: a client bug
    simulated by changing a record behind its back), it reports `diverged` — counted by the node — and
    re-joins without `since`: the snapshot puts it back on the server's state."""
    doc = f"client-test:{uuid.uuid4().hex[:8]}"
    open_two_clients(browser, cluster, static_server, doc)
    browser.execute_script(r"""
      const [doc] = arguments;
      for (const label of ['a', 'b']) {
        window[`diverged_${label}`] = [];
        clients[label].client.doc(doc).addEventListener('diverged', (e) => window[`diverged_${label}`].push(e.detail));
      }
    """, doc)
    result = push(browser, "a", doc, {"r1": ["put", {"title": "héllo \u2028", "n": 1.5, "big": 1e21, "z": {"b": [], "a": None}}],
                                      "r2": ["put", {"k": [1, 2]}]})
    assert result["action"] == "commit" and isinstance(result.get("sum"), str), result
    wait_view(browser, "b", doc, lambda v: "r2" in v["records"], "b never got the records")
    redis = cluster["redis"]
    # The stored checksum: `~sum` in the doc's pushids hash (stop 31; before, the key tandem:{D}:sum).
    stored = subprocess.run(["redis-cli", "-p", str(redis.port), "HGET", f"tandem:{{{doc}}}:pushids", "~sum"],
                            capture_output=True, text=True, timeout=10).stdout.strip()
    sums = browser.execute_script(r"""
      const [doc] = arguments;
      const out = {};
      for (const label of ['a', 'b']) {
        const d = clients[label].client.doc(doc);
        out[label] = new Tandem.DocChecksum(d.confirmed).hex;
      }
      return out;
    """, doc)
    assert stored == f"{result['clock']}:{result['sum']}", (stored, result)
    assert sums == {"a": result["sum"], "b": result["sum"]}, "tandem.js computes the server's checksum"

    # b's state goes wrong (as a client bug would leave it): its copy of r1 and its checksum of it.
    browser.execute_script(r"""
      const [doc] = arguments;
      const d = clients.b.client.doc(doc);
      d.confirmed.set('r1', { title: 'wrong' });
      d.checksum.set('r1', { title: 'wrong' });
    """, doc)
    before = node_metric(cluster["n2"], 'tandem_sync_divergence_total{source="client"}')
    result = push(browser, "a", doc, {"r2": ["patch", {"k": ["append", [3], 2]}]})
    assert result["action"] == "commit", result
    view = wait_view(browser, "b", doc,
                     lambda v: v["records"].get("r1", {}).get("title") == "héllo \u2028" and v["records"]["r2"] == {"k": [1, 2, 3]}
                     and v["synced"], "b never resynced to the server's records")
    assert view["clock"] == result["clock"]
    events = browser.execute_script("return { a: window.diverged_a, b: window.diverged_b };")
    assert events["a"] == [], events
    assert len(events["b"]) == 1 and events["b"][0]["resync"] and events["b"][0]["expected"] == result["sum"], events
    wait_until(lambda: node_metric(cluster["n2"], 'tandem_sync_divergence_total{source="client"}') == before + 1, 10,
               message="n2 counted b's diverged report")
    # Back in step: the next commit checks out on both.
    result = push(browser, "b", doc, {"r3": ["put", {"ok": True}]})
    assert result["action"] == "commit", result
    wait_view(browser, "a", doc, lambda v: "r3" in v["records"], "a never got r3")
    events = browser.execute_script("return { a: window.diverged_a, b: window.diverged_b };")
    assert events["a"] == [] and len(events["b"]) == 1, events


def test_dropped_client_resumes_and_catches_up(browser, cluster, static_server):
    doc = f"client-test:{uuid.uuid4().hex[:8]}"
    setup = open_two_clients(browser, cluster, static_server, doc)
    wait_view(browser, "b", doc, lambda v: len(v["others"]) == 1, "b never saw ada")

    # Drop a's socket with a 1 s backoff (Math.random pinned to 1: the full-jitter bound for attempt 0).
    dropped = browser.execute_script(r"""
      const [doc] = arguments;
      const c = clients.a.client;
      c.options.backoffMs = 1000;
      const random = Math.random;
      Math.random = () => 1;
      try { c.drop(c.ws, 4000, 'test drop'); } finally { Math.random = random; }
      // Offline edit: applied locally now, pushed after the catch-up.
      window.offlinePush = null;
      c.doc(doc).put('offline', { by: 'ada' }).then((r) => (window.offlinePush = r));
      const close = clients.a.events.filter((e) => e.type === 'close').pop();
      return { close: close && close.detail, state: c.state, local: c.doc(doc).records.has('offline') };
    """, doc)
    assert dropped["close"]["willReconnect"] and dropped["close"]["delayMs"] == 1000, dropped
    assert dropped["state"] == "reconnecting" and dropped["local"], dropped

    # While a is away, b commits something a must get from the catch-up (log since a's clock).
    result = push(browser, "b", doc, {"while-away": ["put", {"by": "bob"}]})
    assert result["action"] == "commit", result

    a_view = wait_view(browser, "a", doc, lambda v: v["state"] == "open" and v["synced"] and "while-away" in v["records"]
                       and v["pending"] == 0, "a never caught up after reconnecting")
    assert a_view["session"] == setup["a"], "the session should be resumed"
    welcome = browser.execute_script("return clients.a.events.filter((e) => e.type === 'welcome').pop().detail")
    assert welcome["resumed"] is True and welcome["session"] == setup["a"]
    offline = WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.offlinePush"))
    assert offline["action"] == "commit", offline
    wait_view(browser, "b", doc, lambda v: "offline" in v["records"] and [o["sid"] for o in v["others"]] == [setup["a"]],
              "b never saw a's offline edit or a's session back")


def test_busy_doc_push_is_retried_after_retry_after_ms(browser, static_server):
    """A push refused as busy (`unavailable` with `retryAfterMs`) is pushed again by tandem.js no sooner than
    the server said — not after the fixed second it waits when no hint is given — and then commits."""
    redis = RedisServer("redis-busy").start()
    node = TandemNode("n-busy", redis, REPO / "Web" / "status", ["--max-push-wait-ms", "50"])
    try:
        node.start()
        doc = f"client-test:{uuid.uuid4().hex[:8]}"
        browser.get(f"{static_server}/pages/client.html")
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
        ready = browser.execute_async_script(r"""
          const [url, token, doc, done] = arguments;
          const c = makeClient('busy', { url, token });
          // Every push the client sends, with when (the re-send is what is checked).
          const send = c.send.bind(c);
          window.pushSends = [];
          c.send = (m) => { if (m.t === 'push') window.pushSends.push({ id: m.id, at: performance.now() }); return send(m); };
          c.connect().then(() => c.join(doc).ready).then(() => done({ ok: true }), (e) => done({ error: String(e) }));
        """, node.ws_url, make_token("ada", {"client-test:*": "editor"}, "Ada"), doc)
        assert ready.get("ok"), ready

        # Redis stalls with the first push in it: the second push would wait behind the stall, far longer
        # than 50 ms, so the node refuses it at once and says when to come back (about the stall so far).
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            browser.execute_script(r"""
              const [doc] = arguments;
              const d = clients.busy.client.doc(doc);
              window.results = {};
              d.put('first', { n: 1 }).then((r) => (window.results.first = r));
            """, doc)
            time.sleep(1.5)  # the stall (setup: the refusal's hint grows with it)
            browser.execute_script(r"""
              const [doc] = arguments;
              const d = clients.busy.client.doc(doc);
              window.refusedAt = null;
              // (An error about a doc's push is the doc's event; the client only fires those about no doc.)
              d.addEventListener('servererror', (e) => {
                if (e.detail.code === 'unavailable' && window.refusedAt === null) {
                  window.refusedAt = performance.now();
                  window.refusal = e.detail;
                }
              });
              d.put('second', { n: 2 }).then((r) => (window.results.second = r));
            """, doc)
            refusal = WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.refusedAt !== null && window.refusal"))
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert refusal["retryAfterMs"] >= 1000, f"a hint past the client's default second: {refusal}"

        results = WebDriverWait(browser, 30).until(
            lambda d: d.execute_script("return window.results.first && window.results.second && window.results"))
        assert results["first"]["action"] == "commit" and results["second"]["action"] == "commit", results
        timing = browser.execute_script(r"""
          const second = window.pushSends.filter((s) => s.id === window.refusal.id);
          return { sends: second.length, gap: second.length > 1 ? second[1].at - window.refusedAt : null };
        """)
        assert timing["sends"] >= 2, timing
        # The error handler records its time just after the client scheduled the re-send: allow 5 ms.
        assert timing["gap"] >= refusal["retryAfterMs"] - 5, f"re-sent {timing['gap']:.0f} ms after a {refusal['retryAfterMs']} ms hint"
    finally:
        node.stop()
        redis.stop()


def test_edits_made_while_refused_go_coalesced_in_one_push(browser, static_server):
    """After a busy refusal, tandem.js keeps at most one push in flight: the edits made while it waits for
    `retryAfterMs` are not sent one by one but go with the refused push, as one push (their ops composed),
    and every edit's promise resolves with that push's commit."""
    redis = RedisServer("redis-coalesce").start()
    node = TandemNode("n-coalesce", redis, REPO / "Web" / "status", ["--max-push-wait-ms", "50"])
    try:
        node.start()
        doc = f"client-test:{uuid.uuid4().hex[:8]}"
        browser.get(f"{static_server}/pages/client.html")
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
        ready = browser.execute_async_script(r"""
          const [url, token, doc, done] = arguments;
          const c = makeClient('coalesce', { url, token });
          const send = c.send.bind(c);
          window.pushSends = [];
          c.send = (m) => { if (m.t === 'push') window.pushSends.push({ id: m.id, ops: m.ops, at: performance.now() }); return send(m); };
          c.connect().then(() => c.join(doc).ready).then(() => done({ ok: true }), (e) => done({ error: String(e) }));
        """, node.ws_url, make_token("ada", {"client-test:*": "editor"}, "Ada"), doc)
        assert ready.get("ok"), ready

        # As in the test above: Redis stalls with a first push in it, the second is refused as busy.
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            browser.execute_script(r"""
              const [doc] = arguments;
              const d = clients.coalesce.client.doc(doc);
              window.results = {};
              d.put('first', { n: 1 }).then((r) => (window.results.first = r));
            """, doc)
            time.sleep(1.5)
            browser.execute_script(r"""
              const [doc] = arguments;
              const d = clients.coalesce.client.doc(doc);
              window.refusal = null;
              d.addEventListener('servererror', (e) => {
                if (e.detail.code !== 'unavailable' || window.refusal) return;
                window.refusal = e.detail;
                // Edits made while refused: held, then sent with the refused one.
                window.sendsAtRefusal = window.pushSends.length;
                d.patch('second', { m: ['put', 2] }).then((r) => (window.results.third = r));
                d.put('other', { k: 1 }).then((r) => (window.results.fourth = r));
                window.sendsAfterEdits = window.pushSends.length;
              });
              d.put('second', { n: 2 }).then((r) => (window.results.second = r));
            """, doc)
            refusal = WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.refusal"))
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert refusal["retryAfterMs"] >= 1, refusal
        results = WebDriverWait(browser, 30).until(lambda d: d.execute_script(
            "const r = window.results; return r.first && r.second && r.third && r.fourth && r"))
        state = browser.execute_script(r"""
          const [doc] = arguments;
          const d = clients.coalesce.client.doc(doc);
          return { sends: window.pushSends, atRefusal: window.sendsAtRefusal, afterEdits: window.sendsAfterEdits,
                   records: Object.fromEntries(d.records), pending: d.pending.length };
        """, doc)
        assert state["afterEdits"] == state["atRefusal"], "edits made while refused are held, not sent"
        later = state["sends"][state["atRefusal"]:]
        assert len(later) == 1, f"one push after the refusal, carrying all three edits: {later}"
        assert later[0]["ops"] == {"second": ["put", {"n": 2, "m": 2}], "other": ["put", {"k": 1}]}, later[0]
        assert results["second"]["action"] == "commit", results
        assert results["third"]["clock"] == results["second"]["clock"] == results["fourth"]["clock"], results
        assert state["records"]["second"] == {"n": 2, "m": 2} and state["records"]["other"] == {"k": 1}, state
        assert state["pending"] == 0
    finally:
        node.stop()
        redis.stop()


def test_demo_board_end_to_end(browser, cluster, static_server, artifacts):
    n1, n2 = cluster["n1"], cluster["n2"]
    doc = f"demo:{uuid.uuid4().hex[:8]}"
    query = urlencode({"ws": n1.ws_url, "doc": doc, "token": make_token("dora", {"demo:*": "editor"}, "Dora")})
    browser.get(f"{static_server}/web/demo/index.html?{query}")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "conn").get_attribute("data-state") == "open")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.demo.doc.synced"))

    # A second participant on the other node (plain WebSocket): its cursor shows on the board, and a
    # note it creates appears; a note created in the page reaches it.
    async def participant():
        token = make_token("paul", {"demo:*": "editor"}, "Paul")
        async with websockets.connect(f"{n2.ws_url}?token={quote(token)}", open_timeout=10) as ws:
            assert json.loads(await ws.recv())["t"] == "welcome"
            await ws.send(json.dumps({"t": "join", "doc": doc, "state": {"cursor": [0.5, 0.4]}}))
            clock = None
            while clock is None:
                message = json.loads(await ws.recv())
                if message["t"] == "snapshot" and not message["more"]:
                    clock = message["clock"]
            await ws.send(json.dumps({"t": "push", "doc": doc, "id": 1, "base": clock,
                                      "ops": {"note:paul": ["put", {"x": 0.55, "y": 0.2, "text": "hello from Paul", "by": "Paul"}]}}))
            seen = set()
            async with asyncio.timeout(15):
                while "note:dora" not in seen:
                    message = json.loads(await ws.recv())
                    if message["t"] == "patch":
                        seen.update(message["ops"])
                    if message["t"] == "result":
                        assert message["action"] == "commit", message
                await asyncio.sleep(1.5)  # keep the cursor on screen for the screenshot

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(participant())
        loop.run_until_complete(asyncio.sleep(0))

        def step(d):
            loop.run_until_complete(asyncio.sleep(0.05))
            if task.done():
                task.result()
            return d.find_elements(By.CSS_SELECTOR, '.note[data-note="note:paul"]') and d.find_elements(By.CSS_SELECTOR, ".cursor")

        WebDriverWait(browser, 15, poll_frequency=0.05).until(step, message="Paul's note and cursor never appeared")
        assert "Paul" in browser.find_element(By.CSS_SELECTOR, ".cursor").text
        assert browser.find_element(By.CSS_SELECTOR, '.note[data-note="note:paul"] textarea').get_attribute("value") == "hello from Paul"
        browser.execute_script("window.demo.doc.put('note:dora', {x: 0.15, y: 0.3, text: 'hi Paul', by: 'Dora'})")
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, '.note[data-note="note:dora"]'))
        browser.save_screenshot(str(artifacts / "demo.png"))
        loop.run_until_complete(asyncio.wait_for(task, 20))
    finally:
        if not task.done():
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()


def test_ops_and_backoff_helpers(browser, static_server):
    browser.get(f"{static_server}/pages/client.html")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
    result = browser.execute_script(r"""
      const { applyOps, applyDiff, backoffDelay } = Tandem;
      const original = { t: 'ab', list: [1], nested: { a: 1, b: 2 } };
      const patched = applyDiff(original, {
        t: ['append', 'cd', 2], list: ['append', [2, 3], 1], nested: ['patch', { a: ['delete'], c: ['put', 3] }], n: ['put', 5],
        missing: ['append', 'x', 0] });
      const records = applyOps(new Map([['r1', { v: 1 }], ['r2', { v: 2 }]]),
        { r1: ['patch', { v: ['put', 10] }], r2: ['remove'], r3: ['put', { v: 3 }], ghost: ['patch', { v: ['put', 1] }] });
      const delays = [];
      for (let attempt = 0; attempt < 12; attempt += 1) delays.push(backoffDelay(attempt, 250, 15000, () => 0.999999));
      return { patched, original, records: Object.fromEntries(records),
               delays, zero: backoffDelay(5, 250, 15000, () => 0) };
    """)
    assert result["patched"] == {"t": "abcd", "list": [1, 2, 3], "nested": {"b": 2, "c": 3}, "n": 5, "missing": "x"}
    assert result["original"] == {"t": "ab", "list": [1], "nested": {"a": 1, "b": 2}}, "inputs must not be mutated"
    assert result["records"] == {"r1": {"v": 10}, "r3": {"v": 3}}
    assert result["delays"][:4] == [249, 499, 999, 1999] and max(result["delays"]) == 14999
    assert result["zero"] == 0


def test_compose_ops_for_coalesced_pushes(browser, static_server):
    """`composeOps(a, b)` (pushes held while the server refuses them as busy go as one): the effect of a
    then b, or null where that is not one obvious op — then the pushes stay separate."""
    browser.get(f"{static_server}/pages/client.html")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.pageReady === true"))
    result = browser.execute_script(r"""
      const { composeOps, applyOps } = Tandem;
      const a = { r1: ['put', { x: 1 }], r2: ['patch', { t: ['append', 'ab', 0], n: ['put', 1] }] };
      const b = { r1: ['patch', { y: ['put', 2] }], r2: ['patch', { t: ['append', 'cd', 2], n: ['delete'] }], r3: ['remove'] };
      const composed = composeOps(a, b);
      const base = () => new Map([['r2', { t: '', n: 0 }], ['r3', { z: 1 }]]);
      return {
        composed,
        same: JSON.stringify(Object.fromEntries(applyOps(base(), composed)))
          === JSON.stringify(Object.fromEntries(applyOps(applyOps(base(), a), b))),
        gap: composeOps({ r: ['patch', { t: ['append', 'ab', 0] }] }, { r: ['patch', { t: ['append', 'cd', 5] }] }),
        afterRemove: composeOps({ r: ['remove'] }, { r: ['patch', { t: ['put', 1] }] }),
        proto: composeOps({}, JSON.parse('{"__proto__": ["put", {}]}')),
        untouched: a.r1[1].y === undefined,
      };
    """)
    assert result["composed"] == {
        "r1": ["put", {"x": 1, "y": 2}], "r2": ["patch", {"t": ["append", "abcd", 0], "n": ["delete"]}], "r3": ["remove"]}
    assert result["same"], "applying the composition is applying both"
    assert result["gap"] is None and result["afterRemove"] is None and result["proto"] is None
    assert result["untouched"], "inputs must not be mutated"
