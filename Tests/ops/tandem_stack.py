"""Processes for the ops checks: redis-server, Tandem nodes and Prometheus, each logging to a file.

Every wait here is bounded polling with a deadline; every process is stopped by its own pid.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TypeVar

import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = REPO_ROOT / "Grafana"
ARTIFACTS_DIR = Path(os.environ.get("TANDEM_OPS_ARTIFACTS", REPO_ROOT / "test-artifacts" / "prometheus"))

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


class ProcessDied(AssertionError):
    """A child process exited while we were waiting on it: no point waiting any longer."""


def wait_for(what: str, probe: Callable[[], Optional[T]], timeout: float, interval: float = 0.25) -> T:
    """Calls `probe` until it returns something truthy (returned) or `timeout` seconds pass (raises).

    Exceptions from `probe` count as "not yet"; the last one is named in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except ProcessDied:
            raise
        except Exception as error:  # noqa: BLE001 - reported below if it never succeeds
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tandem_binary() -> Path:
    configured = os.environ.get("TANDEM_BIN")
    candidates = [Path(configured)] if configured else [
        REPO_ROOT / ".build" / "debug" / "tandem",
        REPO_ROOT / ".build" / "release" / "tandem",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "no tandem binary: run `swift build --product tandem` in the repo root (or set TANDEM_BIN); looked at "
        + ", ".join(str(c) for c in candidates))


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise FileNotFoundError(f"{name} is not on PATH (Debian: apt-get install {name_to_package(name)})")
    return path


def name_to_package(name: str) -> str:
    return {"redis-server": "redis-server", "prometheus": "prometheus", "promtool": "prometheus"}.get(name, name)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the test process dies (Linux only; best effort)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class ManagedProcess:
    """A child process whose stdout and stderr go to `log_path`."""

    name: str
    argv: list[str]
    log_path: Path
    cwd: Optional[Path] = None
    popen: Optional[subprocess.Popen] = None
    exit_code: Optional[int] = None
    _log: object = field(default=None, repr=False)

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self._log.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(self.cwd) if self.cwd else None, preexec_fn=_die_with_parent)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def assert_alive(self) -> None:
        if not self.alive():
            tail = "\n".join(self.log_text().splitlines()[-30:])
            raise ProcessDied(f"{self.name} exited with {self.popen.returncode if self.popen else None}; "
                              f"log {self.log_path}:\n{tail}")

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code (negative: killed by a signal)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self.exit_code = self.popen.returncode
        if self._log:
            self._log.close()
            self._log = None
        return self.exit_code


@contextlib.contextmanager
def stop_on_error(proc: ManagedProcess):
    """Stops `proc` if start-up fails after it was spawned (the caller never gets it to clean up)."""
    try:
        yield
    except BaseException:
        proc.stop(timeout=5)
        raise


def start_redis(log_dir: Path) -> tuple[ManagedProcess, int]:
    """redis-server on a free port (a new port if another process took it between probe and bind)."""
    for attempt in range(3):
        try:
            return _start_redis_once(log_dir)
        except ProcessDied:
            if attempt == 2 or "Address already in use" not in (log_dir / "redis.log").read_text(errors="replace"):
                raise
    raise AssertionError("unreachable")


# The test Redis has a maxmemory, as docs/operations.md asks of every Tandem Redis, so the Redis memory
# panels and TandemRedisMemoryHigh have a denominator (with none they stay empty by design).
REDIS_MAXMEMORY = "256mb"


