"""Processes for the browser tests: a private redis-server, Tandem nodes, tokens and small helpers.

Everything listens on 127.0.0.1 only, on ports the OS picks; every process is stopped by the fixture
that started it, on failure too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import requests

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
JWT_SECRET = "tandem-browser-tests-secret-0123456789abcdef"  # HS256 wants at least 32 bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1, message: str = "condition"):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - reported below if it never succeeds
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}" + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(user: str, docs: dict[str, str], name: Optional[str] = None, ttl: int = 3600, secret: str = JWT_SECRET) -> str:
    """An HS256 access token with Tandem's claims (sub, name, exp, docs)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": user, "exp": int(time.time()) + ttl, "docs": docs}
    if name:
        claims["name"] = name
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class RedisServer:
    def __init__(self, name: str = "redis"):
        self.port = free_port()
        self.log_path = ARTIFACTS / "logs" / f"{name}-{self.port}.log"
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._ping, 10, message=f"redis-server on port {self.port}")
        return self

    def _ping(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.log_path}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def stop_process(process: Optional[subprocess.Popen], timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def tandem_binary() -> Path:
    configured = os.environ.get("TANDEM_BIN")
    path = Path(configured) if configured else REPO / ".build" / "debug" / "tandem"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `swift build --product tandem` first (or set TANDEM_BIN)")
    return path


class TandemNode:
    """One `tandem serve` process. `restart()` keeps the client and ops ports."""

    LISTENING = re.compile(r"ops\.port=(\d+).*\bport=(\d+).*listening")

    def __init__(self, node_id: str, redis: RedisServer, web_root: Path, extra: Optional[list[str]] = None,
                 jwt: bool = True):
        self.node_id = node_id
        self.redis = redis
        self.web_root = web_root
        self.extra = list(extra or [])
        self.jwt = jwt
        self.ops_port = 0
        self.ws_port = 0
        self.process: Optional[subprocess.Popen] = None
        self.log_path = ARTIFACTS / "logs" / f"tandem-{node_id}.log"
        self._reader: Optional[threading.Thread] = None
        self._ready = threading.Event()

    def command(self) -> list[str]:
        args = [str(tandem_binary()), "serve", "--host", "127.0.0.1", "--port", str(self.ws_port),
                "--ops-host", "127.0.0.1", "--ops-port", str(self.ops_port), "--redis", self.redis.url,
                "--node-id", self.node_id, "--web-root", str(self.web_root)]
        if self.jwt:
            args += ["--jwt-secret", JWT_SECRET]
        return args + self.extra

    def start(self, timeout: float = 30) -> "TandemNode":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            env={**os.environ, "TANDEM_LOG_LEVEL": os.environ.get("TANDEM_LOG_LEVEL", "info")})
        self._reader = threading.Thread(target=self._read_log, args=(self.process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None:
                raise RuntimeError(f"tandem {self.node_id} exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"tandem {self.node_id} did not log 'listening' within {timeout}s; see {self.log_path}")
        return self

    def _read_log(self, process: subprocess.Popen) -> None:
        with open(self.log_path, "ab") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                match = self.LISTENING.search(line.decode(errors="replace"))
                if match:
                    self.ops_port, self.ws_port = int(match.group(1)), int(match.group(2))
                    self._ready.set()

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self, timeout: float = 30) -> "TandemNode":
        """Starts again on the same ports (retrying briefly if a port is still held)."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start(timeout=max(1.0, deadline - time.monotonic()))
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/ws"

    def status(self) -> dict:
        response = requests.get(f"{self.ops_url}/api/status", timeout=3)
        response.raise_for_status()
        return response.json()
