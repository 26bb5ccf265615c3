"""Traffic on the nodes' ops ports, so the dashboard's "Ops port" row has data: what a scraper, a health
checker, an operator and a hostile page send. Every request's answer is checked; a wrong one is recorded
as a failure (the tests assert there are none).

- GET /healthz, /readyz, /api/status (200);
- a DNS-rebinding Host (421, `host_not_allowed`);
- /api/docs/D/log?from=18446744073709551615, the request that used to crash a node (400, `bad_request`);
- on nodes with an ops token: /api/docs/D without it (401) and with it (200).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import requests


@dataclass
class ProbeTarget:
    name: str
    ops_url: str
    token: Optional[str] = None


@dataclass
class ProberStats:
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def fail(self, message: str) -> None:
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(message)

    def snapshot(self) -> dict:
        with self.lock:
            return {"counts": dict(self.counts), "failures": list(self.failures)}


class OpsProber:
    """Sends one round of probes to every target every `interval` seconds, in a daemon thread."""

    def __init__(self, targets: list[ProbeTarget], interval: float = 0.5, max_seconds: float = 150) -> None:
        self.targets = targets
        self.interval = interval
        self.max_seconds = max_seconds
        self.stats = ProberStats()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="tandem-ops-prober", daemon=True)

    def start(self) -> "OpsProber":
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.thread.join(timeout)

    def _expect(self, target: ProbeTarget, what: str, path: str, status: int, error: Optional[str] = None,
                headers: Optional[dict] = None) -> None:
        try:
            response = requests.get(target.ops_url + path, headers=headers or {}, timeout=5)
        except requests.RequestException as failure:
            self.stats.fail(f"{target.name} {what}: {failure!r}")
            return
        ok = response.status_code == status
        if ok and error is not None:
            try:
                ok = response.json().get("error") == error
            except ValueError:
                ok = False
        if ok:
            self.stats.count(what)
        else:
            self.stats.fail(f"{target.name} {what}: {response.status_code} {response.text[:200]!r}")

    def _round(self) -> None:
        for target in self.targets:
            port = target.ops_url.rsplit(":", 1)[1]
            self._expect(target, "healthz", "/healthz", 200)
            self._expect(target, "readyz", "/readyz", 200)
            self._expect(target, "status", "/api/status?history=1", 200)
            self._expect(target, "rebinding_host", "/api/status", 421, "host_not_allowed",
                         headers={"Host": f"rebind.example:{port}"})
            self._expect(target, "huge_clock", "/api/docs/D/log?from=18446744073709551615", 400, "bad_request")
            if target.token:
                self._expect(target, "no_token", "/api/docs/D", 401, "unauthorized")
                self._expect(target, "with_token", "/api/docs/D", 200,
                             headers={"Authorization": f"Bearer {target.token}"})

    def _main(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self._round()
            except Exception as failure:  # noqa: BLE001 - recorded, the thread keeps probing
                self.stats.fail(f"round: {failure!r}")
            self._stop.wait(self.interval)
