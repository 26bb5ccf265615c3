#!/usr/bin/env python3
"""Floods a real Tandem node (JWT mode, its own redis-server) with the attacks of issue 7 and reports, for
each: the node's RSS before, at peak and after, whether a legitimate client could still connect, join and
see another client's presence during the flood, /healthz latency during it, and what the attacker got.

    .venv/bin/python scripts/floods.py [--tandem .build/release/tandem] [--markdown]

The figures in docs/security.md come from this script. It needs redis-server and a built `tandem`.
"""

import argparse
import base64
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from websockets.sync.client import connect as ws_connect

SECRET = "floods-secret-0123456789abcdef0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Node:
    def __init__(self, tandem, extra=()):
        self.redis_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="floods-")
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        secret_file = os.path.join(self.dir, "secret")
        with open(secret_file, "w") as f:
            f.write(SECRET)
        os.chmod(secret_file, 0o600)
        self.port, self.ops = free_port(), free_port()
        self.tandem = tandem
        self.proc = subprocess.Popen(
            [tandem, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--ops-port", str(self.ops),
             "--redis", f"redis://127.0.0.1:{self.redis_port}", "--jwt-secret-file", secret_file, "--node-id", "flood",
             "--log-level", "error", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("node did not become ready")

    def get(self, path, timeout=5):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ops}{path}", timeout=timeout) as r:
            return r.status, r.read()

    def token(self, user, docs="*=editor"):
        out = subprocess.run(
            [self.tandem, "token", "--user", user, "--doc", docs, "--ttl", "1h"],
            env={**os.environ, "TANDEM_JWT_SECRET": SECRET}, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def ws_url(self, token):
        return f"ws://127.0.0.1:{self.port}/v1/ws?token={token}"

    def stop(self):
        for p in (self.proc, self.redis):
            p.send_signal(signal.SIGTERM)
        for p in (self.proc, self.redis):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def legit_check(node, doc="legit"):
    """Two fresh clients join one doc; True when each sees the other's presence within 5 s."""
    try:
        a = ws_connect(node.ws_url(node.token("legit-a")), open_timeout=5)
        b = ws_connect(node.ws_url(node.token("legit-b")), open_timeout=5)
    except Exception:
        return False
    try:
        for c in (a, b):
            json.loads(c.recv(timeout=5))  # welcome
            c.send(json.dumps({"t": "join", "doc": doc, "state": {"cursor": [1, 2]}}))
        deadline = time.time() + 5
        seen = False
        while time.time() < deadline and not seen:
            try:
                m = json.loads(a.recv(timeout=max(0.05, deadline - time.time())))
            except TimeoutError:
                break
            entries = m.get("presence", []) + m.get("joined", []) + m.get("updated", [])
            seen = any(e.get("user") == "legit-b" for e in entries)
        return seen
    except Exception:
        return False
    finally:
        for c in (a, b):
            try:
                c.close()
            except Exception:
                pass


def healthz_latencies(node, stop, out):
    while not stop.is_set():
        t = time.perf_counter()
        try:
            node.get("/healthz", timeout=5)
            out.append((time.perf_counter() - t) * 1000)
        except Exception:
            out.append(None)
        time.sleep(0.1)


def ws_handshake(sock, path):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def frame(opcode, payload):
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_client(node, user):
    s = socket.create_connection(("127.0.0.1", node.port))
    status = ws_handshake(s, f"/v1/ws?token={node.token(user)}")
    if "101" not in status:
        raise RuntimeError(status)
    return s


# Floods: each returns a short description of what the attacker got.

def flood_idle_sockets(node, n=2000):
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", node.port), timeout=2))
        except OSError:
            break
    time.sleep(1)
    mid = open_fds(node.proc.pid)
    deadline = time.time() + 20
    closed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            if s.recv(1) == b"":
                closed += 1
        except (socket.timeout, OSError):
            pass
        s.close()
    return f"{len(socks)} sockets opened (node fds {mid} at peak); {closed} closed by the node within the handshake timeout"


def flood_junk_handshakes(node, seconds=10, rate=600):
    codes = {}
    end = time.time() + seconds
    while time.time() < end:
        t0 = time.time()
        for _ in range(rate // 10):
            try:
                s = socket.create_connection(("127.0.0.1", node.port), timeout=2)
                line = ws_handshake(s, "/v1/ws?token=not-a-token")
                code = line.split(" ")[1] if " " in line else "closed"
                codes[code] = codes.get(code, 0) + 1
                s.close()
            except OSError:
                codes["error"] = codes.get("error", 0) + 1
        time.sleep(max(0, 0.1 - (time.time() - t0)))
    return "junk handshakes answered " + ", ".join(f"{k}×{v}" for k, v in sorted(codes.items()))


def flood_pings(node, n=60000):
    s = raw_client(node, "pinger")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    batch = frame(0x9, b"x" * 100) * 100
    sent = 0
    try:
        s.settimeout(10)
        for _ in range(n // 100):
            s.sendall(batch)
            sent += 100
    except OSError:
        pass
    time.sleep(1)
    s.close()
    return f"{sent} pings sent by a client that never reads"


def flood_joins(node, n=3000):
    s = raw_client(node, "joiner")
    errors = 0
    for i in range(n):
        s.sendall(frame(0x1, json.dumps({"t": "join", "doc": f"flood-{i}"}).encode()))
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.count(b"too_many_docs") + data.count(b"rate_limited") >= n - 100:
                break
    except (socket.timeout, OSError):
        pass
    errors = data.count(b"too_many_docs")
    s.close()
    return f"{n} joins of different docs: {errors} answered too_many_docs"


def flood_messages(node, seconds=8):
    s = raw_client(node, "flooder")
    msg = frame(0x1, b'{"t":"ping"}')
    end, sent, closed = time.time() + seconds, 0, False
    threading.Thread(target=lambda: _drain(s), daemon=True).start()
    try:
        while time.time() < end:
            s.sendall(msg * 200)
            sent += 200
    except OSError:
        closed = True
    s.close()
    return f"{sent} messages in {seconds} s; {'closed by the node' if closed else 'still open'}"


def _drain(s):
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


def flood_sync_no_read(node, n=4000):
    s = raw_client(node, "syncer")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # A doc with content so every sync reply has bytes.
    w = ws_connect(node.ws_url(node.token("writer")), open_timeout=5)
    json.loads(w.recv(timeout=5))
    w.send(json.dumps({"t": "join", "doc": "big"}))
    for i in range(200):
        w.send(json.dumps({"t": "push", "doc": "big", "id": i, "base": 0, "ops": {f"r{i}": ["put", {"v": "x" * 2000}]}}))
    time.sleep(2)
    w.close()
    s.sendall(frame(0x1, json.dumps({"t": "join", "doc": "big"}).encode()))
    time.sleep(0.5)
    sent = 0
    try:
        s.settimeout(10)
        for i in range(n):
            s.sendall(frame(0x1, json.dumps({"t": "sync", "doc": "big", "from": 0, "limit": 5000}).encode()))
            sent += 1
    except OSError:
        pass
    time.sleep(3)
    s.close()
    return f"{sent} sync requests for a 400 KB doc from a client that never reads"


def flood_ops_connections(node, n=1024):
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", node.ops), timeout=2))
        except OSError:
            break
    time.sleep(1)
    lat = []
    for _ in range(50):
        t = time.perf_counter()
        try:
            node.get("/healthz", timeout=5)
            lat.append((time.perf_counter() - t) * 1000)
        except Exception:
            lat.append(None)
    for s in socks:
        s.close()
    ok = [x for x in lat if x is not None]
    return (f"{len(socks)} idle ops connections held; /healthz {len(ok)}/50 answered, "
            f"p50 {statistics.median(ok):.2f} ms, max {max(ok):.2f} ms" if ok else "no /healthz answered")


FLOODS = [
    ("2,000 idle sockets before the upgrade", flood_idle_sockets),
    ("600 junk handshakes/s for 10 s", flood_junk_handshakes),
    ("ping flood, never reading", flood_pings),
    ("3,000 joins on one connection", flood_joins),
    ("message flood", flood_messages),
    ("sync flood, never reading", flood_sync_no_read),
    ("1,024 idle ops connections", flood_ops_connections),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tandem", default=".build/release/tandem")
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    node = Node(args.tandem)
    rows = []
    try:
        baseline = rss_kb(node.proc.pid)
        for name, flood in FLOODS:
            if args.only and args.only not in name:
                continue
            before = rss_kb(node.proc.pid)
            peak = [before]
            stop = threading.Event()
            lat = []

            def sample():
                while not stop.is_set():
                    peak.append(rss_kb(node.proc.pid))
                    time.sleep(0.1)

            threads = [threading.Thread(target=sample, daemon=True),
                       threading.Thread(target=healthz_latencies, args=(node, stop, lat), daemon=True)]
            for t in threads:
                t.start()
            result = {}
            worker = threading.Thread(target=lambda: result.setdefault("what", flood(node)), daemon=True)
            worker.start()
            time.sleep(1.5)
            legit = legit_check(node)
            worker.join(timeout=120)
            stop.set()
            for t in threads:
                t.join()
            time.sleep(3)
            after = rss_kb(node.proc.pid)
            alive = node.proc.poll() is None
            ok = [x for x in lat if x is not None]
            rows.append((name, before / 1024, max(peak) / 1024, after / 1024, legit, alive,
                         (max(ok) if ok else float("nan")), len(lat) - len(ok), result.get("what", "(timed out)")))
            if not alive:
                break
        print(f"baseline RSS {baseline / 1024:.1f} MB")
        print("| flood | RSS before → peak → after (MB) | legit client during | node alive | /healthz max (failed) | what the attacker got |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, b, p, a, legit, alive, hmax, hfail, what in rows:
            print(f"| {name} | {b:.1f} → {p:.1f} → {a:.1f} | {'yes' if legit else 'NO'} | {'yes' if alive else 'NO'} | "
                  f"{hmax:.1f} ms ({hfail}) | {what} |")
    finally:
        node.stop()
    return 0 if all(r[4] and r[5] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
