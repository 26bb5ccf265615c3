"""pycrdt-websocket's WebsocketServer on `websockets`, as its documentation serves it: the peer Tandem's
/yjs endpoint is compared with (scripts/bench.sh yjs-compare, docs/benchmarks.md). One room per URL path,
kept in memory (no YStore), one Python process.

    .venv/bin/python scripts/pycrdt-websocket-server.py PORT

Prints "listening on PORT" once it accepts connections; runs until SIGTERM/SIGINT.
"""
from __future__ import annotations

import asyncio
import signal
import sys

from pycrdt import Channel
from pycrdt.websocket import WebsocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class WebsocketChannel(Channel):
    """pycrdt's `Channel` over a `websockets` server connection (what pycrdt-websocket's docs pass to
    `WebsocketServer.serve`; the new `websockets` API names the path `request.path`)."""

    def __init__(self, websocket: ServerConnection):
        self._websocket = websocket
        self._path = websocket.request.path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration() from None

    async def send(self, message: bytes) -> None:
        try:
            await self._websocket.send(message)
        except ConnectionClosed:
            pass

    async def recv(self) -> bytes:
        return bytes(await self._websocket.recv())


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with WebsocketServer() as websocket_server:

        async def handler(websocket: ServerConnection) -> None:
            await websocket_server.serve(WebsocketChannel(websocket))

        # No message size limit beyond the default 1 MiB, no compression: as Tandem's endpoint.
        async with serve(handler, "127.0.0.1", port, compression=None):
            print(f"listening on {port}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
