"""Live traffic for the browser tests: WebSocket clients (asyncio + websockets) on real Tandem nodes.

`LiveTraffic` runs its own event loop in a background thread. Each client connects with a token, joins
one doc, streams presence a few times a second, and (editors) pushes small edits — some with a stale
`append` offset, so the server rebases them and the conflict rate is not always zero. Every client reads
everything the server sends. `storm()` drops many sockets without a close frame and reconnects them with
`?resume=`, which the server counts as reconnects. Everything is bounded and stops with `stop()`.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

import websockets

from harness import make_token


@dataclass
class ClientSpec:
    node: object  # harness.TandemNode
    user: str
    doc: str
    role: str  # "editor" | "viewer"


@dataclass
class Client:
    spec: ClientSpec
    session: Optional[str] = None
    ws: object = None
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    clock: int = 0
    results: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    reconnects: int = 0


class LiveTraffic:
    def __init__(self, specs: list[ClientSpec], presence_hz: float = 4, push_every: float = 1.0):
        self.specs = specs
        self.presence_hz = presence_hz
        self.push_every = push_every
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-traffic", daemon=True)
        self.clients: list[Client] = []
        self.tasks: list[asyncio.Task] = []
        self.stopping = False

    # MARK: lifecycle (called from the test thread)

    def start(self, timeout: float = 20) -> "LiveTraffic":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout)
        return self

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.stopping = True
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def run(self, coroutine, timeout: float):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def storm(self, node, clients: int = 30, rounds: int = 3, doc: str = "storm:room") -> int:
        """Opens `clients` extra sessions on `node`, then `rounds` times drops every socket without a close
        frame and reconnects it with ?resume=SESSION. Returns the reconnects the server acknowledged
        (welcome with resumed: true). The storm clients close cleanly at the end."""
        return self.run(self._storm(node, clients, rounds, doc), timeout=60)

    # MARK: implementation (event loop thread)

    async def _start(self) -> None:
        self.clients = [Client(spec) for spec in self.specs]
        for client in self.clients:
            await self._connect(client)
        await asyncio.wait_for(asyncio.gather(*(c.joined.wait() for c in self.clients)), 15)
        for client in self.clients:
            self.tasks.append(asyncio.create_task(self._presence_loop(client)))
            if client.spec.role == "editor":
                self.tasks.append(asyncio.create_task(self._push_loop(client)))

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            if client.ws is not None:
                try:
                    await asyncio.wait_for(client.ws.close(), 2)
                except Exception:  # noqa: BLE001 - the node may already be gone
                    pass

    def _url(self, client: Client, resume: Optional[str] = None) -> str:
        spec = client.spec
        token = make_token(spec.user, {spec.doc: spec.role, "storm:*": "editor"}, name=spec.user.title())
        url = f"{spec.node.ws_url}?token={quote(token)}"
        if resume:
            url += f"&resume={quote(resume)}"
        return url

    async def _connect(self, client: Client, resume: Optional[str] = None) -> dict:
        client.ws = await websockets.connect(self._url(client, resume), open_timeout=10, max_size=None, ping_interval=None)
        welcome = json.loads(await asyncio.wait_for(client.ws.recv(), 10))
        assert welcome["t"] == "welcome", welcome
        client.session = welcome["session"]
        client.joined.clear()
        self.tasks.append(asyncio.create_task(self._reader(client, client.ws)))
        join = {"t": "join", "doc": client.spec.doc, "state": {"cursor": [0, 0], "user": client.spec.user}}
        if client.clock:
            join["since"] = client.clock
        await client.ws.send(json.dumps(join))
        return welcome

    async def _reader(self, client: Client, ws) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("t")
                if kind == "joined":
                    client.clock = message.get("clock", client.clock)
                    client.joined.set()
                elif kind in ("patch", "result") and "clock" in message:
                    client.clock = max(client.clock, message["clock"])
                    if kind == "result":
                        client.results[message["action"]] = client.results.get(message["action"], 0) + 1
                elif kind == "log":
                    client.clock = max(client.clock, message.get("head", client.clock))
                elif kind == "snapshot":
                    client.clock = max(client.clock, message.get("clock", client.clock))
                elif kind == "error" and message.get("code") != "rate_limited":
                    client.errors.append(message)
        except (websockets.ConnectionClosed, ConnectionError, asyncio.CancelledError):
            pass

    async def _presence_loop(self, client: Client) -> None:
        rng = random.Random(client.spec.user)
        x, y = rng.randint(0, 800), rng.randint(0, 600)
        while not self.stopping:
            await asyncio.sleep(1 / self.presence_hz * rng.uniform(0.8, 1.2))
            x = (x + rng.randint(-20, 20)) % 800
            y = (y + rng.randint(-20, 20)) % 600
            try:
                await client.ws.send(json.dumps({"t": "presence", "doc": client.spec.doc, "state": {"cursor": [x, y]}}))
            except websockets.ConnectionClosed:
                return

    async def _push_loop(self, client: Client) -> None:
        rng = random.Random("push-" + client.spec.user)
        push_id = 0
        while not self.stopping:
            await asyncio.sleep(self.push_every * rng.uniform(0.7, 1.3))
            push_id += 1
            base = client.clock
            if push_id % 3 == 0:
                # Append to a shared string with a guessed offset and a stale base: the offset is usually
                # wrong and others changed the record since `base`, so the server rebases it as a conflict.
                ops = {"shared": ["patch", {"text": ["append", "x", rng.randint(0, 3)]}]}
                base = max(0, client.clock - 10)
            elif push_id == 1:
                ops = {"shared": ["put", {"text": ""}]}
            else:
                ops = {f"cursor-{client.spec.user}": ["put", {"n": push_id, "by": client.spec.user}]}
            try:
                await client.ws.send(json.dumps({"t": "push", "doc": client.spec.doc, "id": push_id, "base": base, "ops": ops}))
            except websockets.ConnectionClosed:
                return

    async def _storm(self, node, count: int, rounds: int, doc: str) -> int:
        specs = [ClientSpec(node, f"storm-{i}", f"{doc}", "editor") for i in range(count)]
        clients = [Client(spec) for spec in specs]
        await asyncio.gather(*(self._connect(c) for c in clients))
        await asyncio.wait_for(asyncio.gather(*(c.joined.wait() for c in clients)), 15)
        resumed = 0
        for _ in range(rounds):
            for c in clients:
                c.ws.transport.abort()  # lost, not closed: no close frame, so the session may be resumed
            welcomes = await asyncio.gather(*(self._connect(c, resume=c.session) for c in clients))
            resumed += sum(1 for w in welcomes if w.get("resumed"))
            await asyncio.wait_for(asyncio.gather(*(c.joined.wait() for c in clients)), 15)
        for c in clients:
            await c.ws.close()
        return resumed


def standard_specs(n1, n2) -> list[ClientSpec]:
    """The tests' steady load: three docs, editors and viewers, on both nodes."""
    specs = []
    for i in range(4):
        specs.append(ClientSpec(n1 if i % 2 == 0 else n2, f"alice{i}", "board:alpha", "editor"))
    for i in range(2):
        specs.append(ClientSpec(n1 if i == 0 else n2, f"victor{i}", "board:alpha", "viewer"))
    for i in range(3):
        specs.append(ClientSpec(n1, f"bob{i}", "board:beta", "editor"))
    specs.append(ClientSpec(n2, "bob-remote", "board:beta", "viewer"))
    for i in range(2):
        specs.append(ClientSpec(n2, f"carol{i}", "notes:gamma", "editor"))
    return specs
