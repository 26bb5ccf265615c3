"""Load generator for the ops checks: every kind of Tandem client traffic, against real nodes.

Runs on its own asyncio loop (in a thread, see `LoadThread`) until told to stop or `max_seconds` pass.
Every loop in here is bounded by that stop signal, and all traffic goes to 127.0.0.1.

What it produces (metric it feeds):
- presence streams on every node, with shared docs across nodes (presence_updates accepted, fan-out
  messages/bytes, presence_sessions, docs_active, presence tick);
- a too-fast presence sender (presence_updates rate_limited) and presence before join (not_joined);
- a churner that reconnects with ?resume= (reconnects, closed resumed/abrupt/client_close, and on the node
  started with a low --storm-threshold, reconnect_storm = 1);
- ghosts that vanish without leaving (presence_expired);
- a reader that pauses with a small receive buffer while big presence states stream in (queue_depth
  outbound, slow_consumer_coalesced) and a flooder that stops reading while asking for large replies
  (connections_closed slow_consumer, when the node's --max-outbound-bytes is low);
- a greedy user over --max-connections-per-user (admission_rejected user_full);
- bad frames and binary frames (protocol_errors bad_message, closed unsupported_data);
- document sync: two pushers on different nodes patching the same records from stale bases (sync pushes
  commit/rebase/discard, conflicts, concurrent pushes, push latency) and subscribers that ack, one lazily
  (sync lag seconds and clocks).

Run by hand: python Tests/ops/loadgen.py ws://127.0.0.1:PORT1/v1/ws ws://127.0.0.1:PORT2/v1/ws --seconds 30
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import socket
import threading
import time
from typing import Any, Optional
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection, connect

def kernel_send_buffer_max() -> int:
    """Largest TCP send buffer the kernel autotunes to (bytes a stalled socket absorbs before the server's
    own outbound queue grows); 4 MiB where /proc does not say."""
    try:
        return int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


PRESENCE_DOC = "ops-presence"
SLOW_DOC = "ops-slow"
SYNC_DOC = "ops-sync"


class Stats:
    """Counters of what the generator did and saw (for the test's diagnostics and feature detection)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.results: collections.Counter[str] = collections.Counter()
        self.sync_unavailable_message: Optional[str] = None
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def failure(self, where: str, error: BaseException) -> None:
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(f"{where}: {error!r}")

    @property
    def sync_state(self) -> str:
        """available: some push got a result; unavailable: the server said sync is off; unknown."""
        with self.lock:
            if sum(self.results.values()) > 0:
                return "available"
            if self.sync_unavailable_message:
                return "unavailable"
            return "unknown"

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"counts": dict(self.counts), "errors_received": dict(self.errors),
                    "push_results": dict(self.results), "sync_state_message": self.sync_unavailable_message,
                    "failures": list(self.failures)}


