"""Load generator for the ops checks: every kind of Tandem client traffic, against real nodes.

Runs on its own asyncio loop (in a thread, see `LoadThread`) until told to stop or `max_seconds` pass.
Every loop in here is bounded by that stop signal, and all traffic goes to 127.0.0.1.

What it produces (metric it feeds):
- presence streams on every node, with shared docs across nodes (presence_updates accepted, fan-out
  messages/bytes, presence_sessions, docs_active, presence tick);
- a too-fast presence sender (presence_updates rate_limited) and presence before join (not_joined);
- a hidden and a none member of the shared doc on every node (presence_members by mode);
- a churner that reconnects with ?resume= (reconnects, closed resumed/abrupt/client_close, and on the node
  started with a low --storm-threshold, reconnect_storm = 1);
- ghosts that vanish without leaving (presence_expired);
- a big doc (three pushes of ~900 KB) that the stalled readers below ask for with `sync`: answers to `sync`
  are counted against --max-outbound-bytes at their size and never coalesced;
- a reader that pauses with a small receive buffer while big presence states stream in and it asks for
  the kernel's send buffer + 2 MB of `sync` answers (queue_depth outbound, slow_consumer_coalesced) and a
  flooder that does the same beyond the node's --max-outbound-bytes (connections_closed slow_consumer, when
  the node's limit is low);
- a greedy user over --max-connections-per-user (admission_rejected user_full);
- bad frames and binary frames (protocol_errors bad_message, closed unsupported_data);
- document sync: two pushers on different nodes patching the same records from stale bases (sync pushes
  commit/rebase/discard, conflicts, concurrent pushes, push latency) and subscribers that ack, one lazily
  (sync lag seconds and clocks);
- with `hostile_url` (a node started with tight bounds, see Tests/ops/conftest.py): what a hostile or broken
  client does, each checked for its documented answer (`Stats.failure` otherwise): sockets that never send
  a handshake (handshake_timeouts, handshakes_pending) and bursts of them beyond --max-pending-handshakes,
  which close the oldest pending sockets (admission_rejected pending_full);
  malformed messages until closed 1008 (closed abuse) and broken framing (closed 1002, protocol_error); a
  handshake from another site's page (403, admission_rejected origin); a
  join beyond --max-docs-per-connection (limit_rejections docs_per_connection, too_many_docs), re-joins
  above the join rate (join_rate) and join/leave cycling over new docs (doc_join_rate); requests sent before a join completed beyond --max-pending-requests
  (pending_requests, queue_depth early_requests/pending_joins); ping bursts (pongs_coalesced); a client
  that stops reading and re-joins the big doc (catchups_replaced) until it misses two pings (ping_timeout).

Run by hand: python Tests/ops/loadgen.py ws://127.0.0.1:PORT1/v1/ws ws://127.0.0.1:PORT2/v1/ws --seconds 30
(add --hostile ws://127.0.0.1:PORT3/v1/ws for the hostile clients)
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import socket
import struct
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
BIG_DOC = "ops-big"
# The big doc: BIG_PUSHES pushes of BIG_RECORDS records of BIG_RECORD_BYTES each. A push stays under the
# default --max-push-bytes (1 MiB) and a record under --max-record-bytes (64 KiB); one log entry is one
# `sync` answer of about BIG_PUSH_BYTES, and a snapshot catch-up of the doc takes three ~1 MiB chunks.
BIG_RECORD_BYTES = 60_000
BIG_RECORDS = 15
BIG_PUSHES = 3
BIG_PUSH_BYTES = BIG_RECORD_BYTES * BIG_RECORDS
# How long the slow-consumer flooder keeps not reading after asking for its backlog (the node answers while
# it waits; the answers that neither the kernel nor the client takes wait in the node, past its limit).
FLOODER_STALL_SECONDS = 5.0


def masked_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One client-to-server WebSocket frame (RFC 6455 §5.2, masked as clients must), written by hand so a
    test can send frames a client library refuses to make (a fragmented ping) or several in one TCP write."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def text_frame(message: dict) -> bytes:
    return masked_frame(0x1, json.dumps(message, separators=(",", ":")).encode())


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
                 small_rcvbuf: bool = False, tag: str = "client", max_size: int = 4 * 1024 * 1024) -> None:
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
        self.max_size = max_size
        self.errors: collections.Counter[str] = collections.Counter()  # error codes this client received
        # (message type, doc) this client received; errors as ("error:CODE", doc)
        self.by_doc: collections.Counter[tuple[str, str]] = collections.Counter()
        self.last_error: dict[tuple[str, str], dict] = {}  # (code, doc) -> the last such error

    @property
    def stats(self) -> Stats:
        return self.gen.stats

    async def open(self, *, attempts: int = 1) -> "Client":
        """Connects and reads the welcome. With `attempts` > 1 a refused or failed handshake is retried (every
        0.25 s): what a real client does when a node under attack answers 503 (see `LoadGenerator.hostile_client`)."""
        for attempt in range(attempts):
            try:
                return await self._open_once()
            except (websockets.InvalidHandshake, websockets.ConnectionClosed, OSError, asyncio.TimeoutError):
                if attempt == attempts - 1:
                    raise
                self.stats.count(f"{self.tag}_handshake_retries")
                await asyncio.sleep(0.25)
        raise AssertionError("unreachable")

    async def _open_once(self) -> "Client":
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
            max_queue=2 if self.small_rcvbuf else 64, max_size=self.max_size)
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
                self._handle(json.loads(raw))
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
        self.by_doc[(f"error:{msg.get('code')}" if t == "error" else t, str(doc))] += 1
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
            self.errors[code] += 1
            self.last_error[(code, str(doc))] = msg
            with self.stats.lock:
                self.stats.errors[code] += 1
                if code == "unavailable" and "sync" in text:
                    self.stats.sync_unavailable_message = text
            if "id" in msg or code == "unavailable":  # a refused push answers the pusher
                self.results.put_nowait(msg)

    async def send(self, message: dict) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message, separators=(",", ":")))

    async def join(self, doc: str, state: Optional[dict] = None, since: Optional[int] = None,
                   presence: Optional[str] = None) -> None:
        message: dict[str, Any] = {"t": "join", "doc": doc}
        if presence in (None, "full"):
            message["state"] = state or {}
        else:
            message["presence"] = presence  # a hidden or none join has no state (bad_message otherwise)
        if since is not None:
            message["since"] = since
        await self.send(message)

    def write_frames(self, frames: bytes) -> None:
        """Writes hand-made frames (`masked_frame`) straight to the socket, all in one TCP write, so the
        node reads them together: bypasses the client library (which keeps reading the node's answers)."""
        assert self.ws is not None
        self.ws.transport.write(frames)

    @property
    def close_code(self) -> Optional[int]:
        """The close code the node sent (None while open; 1006 when the socket dropped without one)."""
        return self.ws.close_code if self.ws is not None else None

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
                 big_state_bytes: int = 700, hostile_url: Optional[str] = None) -> None:
        if len(ws_urls) < 2:
            raise ValueError("needs two nodes (cross-node presence and sync)")
        self.urls = ws_urls
        self.hostile_url = hostile_url
        self.big_doc_head: Optional[int] = None
        self.big_doc_ready = asyncio.Event()
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

    async def hostile_client(self, user: str, **kw) -> Client:
        """A client of the hostile node. A burst of idle sockets that arrives while its handshake is in flight
        may displace it from the node's full pending-handshake table (closed without an answer, pending_full),
        so it retries like a real client would."""
        assert self.hostile_url is not None
        c = Client(self, self.hostile_url, user, **kw)
        await c.open(attempts=40)
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
            "presence_modes": self.quiet_members,
            "churn": self.reconnect_churn,
            "ghosts": self.ghosts,
            "paused_reader": self.paused_reader,
            "flooder": self.slow_consumer_flooder,
            "greedy": self.greedy_user,
            "bad_frames": self.bad_frames,
            "sync": self.sync_traffic,
            "big_doc": self.big_doc,
        }
        if self.hostile_url:
            activities.update({
                "idle_sockets": self.idle_sockets,
                "abuse": self.abusive_clients,
                "doc_hoarder": self.doc_hoarder,
                "early_requests": self.early_requests,
                "ping_bursts": self.ping_bursts,
                "stalled_joiner": self.stalled_joiner,
            })
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

    async def quiet_members(self) -> None:
        """A hidden and a none member of the shared doc on every node (presence_members{mode}): they watch
        the cursors without being shown, and stay."""
        for node in range(len(self.urls)):
            for mode in ("hidden", "none"):
                c = await self.client(node, f"{mode}-{node}", tag="quiet")
                await c.join(PRESENCE_DOC, presence=mode)
        while await self.sleep(1.0):
            pass

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

    async def big_doc(self) -> None:
        """Writes the big doc once (on node 0) and publishes its head clock for the stalled readers."""
        c = await self.client(0, "big-writer", tag="big-writer", max_size=16 * 1024 * 1024)
        await c.join(BIG_DOC)
        head = 0
        for n in range(BIG_PUSHES):
            ops = {f"r{n}-{i}": ["put", {"blob": chr(97 + i) * BIG_RECORD_BYTES}] for i in range(BIG_RECORDS)}
            await c.send({"t": "push", "doc": BIG_DOC, "id": f"big-{n}", "base": head, "ops": ops})
            reply = await asyncio.wait_for(c.results.get(), 20)
            if reply.get("t") != "result":
                raise AssertionError(f"big doc push refused: {reply}")
            head = int(reply["clock"])
        self.big_doc_head = head
        self.big_doc_ready.set()
        self.stats.count("big_doc_written")
        await c.close()

    async def _join_big_doc(self, c: Client) -> None:
        """Joins the big doc at its head (no catch-up), so `sync` requests for it are allowed."""
        await asyncio.wait_for(self.big_doc_ready.wait(), 60)
        await c.join(BIG_DOC, {"reader": c.tag}, since=self.big_doc_head)

    async def _request_sync_backlog(self, c: Client, total_bytes: int) -> None:
        """While `c` is not reading, asks for about `total_bytes` of `sync` answers (one big-doc log entry of
        ~BIG_PUSH_BYTES each). The node counts each waiting answer at its size against --max-outbound-bytes
        and never coalesces them."""
        for _ in range(total_bytes // BIG_PUSH_BYTES + 1):
            if c.closed.is_set() or not self.running():
                return
            try:
                await asyncio.wait_for(c.send({"t": "sync", "doc": BIG_DOC, "from": 0, "limit": 1}), 1)
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                return
            self.stats.count(f"{c.tag}_syncs")
            await asyncio.sleep(0.01)

    async def paused_reader(self) -> None:
        """A reader on node 1 with a tiny receive window stops reading for ~9 s at a time while big presence
        states stream in and it asks for the kernel's send buffer (~4 MB) + 2 MB of `sync`
        answers: what the kernel does not take waits in the node's outbound queue (below the default 8 MiB
        limit, so it is not closed) and the node coalesces the presence deltas meant for it."""
        writers = await self._big_state_writers(1, SLOW_DOC, "writer", 4)
        streaming = asyncio.create_task(self._stream_big_states(writers, SLOW_DOC))
        try:
            reader = None
            while self.running():
                if reader is None or reader.closed.is_set():
                    resume = reader.session if reader else None
                    reader = await self.client(1, "paused-reader", resume=resume, small_rcvbuf=True, tag="paused")
                    await reader.join(SLOW_DOC, {"reading": True})
                    await self._join_big_doc(reader)
                    if not await self.sleep(1.0):
                        break
                reader.reading.clear()
                self.stats.count("reader_pauses")
                await self._request_sync_backlog(reader, kernel_send_buffer_max() + 2 * 1024 * 1024)
                if not await self.sleep(6.0):
                    break
                reader.reading.set()
                if not await self.sleep(2.0):
                    break
        finally:
            streaming.cancel()

    async def slow_consumer_flooder(self) -> None:
        """Like the paused reader, on node 0, but asks for far more than that node's --max-outbound-bytes
        (set low by the test) and does not read while the answers come, so the node closes it as a slow
        consumer (connections_closed slow_consumer; the client sees 1013 if it reads the close frame within
        the node's close grace, 1006 when the node drops the socket first); then it comes back."""
        writers = await self._big_state_writers(0, SLOW_DOC, "flood-writer", 3)
        streaming = asyncio.create_task(self._stream_big_states(writers, SLOW_DOC))
        try:
            while self.running():
                c = await self.client(0, "flooder", small_rcvbuf=True, tag="flooder")
                await c.join(SLOW_DOC, {"flood": True})
                await self._join_big_doc(c)
                if not await self.sleep(0.5):
                    return
                c.reading.clear()
                await self._request_sync_backlog(c, kernel_send_buffer_max() + 4 * 1024 * 1024)
                # Still not reading while the answers come: on a busy machine each ~1 MB answer read from the
                # Redis log can take a tenth of a second, and a flooder that read again as soon as it had
                # asked drained them as they came, so the node never held more than one (no 1013).
                if not await self.sleep(FLOODER_STALL_SECONDS):
                    return
                c.reading.set()
                try:
                    await asyncio.wait_for(c.closed.wait(), 10)
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

    # ------------------------------------------------------------------ the hostile node (hostile_url)

    def _hostile_address(self) -> tuple[str, int]:
        assert self.hostile_url is not None
        host, port = self.hostile_url.split("//", 1)[1].split("/", 1)[0].split(":")
        return host, int(port)

    async def _idle_socket(self) -> None:
        """One TCP connection to the client port that sends nothing and waits for the node's answer: there is
        none, the node closes it (after --handshake-timeout-ms, counted pending meanwhile, or earlier when newer
        sockets displace it from a full pending-handshake table). Anything else — bytes, a socket left open
        for 30 s — is a failure."""
        try:
            reader, writer = await asyncio.open_connection(*self._hostile_address())
        except OSError as error:
            self.stats.failure("idle socket connect", error)
            return
        try:
            answer = await asyncio.wait_for(reader.read(64), 30)
        except (asyncio.TimeoutError, ConnectionResetError) as error:
            answer = repr(error).encode()
        finally:
            writer.close()
        if answer == b"":
            self.stats.count("idle_sockets_closed")
        else:
            self.stats.failure("idle socket", AssertionError(f"expected a close without an answer, got {answer!r}"))

    async def idle_sockets(self) -> None:
        """Two sockets every 0.5 s that never send a handshake (handshakes_pending, handshake_timeouts) and,
        every 5 s, a burst of 24 at once: beyond --max-pending-handshakes (16) each newcomer closes the oldest
        pending socket (admission_rejected pending_full)."""
        tasks: set[asyncio.Task] = set()
        n = 0
        try:
            while await self.sleep(0.5):
                n += 1
                for _ in range(24 if n % 10 == 0 else 2):
                    task = asyncio.create_task(self._idle_socket())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _expect_close(self, c: Client, code: int, what: str) -> None:
        try:
            await asyncio.wait_for(c.closed.wait(), 10)
        except asyncio.TimeoutError:
            self.stats.failure(what, AssertionError(f"not closed within 10 s (wanted close code {code})"))
            await c.close()
            return
        if c.close_code == code:
            self.stats.count(f"{what}_closed_{code}")
        else:
            self.stats.failure(what, AssertionError(f"closed with {c.close_code}, wanted {code}"))

    async def _foreign_page(self) -> None:
        """A handshake from a web page of another site (its `Origin`): the hostile node runs in development
        mode, which accepts only this machine's pages, so 403 origin_not_allowed (admission_rejected origin).
        Retried like `hostile_client` when a burst of idle sockets displaces it before the answer."""
        url = f"{self.hostile_url}?{urlencode({'user': 'victim'})}"
        for _ in range(40):
            try:
                ws = await connect(url, origin="https://evil.example", open_timeout=5, ping_interval=None)
            except websockets.InvalidStatus as error:
                status, body = error.response.status_code, error.response.body or b""
                if status == 403 and b"origin_not_allowed" in body:
                    self.stats.count("foreign_origin_refused_403")
                else:
                    self.stats.failure("foreign page", AssertionError(f"wanted 403 origin_not_allowed, got {status} {body[:200]!r}"))
                return
            except (websockets.InvalidHandshake, websockets.ConnectionClosed, OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.25)
                continue
            await ws.close()
            self.stats.failure("foreign page", AssertionError("a handshake from another site's page was accepted"))
            return
        self.stats.failure("foreign page", AssertionError("no answer in 40 attempts"))

    async def abusive_clients(self) -> None:
        """Every 2 s, by turns: 12 malformed messages in a row (more than 10 bad frames in 10 s: close 1008,
        abuse) and a fragmented ping, which RFC 6455 §5.5 forbids (close 1002, protocol_error); and each
        time a handshake from another site's page (403)."""
        n = 0
        while self.running():
            n += 1
            await self._foreign_page()
            c = await self.hostile_client(f"abuser-{n % 2}", tag="abuser")
            if n % 2:
                try:
                    for _ in range(12):
                        await c.ws.send("{not json")
                except websockets.ConnectionClosed:
                    pass  # closed after the 11th: fine, the close code says why
                await self._expect_close(c, 1008, "bad_messages")
            else:
                c.write_frames(masked_frame(0x9, b"", fin=False))
                await self._expect_close(c, 1002, "fragmented_ping")
            if not await self.sleep(2.0):
                return

    async def doc_hoarder(self) -> None:
        """Every 2 s a client joins two docs more than --max-docs-per-connection (3 on the hostile node) allows
        (too_many_docs), one doc ten times at once (above the join rate: rate_limited), then cycles join/leave
        over six new docs (beyond the burst of --max-doc-joins-per-sec: rate_limited with retryAfterMs)."""
        n = 0
        while self.running():
            n += 1
            c = await self.hostile_client("hoarder", tag="hoarder")
            for i in range(5):
                await c.join(f"ops-hoard-{i}")
            for _ in range(10):
                await c.join("ops-hoard-0")
            for i in range(3):
                await c.send({"t": "leave", "doc": f"ops-hoard-{i}"})
            # The three joins above took the new-doc burst (3 here); a token comes back every 100 ms, so
            # these are refused (and their leaves get not_joined).
            cycle = [f"ops-cycle-{n}-{i}" for i in range(6)]
            for doc in cycle:
                await c.join(doc)
                await c.send({"t": "leave", "doc": doc})
            if not await self.sleep(1.0):
                return
            too_many = [c.by_doc[("error:too_many_docs", f"ops-hoard-{i}")] for i in (3, 4)]
            rejoins_limited = c.by_doc[("error:rate_limited", "ops-hoard-0")]
            cycles_limited = [d for d in cycle
                              if c.last_error.get(("rate_limited", d), {}).get("retryAfterMs", 0) > 0]
            if too_many == [1, 1] and rejoins_limited >= 1 and cycles_limited:
                self.stats.count("hoarder_refused")
            else:
                self.stats.failure("doc hoarder", AssertionError(
                    f"wanted too_many_docs for the 4th and 5th doc, rate_limited re-joins and new-doc joins "
                    f"(with retryAfterMs), got {too_many}, {rejoins_limited}, {cycles_limited}: {dict(c.errors)}"))
            await c.close()
            if not await self.sleep(1.0):
                return

    async def early_requests(self) -> None:
        """Every second a client joins a new doc and sends six `sync`s in the same TCP write, before the join
        can complete: --max-pending-requests (2 on the hostile node) of them wait, the rest get unavailable.
        The doc loads on another thread, so the join may complete while the node is still reading the syncs:
        then fewer than 4 are refused. What must hold every time: each sync gets one answer (an empty `log`
        chunk or `unavailable`) and at most 4 are refused; rounds with exactly 4 are counted."""
        c = await self.hostile_client("early", tag="early")
        n = 0
        while await self.sleep(1.0):
            n += 1
            if c.closed.is_set():
                c = await self.hostile_client("early", tag="early")
            doc = f"ops-early-{n}"
            c.write_frames(text_frame({"t": "join", "doc": doc})
                           + b"".join(text_frame({"t": "sync", "doc": doc, "from": 0}) for _ in range(6)))
            for _ in range(50):  # each sync's answer, within 5 s
                if c.by_doc[("log", doc)] + c.by_doc[("error:unavailable", doc)] >= 6 or not await self.sleep(0.1):
                    break
            if not self.running():
                return
            logs, refused = c.by_doc[("log", doc)], c.by_doc[("error:unavailable", doc)]
            if logs + refused != 6 or refused > 4:
                self.stats.failure("early requests", AssertionError(
                    f"wanted one answer per sync and at most 4 unavailable, got {logs} log and {refused} unavailable"))
            elif refused == 4:
                self.stats.count("early_requests_refused")
            else:
                self.stats.count("early_requests_join_won")
            await c.send({"t": "leave", "doc": doc})  # stays within --max-docs-per-connection

    async def ping_bursts(self) -> None:
        """Every second 20 WebSocket pings in one TCP write: the node writes one pong at a time and answers
        the ones that arrived meanwhile once, for the latest (pongs_coalesced)."""
        c = await self.hostile_client("pinger", tag="pinger")
        n = 0
        while await self.sleep(1.0):
            if c.closed.is_set():
                c = await self.hostile_client("pinger", tag="pinger")
            c.write_frames(b"".join(masked_frame(0x9, b"burst-%d-%d" % (n, i)) for i in range(20)))
            n += 1
            self.stats.count("ping_bursts")

    async def stalled_joiner(self) -> None:
        """A client with a tiny receive window stops reading and joins the big doc four times: its snapshot
        catch-up (three ~1 MiB chunks) cannot be written, so each re-join drops the one still queued
        (catchups_replaced). Reading nothing, it misses the hostile node's pings and is closed after two
        (ping_timeout)."""
        await asyncio.wait_for(self.big_doc_ready.wait(), 60)
        while self.running():
            c = await self.hostile_client("stalled", small_rcvbuf=True, tag="stalled", max_size=16 * 1024 * 1024)
            c.reading.clear()
            c.ws.transport.pause_reading()  # answers no pings either
            for i in range(4):  # within the join burst (--presence-burst 5)
                await c.join(BIG_DOC, {"stalled": i})
                if not await self.sleep(0.3):
                    return
            if not await self.sleep(4.0):  # two ping intervals and more
                return
            c.ws.transport.resume_reading()
            c.reading.set()
            try:
                await asyncio.wait_for(c.closed.wait(), 15)
                self.stats.count("stalled_closed")
            except asyncio.TimeoutError:
                self.stats.failure("stalled joiner", AssertionError("not closed after missing pings"))
                await c.close()
            if not await self.sleep(1.0):
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
    parser.add_argument("--hostile", metavar="URL", help="ws://… of a node with tight bounds for the hostile "
                        "clients (see Tests/ops/conftest.py for its flags)")
    args = parser.parse_args()
    started = time.monotonic()
    stats = asyncio.run(LoadGenerator(args.urls, max_seconds=args.seconds, hostile_url=args.hostile).run())
    print(json.dumps(stats.snapshot(), indent=2, sort_keys=True))
    print(f"ran {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