def _start_redis_once(log_dir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess(
        "redis", [require_tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "noeviction"],
        log_dir / "redis.log").start()

    def ping() -> bool:
        proc.assert_alive()
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    with stop_on_error(proc):
        wait_for("redis-server to answer PING", ping, timeout=15)
    return proc, port


def redis_command(port: int, *args: str) -> bytes:
    """Sends one command to the Redis on `port` (RESP) and returns its reply line, e.g. b"+OK" or b":1".
    For commands with a one-line reply (SET, DEL, EXPIRE): the tests need no more, so no client library."""
    request = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    if reply.startswith(b"-"):
        raise AssertionError(f"Redis refused {args}: {reply!r}")
    return reply.rstrip(b"\r\n")


@dataclass
class TandemNode:
    name: str
    process: ManagedProcess
    ws_port: int
    ops_port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/ws"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.ops_port}"


_PORT_RE = re.compile(r"(?<![\w.])port=(\d+)")
_OPS_PORT_RE = re.compile(r"ops\.port=(\d+)")


def start_tandem(binary: Path, name: str, redis_port: int, log_dir: Path, extra_args: list[str]) -> TandemNode:
    argv = [str(binary), "serve", "--host", "127.0.0.1", "--port", "0", "--ops-port", "0",
            "--redis", f"redis://127.0.0.1:{redis_port}", "--node-id", name, *extra_args]
    proc = ManagedProcess(f"tandem {name}", argv, log_dir / f"tandem-{name}.log", cwd=log_dir).start()

    def listening() -> Optional[tuple[int, int]]:
        proc.assert_alive()
        for line in proc.log_text().splitlines():
            if "listening" in line and "ops.port=" in line:
                ops = _OPS_PORT_RE.search(line)
                ws = _PORT_RE.search(line.replace(ops.group(0), "")) if ops else None
                if ops and ws:
                    return int(ws.group(1)), int(ops.group(1))
        return None

    with stop_on_error(proc):
        ws_port, ops_port = wait_for(f"tandem node {name} to log its ports", listening, timeout=30)
        node = TandemNode(name, proc, ws_port, ops_port)

        def ready() -> bool:
            proc.assert_alive()
            return requests.get(node.ops_url + "/readyz", timeout=2).status_code == 200

        wait_for(f"{name} /readyz", ready, timeout=20)
    return node


def prometheus_config(nodes: list[TandemNode], rules_path: Path) -> dict:
    """Grafana/prometheus.yml with the real ops ports, 1 s intervals and an absolute rule path.

    The shipped example is the template, so the test also proves its job name and rule wiring.
    """
    template = yaml.safe_load((GRAFANA_DIR / "prometheus.yml").read_text())
    config = copy.deepcopy(template)
    config.setdefault("global", {})
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    jobs = [job for job in config.get("scrape_configs", []) if job.get("job_name") == "tandem"]
    if len(jobs) != 1:
        raise AssertionError("Grafana/prometheus.yml must have exactly one scrape job named 'tandem'")
    job = jobs[0]
    job.pop("scrape_interval", None)
    job.pop("scrape_timeout", None)
    job["static_configs"] = [{"targets": [n.target for n in nodes]}]
    # Only the tandem job: the example's other jobs (if any) point at hosts that do not exist here.
    config["scrape_configs"] = [job]
    config.pop("alerting", None)
    config.pop("remote_write", None)
    config["rule_files"] = [str(rules_path)]
    return config


@dataclass
class Prometheus:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params) -> dict:
        response = requests.get(self.url + "/api/v1/" + path, params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(params.get("query", path), body.get("errorType"), body.get("error"))
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PromQLError(expr, "unexpected", f"resultType {data['resultType']}")
        return data["result"]


class PromQLError(AssertionError):
    def __init__(self, expr: str, error_type: Optional[str], error: Optional[str]):
        super().__init__(f"Prometheus rejected query ({error_type}): {error}\n  expr: {expr}")
        self.expr = expr
        self.error_type = error_type
        self.error = error


def start_prometheus(nodes: list[TandemNode], work_dir: Path, log_dir: Path) -> Prometheus:
    """Prometheus on a free port (a new port if another process took it between probe and bind)."""
    for attempt in range(3):
        try:
            return _start_prometheus_once(nodes, work_dir, log_dir)
        except ProcessDied:
            if attempt == 2 or "address already in use" not in (log_dir / "prometheus.log").read_text(
                    errors="replace").lower():
                raise
    raise AssertionError("unreachable")


def _start_prometheus_once(nodes: list[TandemNode], work_dir: Path, log_dir: Path) -> Prometheus:
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(nodes, (GRAFANA_DIR / "alerts.yml").resolve()),
                                          sort_keys=False))
    shutil.copy(config_path, log_dir / "prometheus.generated.yml")
    port = free_port()
    data_dir = work_dir / "tsdb"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    proc = ManagedProcess(
        "prometheus",
        [require_tool("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={data_dir}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h", "--log.level=info"],
        log_dir / "prometheus.log", cwd=work_dir).start()
    prom = Prometheus(proc, port)

    def ready() -> bool:
        proc.assert_alive()
        return requests.get(prom.url + "/-/ready", timeout=2).status_code == 200

    with stop_on_error(proc):
        wait_for("Prometheus /-/ready", ready, timeout=30)
    return prom