class Client:
    """One WebSocket client session. Reads in the background unless `paused`."""

    def __init__(self, gen: "LoadGenerator", base_url: str, user: str, *, resume: Optional[str] = None,
                 small_rcvbuf: bool = False, tag: str = "client") -> None:
        self.gen = gen
        self.base_url = base_url
        self.user = user
        self.resume = resume
        self.small_rcvbuf = small_rcvbuf
        self.tag = tag
        self.ws: Optional[ClientConnection] = None
        self.session: Optional[str] = None
        self.clocks: dict[str, int] = {}
        self.results: asyncio.Queue = asyncio.Queue()
        self.reader: Optional[asyncio.Task] = None
        self.reading = asyncio.Event()
        self.reading.set()
        self.closed = asyncio.Event()
        self.last_joined_bytes = 0

    @property
    def stats(self) -> Stats:
        return self.gen.stats

    async def open(self) -> "Client":
        params = {"user": self.user, "name": self.user.title()}
        if self.resume:
            params["resume"] = self.resume
        url = f"{self.base_url}?{urlencode(params)}"
        sock = None
        if self.small_rcvbuf:
            # A tiny receive window: once we stop reading, the server's writes back up into its own queue
            # instead of into kernel buffers.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            host, port = self.base_url.split("//", 1)[1].split("/", 1)[0].split(":")
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        self.ws = await connect(
            url, sock=sock, ping_interval=None, close_timeout=2, open_timeout=5,
            max_queue=2 if self.small_rcvbuf else 64, max_size=4 * 1024 * 1024)
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
        if welcome.get("t") != "welcome":
            raise AssertionError(f"first message was not welcome: {welcome}")
        self.session = welcome["session"]
        self.stats.count("connections_opened")
        if self.resume:
            self.stats.count("resumes")
        self.reader = asyncio.create_task(self._read_loop())
        return self

    async def _read_loop(self) -> None:
        assert self.ws is not None
        try:
            while True:
                await self.reading.wait()
                raw = await self.ws.recv()
                if isinstance(raw, bytes):
                    continue
                msg = json.loads(raw)
                if msg.get("t") == "joined":
                    self.last_joined_bytes = len(raw)
                self._handle(msg)
        except websockets.ConnectionClosed:
            pass
        except Exception as error:  # noqa: BLE001
            self.stats.failure(f"{self.tag} reader", error)
        finally:
            self.closed.set()

    def _handle(self, msg: dict) -> None:
        t = msg.get("t", "?")
        self.stats.count(f"recv.{t}")
        doc = msg.get("doc")
        clock = msg.get("clock")
        if doc and isinstance(clock, int):
            self.clocks[doc] = max(self.clocks.get(doc, 0), clock)
        if t == "result":
            with self.stats.lock:
                self.stats.results[str(msg.get("action"))] += 1
            self.results.put_nowait(msg)
        elif t == "error":
            code = str(msg.get("code"))
            text = str(msg.get("message", ""))
            with self.stats.lock:
                self.stats.errors[code] += 1
                if code == "unavailable" and "sync" in text:
                    self.stats.sync_unavailable_message = text
            if "id" in msg or code == "unavailable":  # a refused push answers the pusher
                self.results.put_nowait(msg)

    async def send(self, message: dict) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message, separators=(",", ":")))

    async def join(self, doc: str, state: Optional[dict] = None) -> None:
        await self.send({"t": "join", "doc": doc, "state": state or {}})

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        if self.reader:
            self.reader.cancel()

    def abort(self) -> None:
        """Drops the TCP connection without a close frame (the server sees `abrupt`)."""
        if self.ws is not None:
            self.ws.transport.abort()
        if self.reader:
            self.reader.cancel()


