"""Yjs clients no one here wrote, against real Tandem nodes and a real Redis (issue 10, item 5).

The clients are pycrdt (yrs) documents synced by pycrdt's own `Provider` (the y-websocket sync protocol
as pycrdt and pycrdt-websocket implement it) over `websockets`. Where the provider has nothing to offer
(a raw step 1 to look at the step 2 it gets), a few lines of y-protocols over `websockets` do it, with
pycrdt's own encoders.

Every wait is bounded polling; every process is stopped by its own pid (Tests/ops/tandem_stack.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pycrdt import Array, Awareness, Channel, Doc, Map, Provider, Text
from pycrdt._sync import (
    YMessageType, YSyncMessageType, create_awareness_message, create_sync_step1_message, read_message,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))

from tandem_stack import (  # noqa: E402
    ManagedProcess, TandemNode, find_tandem_binary, free_port, require_tool, start_tandem, stop_on_error, wait_for,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "yjs"


class WebSocketChannel(Channel):
    """pycrdt's `Channel` over a `websockets` client connection."""

    def __init__(self, websocket, path: str):
        self._websocket = websocket
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration() from None

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._websocket.send(message)

    async def recv(self) -> bytes:
        return bytes(await self._websocket.recv())


class Peer:
    """One editor: a pycrdt Doc with a Y.Text, a Y.Array and a Y.Map, connected through a Provider."""

    def __init__(self, name: str):
        self.name = name
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.array = self.doc.get("array", type=Array)
        self.map = self.doc.get("map", type=Map)
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self.websocket = None
        self.edits = 0

    async def connect(self, url: str) -> None:
        """Connects and waits for the first sync. The provider runs in its own task, which owns its
        context managers (anyio cancel scopes must be exited by the task that entered them)."""
        synced = asyncio.Event()
        self._stop = asyncio.Event()

        async def run() -> None:
            async with connect(url, max_size=None) as websocket:
                self.websocket = websocket
                async with Provider(self.doc, WebSocketChannel(websocket, url)) as provider:
                    await provider.synced.wait()
                    synced.set()
                    await self._stop.wait()

        self._task = asyncio.create_task(run())
        done, _ = await asyncio.wait([self._task, asyncio.create_task(synced.wait())], timeout=20,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            self._task.result()  # raises what ended it
        assert synced.is_set(), f"{self.name} did not sync with {url}"

    async def disconnect(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 10)
        self._task = None

    def edit(self, rng: random.Random) -> None:
        """One random edit of one of the three types (insert or delete text, insert into or delete from
        the array, set or delete a map key); each insert carries a marker naming who made it."""
        self.edits += 1
        marker = f"<{self.name}.{self.edits}>"
        kind = rng.randrange(6)
        with self.doc.transaction():
            if kind == 0 or kind == 1:
                self.text.insert(rng.randint(0, len(str(self.text))) if kind == 0 else len(str(self.text)), marker)
            elif kind == 2 and len(self.array) > 0:
                del self.array[rng.randrange(len(self.array))]
            elif kind == 2 or kind == 3:
                self.array.insert(rng.randint(0, len(self.array)), marker)
            elif kind == 4:
                self.map[f"{self.name}.{rng.randrange(5)}"] = marker
            else:
                length = len(str(self.text))
                if length > 10:
                    # Delete whole markers' worth at a marker boundary, so UTF-8 offsets stay valid.
                    start = str(self.text).find("<", rng.randrange(length))
                    if start >= 0:
                        end = str(self.text).find(">", start)
                        del self.text[start:end + 1]
                else:
                    self.map[f"{self.name}.{rng.randrange(5)}"] = None

    def content(self) -> tuple:
        return (str(self.text), self.array.to_py(), self.map.to_py())


def yjs_url(node: TandemNode, room: str, user: str) -> str:
    return f"ws://127.0.0.1:{node.ws_port}/yjs/{room}?user={user}&name={user}"


class Stack:
    """redis-server (AOF on, a fixed port and directory so it can be restarted) and Tandem nodes."""

    def __init__(self, work: Path):
        self.work = work
        self.redis_port = free_port()
        self.redis: ManagedProcess | None = None
        self.nodes: list[TandemNode] = []

    def start_redis(self) -> None:
        (self.work / "redis").mkdir(exist_ok=True)
        self.redis = ManagedProcess(
            "redis", [require_tool("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                      "--dir", str(self.work / "redis"), "--appendonly", "yes", "--appendfsync", "always",
                      "--save", ""],
            ARTIFACTS / "redis.log").start()
        with stop_on_error(self.redis):
            def ping() -> bool:
                import socket
                self.redis.assert_alive()
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            wait_for("redis-server to answer PING", ping, timeout=15)

    def start_node(self, name: str, *extra: str) -> TandemNode:
        node = start_tandem(find_tandem_binary(), name, self.redis_port, ARTIFACTS, ["--yjs-update-rate", "1000", *extra])
        self.nodes.append(node)
        return node

    def stop_nodes(self) -> None:
        for node in self.nodes:
            node.process.stop()
        self.nodes = []

    def stop(self) -> None:
        self.stop_nodes()
        if self.redis:
            self.redis.stop()


@pytest.fixture
def stack():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tandem-yjs-"))
    stack = Stack(work)
    try:
        stack.start_redis()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


async def wait_until(what: str, probe, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def converged(peers: list[Peer], what: str) -> tuple:
    def same() -> bool:
        first = peers[0].content()
        return all(peer.content() == first for peer in peers[1:])
    try:
        await wait_until(what, same)
    except AssertionError:
        detail = "\n".join(f"{peer.name}: {peer.content()}" for peer in peers)
        raise AssertionError(f"{what}: not converged\n{detail}") from None
    return peers[0].content()


async def raw_step2(url: str, state_vector: bytes = b"\x00") -> list[bytes]:
    """Connects with a bare y-protocols client, sends a step 1 and returns the step 2 payloads it gets
    (the server's own step 1 is left unanswered)."""
    step2s: list[bytes] = []
    async with connect(url, max_size=None) as websocket:
        await websocket.send(create_sync_step1_message(state_vector))
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                message = bytes(await asyncio.wait_for(websocket.recv(), 1.0))
                if message[0] == YMessageType.SYNC and message[1] == YSyncMessageType.SYNC_STEP2:
                    step2s.append(read_message(message[2:]))
    return step2s


def test_pycrdt_providers_on_two_nodes_converge_and_the_room_survives_restarts(stack: Stack):
    asyncio.run(scenario(stack))


async def scenario(stack: Stack) -> None:
    rng = random.Random(10)
    room = "interop:doc"
    a, b = stack.start_node("ya"), stack.start_node("yb")
    peers = [Peer(f"p{i}") for i in range(4)]
    for i, peer in enumerate(peers):
        await peer.connect(yjs_url([a, b][i % 2], room, peer.name))

    # Concurrent edits on both nodes: every peer edits without waiting for the others.
    for _ in range(30):
        for peer in peers:
            peer.edit(rng)
        await asyncio.sleep(0.01)
    online = await converged(peers, "4 peers on 2 nodes")
    assert online[0] and online[1] and online[2], online

    # Two peers go offline and edit; the others keep editing; they come back (to the other node).
    await peers[0].disconnect()
    await peers[1].disconnect()
    for _ in range(15):
        for peer in peers:
            peer.edit(rng)
        await asyncio.sleep(0.01)
    # Edits nobody else touches (keys no random edit uses), made while offline.
    peers[0].map["offline-p0"] = "kept"
    peers[1].map["offline-p1"] = str(peers[1].text)[:20]
    await peers[0].connect(yjs_url(b, room, "p0"))
    await peers[1].connect(yjs_url(a, room, "p1"))
    for _ in range(5):
        for peer in peers:
            peer.edit(rng)
        await asyncio.sleep(0.01)
    content = await converged(peers, "after offline edits and reconnects")
    # The offline edits made it to everyone.
    assert content[2]["offline-p0"] == "kept"
    assert "offline-p1" in content[2]

    # A late joiner gets the whole document in one step 2 (merged: not the update history).
    late = Peer("late")
    await late.connect(yjs_url(b, room, "late"))
    await converged([peers[0], late], "late joiner")
    step2s = await raw_step2(yjs_url(a, room, "raw"))
    assert len(step2s) == 1
    fresh = Doc()
    fresh.apply_update(step2s[0])
    assert (str(fresh.get("text", type=Text)), fresh.get("array", type=Array).to_py(),
            fresh.get("map", type=Map).to_py()) == content
    assert len(step2s[0]) <= 2 * len(peers[0].doc.get_update()) + 64
    # What a client that has everything lacks: nothing but the delete set.
    up_to_date = await raw_step2(yjs_url(a, room, "raw2"), peers[0].doc.get_state())
    check = Doc()
    check.apply_update(peers[0].doc.get_update())
    check.apply_update(up_to_date[0])
    assert str(check.get("text", type=Text)) == content[0]

    for peer in [*peers, late]:
        await peer.disconnect()

    # Restart everything: Tandem (both nodes) and its Redis (AOF). The room is still there.
    stack.stop_nodes()
    stack.redis.stop()
    stack.start_redis()
    c = stack.start_node("yc")
    again = Peer("again")
    await again.connect(yjs_url(c, room, "again"))
    assert again.content() == content
    await again.disconnect()


def metric(node: TandemNode, name: str) -> float:
    """One sample of the node's /metrics (0 if absent)."""
    import urllib.request
    with urllib.request.urlopen(f"{node.ops_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_burst_of_concurrent_edits_converges_through_merged_relays(stack: Stack):
    asyncio.run(burst_scenario(stack))


async def burst_scenario(stack: Stack) -> None:
    """--yjs-relay-ms at its widest: every peer edits in a burst, so the nodes relay merged updates (Tandem's
    mergeUpdates of several clients' updates); pycrdt applying them converges on the same content."""
    rng = random.Random(11)
    room = "interop:burst"
    a, b = stack.start_node("ba", "--yjs-relay-ms", "100"), stack.start_node("bb", "--yjs-relay-ms", "100")
    peers = [Peer(f"q{i}") for i in range(4)]
    for i, peer in enumerate(peers):
        await peer.connect(yjs_url([a, b][i % 2], room, peer.name))
    for _ in range(3):
        for _ in range(20):
            for peer in peers:
                peer.edit(rng)
        await asyncio.sleep(0)
    content = await converged(peers, "a burst on 2 nodes")
    assert content[0] and content[1] and content[2], content
    assert metric(a, "tandem_yjs_coalesced_updates_total") + metric(b, "tandem_yjs_coalesced_updates_total") > 0
    # A late joiner's step 2 holds the same document.
    late = Peer("late")
    await late.connect(yjs_url(b, room, "late"))
    await converged([peers[0], late], "late joiner after the burst")
    for peer in [*peers, late]:
        await peer.disconnect()


class AwarenessClient:
    """The provider has no awareness: a bare y-protocols client over `websockets` with pycrdt's own
    `Awareness` (its encoder, and y-protocols' rules for applying updates)."""

    def __init__(self, url: str):
        self.url = url
        self.doc = Doc()
        self.awareness = Awareness(self.doc)
        self.websocket = None
        self._reader: asyncio.Task | None = None

    async def connect(self) -> None:
        self.websocket = await connect(self.url, max_size=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.websocket:
                message = bytes(message)
                if message[0] == YMessageType.AWARENESS:
                    self.awareness.apply_awareness_update(read_message(message[1:]), "remote")

    async def publish(self, state: dict) -> None:
        self.awareness.set_local_state(state)
        update = self.awareness.encode_awareness_update([self.awareness.client_id])
        await self.websocket.send(create_awareness_message(update))

    def die(self) -> None:
        """The client's machine goes away: the TCP connection is dropped without a close frame."""
        self.websocket.transport.abort()

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.websocket.close()


def test_awareness_appears_on_the_other_node_and_is_removed_when_its_client_dies(stack: Stack):
    asyncio.run(awareness_scenario(stack))


async def awareness_scenario(stack: Stack) -> None:
    room = "interop:awareness"
    a, b = stack.start_node("aa"), stack.start_node("ab")
    alice = AwarenessClient(yjs_url(a, room, "alice"))
    bob = AwarenessClient(yjs_url(b, room, "bob"))
    await alice.connect()
    await bob.connect()
    await alice.publish({"user": {"name": "alice", "color": "#f00"}, "cursor": {"index": 3}})
    await wait_until("bob's Awareness has alice", lambda: bob.awareness.states.get(alice.awareness.client_id)
                     == {"user": {"name": "alice", "color": "#f00"}, "cursor": {"index": 3}})
    await bob.publish({"user": {"name": "bob"}})
    await wait_until("alice's Awareness has bob", lambda: alice.awareness.client_id in alice.awareness.states
                     and bob.awareness.client_id in alice.awareness.states)
    alice.die()
    # Removed (clock + 1, state null) well within the node's presence TTL plus a sweep.
    await wait_until("bob's Awareness drops alice", lambda: alice.awareness.client_id not in bob.awareness.states,
                     timeout=10)
    await bob.close()
    await alice.close()
