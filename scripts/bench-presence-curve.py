#!/usr/bin/env python3
"""Presence latency against load over two nodes (issue 11 item 4), from tandem-bench presence results:
same-node and cross-node p99 at each client count, the control ping (no tick, no Redis: how long the
loops and the bench's read queue), what the run asked of the cores and how busy they were, and, with
--trace-pubsub, the cross-node-only legs (own delivery -> on pub/sub, pub/sub -> client).

    scripts/bench-presence-curve.py test-artifacts/bench presence-2nodes-200 presence-2nodes-400 ...
"""
import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    header = ("run", "clients", "same p99", "cross p99", "cross-same", "ping p99", "ours, % of cores", "busy %",
              "own->pub/sub p99", "pub/sub->client p99", "delivered %")
    rows = []
    for name in sys.argv[2:]:
        path = out / f"{name}.json"
        if not path.exists():
            print(f"{name}: no {path}", file=sys.stderr)
            continue
        r = json.loads(path.read_text())
        same, cross = r.get("sameNodeLatencyMs"), r.get("crossNodeLatencyMs")
        if not same or not cross:
            print(f"{name}: not a two-node presence run", file=sys.stderr)
            continue
        res = r["resources"]
        # Both nodes (the second's CPU counted as the first's: each serves half the clients), Redis and
        # the bench: what this run needs of the machine (loopback interrupts are partly inside these).
        asked = 2 * res["server"]["cpuPercent"] + res["redis"]["cpuPercent"] + res["bench"]["cpuPercent"]
        trace = r.get("pubSubTrace") or {}
        own = (trace.get("sameNodeToPubSubMs") or {}).get("p99")
        from_ps = (trace.get("pubSubToClientMs") or {}).get("p99")
        rows.append((name, str(r["clients"]), f"{same['p99']:.1f}", f"{cross['p99']:.1f}",
                     f"{cross['p99'] - same['p99']:+.1f}", f"{r['controlPingRTTMs']['p99']:.1f}",
                     f"{asked:.0f} of {100 * res['cores']}", f"{res['machineBusyPercent']:.0f}",
                     "-" if own is None else f"{own:.1f}", "-" if from_ps is None else f"{from_ps:.1f}",
                     f"{100 * r['deliveredRatio']:.1f}"))
    if not rows:
        return 1
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    print("(ms; the tick's own wait is up to --tick-ms, ~49.5 ms at p99 with the default 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
