#!/usr/bin/env python3
"""How fast `/at` reads the past of a big doc (issue 15: p99 <= 50 ms for a doc of 1,000 records with
100,000 commits of history). Run by `scripts/bench.sh history-at` against a node it started:

    scripts/history-at.py WS_PORT OPS_PORT REDIS_PORT [--records 1000] [--commits 100000] [--reads 500]

1. Builds the doc through the protocol like any client: one push puts `--records` records (100 at a
   time), then `--commits` pushes each patch one field of a random record (32 in flight, one connection,
   `presence: none`).
2. Waits until the sealer has sealed all but the live tail (`tandem:{D}:hsealed`, read from Redis).
3. Reads `GET /api/docs/{D}/at?clock=N` `--reads` times at uniformly random clocks 1..head, one at a
   time on one keep-alive connection, and reports the latency (client side: request sent to body read)
   and the work per read from the node's metrics: commits replayed
   (`tandem_history_replayed_commits_total`) and segments decompressed
   (`tandem_history_read_segments_total`) per read.
Only the standard library: a small WebSocket client (RFC 6455, client frames masked) and a RESP reader.
"""
import argparse
import base64
import http.client
import json
import os
import random
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module  # noqa: E402

Redis = import_module("history-bytes").Redis


class WebSocket:
    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 256 else _mask(data, mask)
        self.sock.sendall(header + mask + masked)

    def messages(self):
        """Text messages received so far (blocks until at least one)."""
        out = []
        while not out:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
            while True:
                if len(self.buf) < 2:
                    break
                opcode, n, at = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
                if n == 126:
                    if len(self.buf) < 4:
                        break
                    n, at = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127:
                    if len(self.buf) < 10:
                        break
                    n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
                if len(self.buf) < at + n:
                    break
                payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
                if opcode == 1:
                    out.append(payload)
                elif opcode == 8:
                    raise RuntimeError(f"closed by the server: {payload[:200]!r}")
        return out


def _mask(data, mask):
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def metric(ops_port, name):
    conn = http.client.HTTPConnection("127.0.0.1", ops_port)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far (0 without one)."""
    if not pid:
        return 0.0
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ws_port", type=int)
    parser.add_argument("ops_port", type=int)
    parser.add_argument("redis_port", type=int)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--server-pid", type=int, help="the node's pid: report its CPU time per read (less noisy than latency on a busy machine)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    doc = f"history-at-{os.getpid()}-{int(time.time())}"

    ws = WebSocket(args.ws_port, "/v1/ws")
    ws.send(json.dumps({"t": "join", "doc": doc, "presence": "none"}))
    head = None
    while head is None:
        for m in ws.messages():
            o = json.loads(m)
            if o.get("t") == "joined":
                head = o.get("clock", 0)
            elif o.get("t") == "error":
                raise RuntimeError(m)

    started = time.time()
    pushes = []
    for first in range(0, args.records, 100):
        ops = {f"r{i}": ["put", {"title": f"record {i}", "n": 0, "text": "x" * 40, "tags": ["a", "b"]}]
               for i in range(first, min(args.records, first + 100))}
        pushes.append(ops)
    for k in range(args.commits):
        pushes.append({f"r{rng.randrange(args.records)}": ["patch", {"n": ["put", k]}]})
    # A push refused (busy doc: `unavailable` with retryAfterMs) is sent again, as clients do.
    total, sent, answered, in_flight, refused, next_log = len(pushes), 0, 0, 0, {}, time.time() + 5
    result_clock = re.compile(rb'"t":"result".*?"clock":(\d+)')
    error = re.compile(rb'"t":"error".*?"code":"([a-z_]+)"')
    error_id = re.compile(rb'"id":(\d+)')
    retry, retry_at = [], 0.0
    while answered < total:
        def send(k):
            ws.send(json.dumps({"t": "push", "doc": doc, "id": k + 1, "base": head, "ops": pushes[k]}, separators=(",", ":")))
        while in_flight < args.window and ((retry and time.time() >= retry_at) or sent < total):
            if retry and time.time() >= retry_at:
                send(retry.pop())
            else:
                send(sent)
                sent += 1
            in_flight += 1
        for m in ws.messages():
            found = result_clock.search(m)
            if found:
                head = max(head, int(found.group(1)))
                answered += 1
                in_flight -= 1
                continue
            code = error.search(m)
            if code:
                in_flight -= 1
                name = code.group(1).decode()
                refused[name] = refused.get(name, 0) + 1
                k = error_id.search(m)
                if name in ("unavailable", "rate_limited") and k:
                    retry.append(int(k.group(1)) - 1)
                    retry_at = time.time() + 0.05
                else:
                    answered += 1
        if time.time() > next_log:
            print(f"  building: {answered}/{total} pushes answered, head {head}, refused {refused or 'none'}", flush=True)
            next_log = time.time() + 5
    built = time.time() - started
    print(f"built {doc}: {args.records} records, head {head} after {total} pushes in {built:.1f} s "
          f"({total / built:.0f}/s); refused and sent again: {refused or 'none'}")

    redis = Redis(args.redis_port)
    key = f"tandem:{{{doc}}}:hsealed"
    deadline = time.time() + 300
    while True:
        sealed = int(redis.call("GET", key) or 0)
        if head - sealed < 2048 or time.time() > deadline:
            break
        time.sleep(0.5)
    segments = redis.call("ZCARD", f"tandem:{{{doc}}}:hindex")
    checkpoints = redis.call("ZCARD", f"tandem:{{{doc}}}:hversions")
    print(f"sealed through {sealed} ({head - sealed} in the live log only): {segments} segments, {checkpoints} checkpoints")

    replayed0 = metric(args.ops_port, "tandem_history_replayed_commits_total")
    segments0 = metric(args.ops_port, "tandem_history_read_segments_total")
    conn = http.client.HTTPConnection("127.0.0.1", args.ops_port)
    latencies, sizes, failures = [], [], {}
    cpu0 = cpu_seconds(args.server_pid)
    for _ in range(args.reads):
        clock = rng.randint(1, head)
        t0 = time.perf_counter()
        conn.request("GET", f"/api/docs/{doc}/at?clock={clock}")
        response = conn.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(body))
        if response.status != 200:
            failures[response.status] = failures.get(response.status, 0) + 1
        elif clock == head or rng.random() < 0.02:
            records = json.loads(body)["records"]
            assert len(records) == args.records, f"{len(records)} records at {clock}"
    cpu = cpu_seconds(args.server_pid) - cpu0 if args.server_pid else None
    replayed = metric(args.ops_port, "tandem_history_replayed_commits_total") - replayed0
    segments_read = metric(args.ops_port, "tandem_history_read_segments_total") - segments0
    latencies.sort()
    print(f"/at reads: {args.reads} at random clocks 1..{head}; answers {sum(sizes) / len(sizes) / 1024:.0f} KiB on average; "
          f"failures: {failures or 'none'}")
    print(f"  latency ms: p50 {percentile(latencies, 50):.1f}  p90 {percentile(latencies, 90):.1f}  "
          f"p99 {percentile(latencies, 99):.1f}  max {latencies[-1]:.1f}  (target p99 <= 50 ms)")
    print(f"  work per read: {replayed / args.reads:.0f} commits replayed (max by construction: --checkpoint-every "
          f"+ the unsealed tail), {segments_read / args.reads:.2f} segments decompressed, one full checkpoint (and, since blobs v5, up to 7 deltas)")
    if cpu is not None:
        print(f"  node CPU per read: {cpu * 1000 / args.reads:.2f} ms (user + system, /proc/PID/stat, over the {args.reads} reads)")
    print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