class LoadGenerator:
    def __init__(self, ws_urls: list[str], *, max_seconds: float = 150.0, per_user_limit: int = 4,
                 big_state_bytes: int = 700) -> None:
        if len(ws_urls) < 2:
            raise ValueError("needs two nodes (cross-node presence and sync)")
        self.urls = ws_urls
        self.max_seconds = max_seconds
        self.per_user_limit = per_user_limit
        self.big_state_bytes = big_state_bytes
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.clients: list[Client] = []

    async def client(self, node: int, user: str, **kw) -> Client:
        c = Client(self, self.urls[node], user, **kw)
        await c.open()
        self.clients.append(c)
        return c

    def running(self) -> bool:
        return not self.stop.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleeps unless stopped first; returns whether still running."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        return self.running()

    async def guarded(self, name: str, coro) -> None:
        """Runs one activity; a crash is recorded and retried after a pause, until stopped."""
        while self.running():
            try:
                await coro()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                self.stats.failure(name, error)
                await self.sleep(1.0)

    async def run(self) -> Stats:
        activities = {
            "presence": self.presence_streams,
            "rate_limited": self.too_fast_presence,
            "churn": self.reconnect_churn,
            "ghosts": self.ghosts,
            "paused_reader": self.paused_reader,
            "flooder": self.slow_consumer_flooder,
            "greedy": self.greedy_user,
            "bad_frames": self.bad_frames,
            "sync": self.sync_traffic,
        }
        tasks = [asyncio.create_task(self.guarded(name, fn)) for name, fn in activities.items()]
        try:
            await self.sleep(self.max_seconds)
        finally:
            self.stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        return self.stats

    # ------------------------------------------------------------------ presence

    async def presence_streams(self) -> None:
        """Three cursors per node in one shared doc, ~8 updates/s each."""
        cursors = []
        for node in range(len(self.urls)):
            for i in range(3):
                c = await self.client(node, f"cursor-{node}-{i}", tag="cursor")
                await c.join(PRESENCE_DOC, {"x": 0, "y": 0})
                cursors.append(c)
        step = 0
        while await self.sleep(0.125):
            step += 1
            for i, c in enumerate(cursors):
                await c.send({"t": "presence", "doc": PRESENCE_DOC,
                              "state": {"x": step, "y": i, "sel": [step, step + i]}})
                self.stats.count("presence_sent")

    async def too_fast_presence(self) -> None:
        """60 updates/s against the default 20/s limit; plus presence for a doc it never joined."""
        c = await self.client(1, "speedy", tag="speedy")
        await c.join(PRESENCE_DOC, {"x": 0})
        n = 0
        while await self.sleep(1 / 60):
            n += 1
            await c.send({"t": "presence", "doc": PRESENCE_DOC, "state": {"x": n}})
            if n % 60 == 0:
                await c.send({"t": "presence", "doc": "ops-not-joined", "state": {"x": n}})

    async def ghosts(self) -> None:
        """Every 2 s a client joins, moves, and vanishes without leaving: its presence expires after the TTL."""
        n = 0
        while self.running():
            n += 1
            c = await self.client(n % 2, f"ghost-{n}", tag="ghost")
            await c.join(PRESENCE_DOC, {"ghost": n})
            await self.sleep(0.3)
            c.abort()
            self.stats.count("ghosts")
            if not await self.sleep(1.7):
                return

    # ------------------------------------------------------------------ reconnects

    async def reconnect_churn(self) -> None:
        """~4 reconnects/s on node 0 with ?resume=, alternating abrupt drops, clean closes and takeovers."""
        c = await self.client(0, "churner", tag="churner")
        await c.join(PRESENCE_DOC, {"churn": 0})
        n = 0
        while await self.sleep(0.25):
            n += 1
            mode = n % 3
            if mode == 0:
                c.abort()  # abrupt; the resume takes the detached presence over
            elif mode == 1:
                await c.close()  # client_close; counts as a reconnect (same user, same doc, < 60 s)
            # mode 2: resume while the old socket is still open (the old one closes as `resumed`)
            old = c
            c = await self.client(0, "churner", resume=old.session, tag="churner")
            await c.join(PRESENCE_DOC, {"churn": n})
            if mode == 2:
                await asyncio.wait_for(old.closed.wait(), 5)
                await old.close()
            self.stats.count("reconnects")

    # ------------------------------------------------------------------ queues

    async def _big_state_writers(self, node: int, doc: str, prefix: str, count: int) -> list[Client]:
        writers = []
        for i in range(count):
            w = await self.client(node, f"{prefix}-{i}", tag=prefix)
            await w.join(doc, {"blob": "x" * self.big_state_bytes})
            writers.append(w)
        return writers

    async def _stream_big_states(self, writers: list[Client], doc: str) -> None:
        n = 0
        while await self.sleep(0.06):
            n += 1
            for i, w in enumerate(writers):
                pad = self.big_state_bytes - 20
                await w.send({"t": "presence", "doc": doc, "state": {"n": n, "blob": chr(97 + (n + i) % 26) * pad}})

    async def _request_backlog(self, c: Client, doc: str, total_bytes: int, per_second: float) -> None:
        """While `c` is not reading, asks for about `total_bytes` of `joined` replies (a re-join is answered
        with the doc's full presence list, and replies are never coalesced)."""
        size = max(c.last_joined_bytes, 512)
        for _ in range(min(total_bytes // size + 1, 5000)):
            if c.closed.is_set() or not self.running():
                return
            try:
                await asyncio.wait_for(c.join(doc, {"waiting": True}), 1)
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                return
            self.stats.count(f"{c.tag}_rejoins")
            await asyncio.sleep(1 / per_second)

    async def paused_reader(self) -> None:
        """A reader on node 1 with a tiny receive window stops reading for ~9 s at a time while big presence
        states stream in and it asks for the kernel's send buffer (~4 MB) + 2 MB of replies: the 2 MB wait
        in the node's outbound queue (below the default 8 MB limit, so it is not closed) and the node
        coalesces the presence deltas meant for it."""
        writers = await self._big_state_writers(1, SLOW_DOC, "writer", 4)
        streaming = asyncio.create_task(self._stream_big_states(writers, SLOW_DOC))
        try:
            reader = None
            while self.running():
                if reader is None or reader.closed.is_set():
                    resume = reader.session if reader else None
                    reader = await self.client(1, "paused-reader", resume=resume, small_rcvbuf=True, tag="paused")
                    await reader.join(SLOW_DOC, {"reading": True})
                    if not await self.sleep(1.0):
                        break
                reader.reading.clear()
                self.stats.count("reader_pauses")
                await self._request_backlog(reader, SLOW_DOC, kernel_send_buffer_max() + 2 * 1024 * 1024,
                                            per_second=250)
                if not await self.sleep(6.0):
                    break
                reader.reading.set()
                if not await self.sleep(2.0):
                    break
        finally:
            streaming.cancel()

    async def slow_consumer_flooder(self) -> None:
        """Like the paused reader, on node 0, but asks for far more than that node's --max-outbound-bytes
        (set low by the test) so the node closes it with 1013 (slow_consumer); then it comes back."""
        writers = await self._big_state_writers(0, SLOW_DOC, "flood-writer", 3)
        streaming = asyncio.create_task(self._stream_big_states(writers, SLOW_DOC))
        try:
            while self.running():
                c = await self.client(0, "flooder", small_rcvbuf=True, tag="flooder")
                await c.join(SLOW_DOC, {"flood": True})
                if not await self.sleep(0.5):
                    return
                c.reading.clear()
                await self._request_backlog(c, SLOW_DOC, kernel_send_buffer_max() + 4 * 1024 * 1024, per_second=250)
                c.reading.set()
                try:
                    await asyncio.wait_for(c.closed.wait(), 5)
                    self.stats.count("flooder_closed")
                except asyncio.TimeoutError:
                    pass
                await c.close()
                if not await self.sleep(3.0):
                    return
        finally:
            streaming.cancel()

    # ------------------------------------------------------------------ admission and protocol errors

    async def greedy_user(self) -> None:
        """One user opens more connections than --max-connections-per-user allows, every 3 s."""
        held = []
        for _ in range(self.per_user_limit):
            held.append(await self.client(1, "greedy", tag="greedy"))
        while self.running():
            try:
                extra = await self.client(1, "greedy", tag="greedy-extra")
                await extra.close()  # the limit was not enforced; nothing else to do
                self.stats.count("greedy_admitted")
            except websockets.InvalidStatus:
                self.stats.count("admission_rejected")
            if not await self.sleep(3.0):
                return

    async def bad_frames(self) -> None:
        """Every 2 s: an invalid JSON frame, an unknown type, and (every 3rd round) a binary frame."""
        n = 0
        while self.running():
            n += 1
            c = await self.client(n % 2, f"sloppy-{n % 2}", tag="sloppy")
            await c.ws.send("{not json")
            await c.send({"t": "no-such-type"})
            if n % 3 == 0:
                await c.ws.send(b"\x00\x01binary")
                self.stats.count("binary_sent")
                try:
                    await asyncio.wait_for(c.closed.wait(), 3)
                except asyncio.TimeoutError:
                    pass
            await c.close()
            if not await self.sleep(2.0):
                return

    # ------------------------------------------------------------------ document sync

    async def sync_traffic(self) -> None:
        """Two pushers on different nodes change the same records from stale bases; two subscribers ack
        (one every 0.2 s with its latest clock, one every 2 s with the clock it had 2 s before)."""
        a = await self.client(0, "pusher-a", tag="pusher-a")
        b = await self.client(1, "pusher-b", tag="pusher-b")
        eager = await self.client(1, "sub-eager", tag="sub-eager")
        lazy = await self.client(0, "sub-lazy", tag="sub-lazy")
        for c in (a, b, eager, lazy):
            await c.join(SYNC_DOC, {"role": c.tag})
        await self.sleep(0.5)
        tasks = [
            asyncio.create_task(self._pusher(a, "a")),
            asyncio.create_task(self._pusher(b, "b")),
            asyncio.create_task(self._acker(eager, 0.2)),
            asyncio.create_task(self._acker(lazy, 2.0, behind=True)),
        ]
        try:
            await self.stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pusher(self, c: Client, who: str) -> None:
        n = 0
        known: collections.deque[int] = collections.deque([0], maxlen=4)
        while await self.sleep(0.15 + random.random() * 0.1):
            n += 1
            known.append(c.clocks.get(SYNC_DOC, 0))
            base = known[0]  # a few pushes behind on purpose: concurrent pushes
            if who == "a":
                # Flip the shared record between removed and present; keep a log record growing.
                if n % 2:
                    ops = {"shared": ["remove"], f"a-{n % 5}": ["put", {"n": n}]}
                else:
                    ops = {"shared": ["put", {"v": n, "by": "a", "tags": {}}]}
            else:
                # Patches to records A keeps removing: void parts are rebased or the whole push discarded.
                if n % 3 == 0:
                    ops = {"shared": ["patch", {"v": ["put", n]}]}
                else:
                    ops = {"shared": ["patch", {"by": ["put", "b"], "tags": ["patch", {"t": ["put", n]}]}],
                           f"b-{n % 5}": ["put", {"n": n}]}
            push_id = n
            await c.send({"t": "push", "doc": SYNC_DOC, "id": push_id, "base": base, "ops": ops})
            self.stats.count("pushes_sent")
            try:
                while True:
                    reply = await asyncio.wait_for(c.results.get(), 5)
                    if reply.get("id") == push_id or reply.get("code") == "unavailable":
                        break
            except asyncio.TimeoutError:
                self.stats.count("push_timeouts")
            if self.stats.sync_state == "unavailable":
                await self.sleep(2.0)  # the server has no sync yet: keep probing slowly

    async def _acker(self, c: Client, every: float, behind: bool = False) -> None:
        """Acks every `every` seconds: the latest clock, or (`behind`) the clock it had one period earlier,
        like a client that applies changes slowly (head − ack > 0 in tandem_sync_lag_clocks)."""
        acked = -1
        previous: Optional[int] = None
        while await self.sleep(every):
            latest = c.clocks.get(SYNC_DOC)
            clock = previous if behind else latest
            previous = latest
            if clock is not None and clock != acked:
                await c.send({"t": "ack", "doc": SYNC_DOC, "clock": clock})
                acked = clock
                self.stats.count("acks_sent")


class LoadThread:
    """Runs a LoadGenerator on its own event loop in a daemon thread."""

    def __init__(self, ws_urls: list[str], **kw) -> None:
        self.gen = LoadGenerator(ws_urls, **kw)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="tandem-load", daemon=True)
        self.error: Optional[BaseException] = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.gen.run())
        except BaseException as error:  # noqa: BLE001
            self.error = error
        finally:
            self.loop.close()

    @property
    def stats(self) -> Stats:
        return self.gen.stats

    def start(self) -> "LoadThread":
        self.thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self.thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.gen.stop.set)
            except RuntimeError:
                pass  # loop already closed
            self.thread.join(timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("urls", nargs=2, help="ws://127.0.0.1:PORT/v1/ws of two nodes")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    started = time.monotonic()
    stats = asyncio.run(LoadGenerator(args.urls, max_seconds=args.seconds).run())
    print(json.dumps(stats.snapshot(), indent=2, sort_keys=True))
    print(f"ran {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
