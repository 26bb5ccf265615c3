#!/usr/bin/env python3
"""Measures /healthz latency while the ops port's connection limit is taken by idle or slow-loris clients.

Not a test (timings are never asserted): the figures go into docs/security.md. Start a node, then e.g.

    Tests/ops/healthz_flood.py --ops 127.0.0.1:7071 --connections 1024 --per-address 32 --mode slowloris

The flood connects from 127.0.0.2, 127.0.0.3, … (Linux routes all of 127/8 to the loopback), at most
`--per-address` connections from each, so together they reach `--connections` (use the node's
--ops-max-connections and --ops-max-connections-per-ip). `idle` connections send nothing; `slowloris`
ones send a partial request head and then one more header byte every few seconds, which keeps them clear
of the idle timeout. The probes then GET /healthz from 127.0.0.1, one fresh connection each, and the
script prints latency percentiles, failures, and the node's ops metrics.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time


class Flood:
    """Flood connections, `per_address` from each of 127.0.0.2, 127.0.0.3, …"""

    def __init__(self, host: str, port: int, per_address: int, mode: str) -> None:
        self.host, self.port, self.per_address, self.mode = host, port, per_address, mode
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self._address, self._used = 2, 0

    def open(self, count: int) -> None:
        for _ in range(count):
            if self._used == self.per_address:
                self._address, self._used = self._address + 1, 0
                if self._address > 254:
                    raise SystemExit("ran out of 127.0.0.x source addresses")
            self._used += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.0.0.{self._address}", 0))
            s.settimeout(5)
            try:
                s.connect((self.host, self.port))
                if self.mode == "slowloris":
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            except OSError as error:
                print(f"connect from 127.0.0.{self._address} failed: {error}")
                s.close()
                continue
            with self.lock:
                self.sockets.append(s)

    @property
    def addresses(self) -> int:
        return self._address - 1

    def close(self) -> None:
        with self.lock:
            for s in self.sockets:
                s.close()


def trickle(flood: Flood, stop: threading.Event) -> None:
    """One header byte per connection every 2 s (a slow-loris client never finishes its request)."""
    while not stop.wait(2.0):
        with flood.lock:
            sockets = list(flood.sockets)
        for s in sockets:
            try:
                s.send(b"a")
            except OSError:
                pass  # evicted or refused: that is the point


def probe(host: str, port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10, source_address=("127.0.0.1", 0)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    elapsed = time.perf_counter() - started
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(b"ok\n"):
        raise RuntimeError(f"unexpected answer {data[:80]!r}")
    return elapsed


def ops_metrics(host: str, port: int) -> dict[str, str]:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    wanted = ("tandem_ops_connections ", "tandem_ops_connections_evicted_total", "tandem_ops_connections_refused_total",
              "process_open_fds", "process_resident_memory_bytes")
    return {line.split(" ")[0]: line.split(" ")[1] for line in data.decode().splitlines()
            if line.startswith(wanted)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="127.0.0.1:7071", help="HOST:PORT of the node's ops port")
    parser.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--per-address", type=int, default=32)
    parser.add_argument("--mode", choices=["idle", "slowloris"], default="idle")
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    host, port = args.ops.rsplit(":", 1)
    port = int(port)

    baseline = [probe(host, port) for _ in range(args.probes)]
    flood = Flood(host, port, args.per_address, args.mode)
    flood.open(args.connections)
    stop = threading.Event()
    if args.mode == "slowloris":
        threading.Thread(target=trickle, args=(flood, stop), daemon=True).start()
    time.sleep(1.0)  # let the node accept them all
    before = ops_metrics(host, port)  # this scrape is one connection more: the limit is reached here
    latencies, failures = [], []
    for _ in range(args.probes):
        # Like an attacker that reconnects: the port is full again before every probe, so each probe has
        # to make room (tandem_ops_connections_evicted_total grows by one per probe).
        flood.open(1)
        try:
            latencies.append(probe(host, port))
        except Exception as error:  # noqa: BLE001 - counted and shown
            failures.append(repr(error))
    after = ops_metrics(host, port)
    stop.set()
    flood.close()

    def show(name: str, values: list[float]) -> None:
        if not values:
            print(f"{name}: no successful probes")
            return
        ms = [v * 1000 for v in values]
        print(f"{name}: n={len(ms)} min={min(ms):.2f} ms p50={statistics.median(ms):.2f} ms "
              f"p90={percentile(ms, 0.9):.2f} ms p99={percentile(ms, 0.99):.2f} ms max={max(ms):.2f} ms")

    print(f"flood: {args.connections} {args.mode} connections, then one more before each probe "
          f"({len(flood.sockets)} opened from {flood.addresses} addresses)")
    show("/healthz, no flood", baseline)
    show(f"/healthz, ops port full of {args.mode} connections", latencies)
    print(f"failed probes: {len(failures)}" + (f" (first: {failures[0]})" if failures else ""))
    print(f"ops metrics before probes: {before}")
    print(f"ops metrics after probes:  {after}")


if __name__ == "__main__":
    main()
