#!/usr/bin/env python3
"""Tandem beside the bare fan-out server (issue 14), from tandem-bench presence results of the same load:
deliveries/s, p99, server CPU per delivered entry, and the issue's targets.

    scripts/bench-compare.py test-artifacts/bench                # presence/presence-bare, presence-2k/presence-2k-bare
    scripts/bench-compare.py test-artifacts/bench presence:presence-bare

CPU per delivery is the server process's CPU over the measured window divided by the entries delivered in
it; Tandem's is given without and with its Redis (the bare server has none). Targets (issue 14): at
1,000 / 20 Tandem's CPU per delivery <= 1.2x the bare server's; at 2,000 / 40 >= 90 % of its deliveries at
a p99 within 20 ms of its p99.
"""
import json
import sys
from pathlib import Path


def figures(path: Path):
    r = json.loads(path.read_text())
    res = r["resources"]
    window = res["windowSeconds"] or r["durationSeconds"]
    delivered = r["delivered"]
    server = (res.get("server") or {}).get("cpuPercent")
    redis = (res.get("redis") or {}).get("cpuPercent")

    def per_delivery(cpu):
        return None if cpu is None or delivered == 0 else cpu / 100 * window / delivered * 1e6

    return {
        "load": f'{r["clients"]} / {r["docs"]} / {r["rateHz"]:.0f} Hz',
        "deliveries_per_s": delivered / r["durationSeconds"],
        "ratio": r["deliveredRatio"],
        "p99": r["latencyMs"]["p99"],
        "cpu": server,
        "us_per_delivery": per_delivery(server),
        "us_per_delivery_with_redis": per_delivery(None if server is None else server + (redis or 0)),
        "machine_busy": res.get("machineBusyPercent"),
        "others": res.get("othersCpuPercent"),
        "clients": r["clients"],
    }


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    pairs = [tuple(p.split(":", 1)) for p in sys.argv[2:]] or [("presence", "presence-bare"), ("presence-2k", "presence-2k-bare")]
    shown = 0
    for tandem_name, bare_name in pairs:
        paths = out / f"{tandem_name}.json", out / f"{bare_name}.json"
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            print(f"{tandem_name} vs {bare_name}: missing {', '.join(missing)}", file=sys.stderr)
            continue
        t, b = figures(paths[0]), figures(paths[1])
        shown += 1
        print(f"\n{tandem_name} vs {bare_name} ({t['load']}; bare: {b['load']})")
        print(f"  {'':28}{'tandem':>14}{'bare':>14}{'tandem/bare':>14}")

        def row(label, tv, bv, digits=1, ratio=True):
            r = fmt(tv / bv, 2) + "x" if ratio and tv is not None and bv else ""
            print(f"  {label:28}{fmt(tv, digits):>14}{fmt(bv, digits):>14}{r:>14}")

        row("deliveries/s", t["deliveries_per_s"], b["deliveries_per_s"], 0)
        row("delivered % of expected", t["ratio"] * 100, b["ratio"] * 100, 2, ratio=False)
        row("p99 (ms)", t["p99"], b["p99"], 1, ratio=False)
        row("server CPU (% of a core)", t["cpu"], b["cpu"], 1)
        row("CPU µs per delivery", t["us_per_delivery"], b["us_per_delivery"], 2)
        row("  Tandem + its Redis", t["us_per_delivery_with_redis"], b["us_per_delivery"], 2)
        row("machine busy (% of cores)", t["machine_busy"], b["machine_busy"], 0, ratio=False)
        row("others' CPU (% of a core)", t["others"], b["others"], 0, ratio=False)
        if t["clients"] <= 1000 and t["us_per_delivery"] and b["us_per_delivery"]:
            ratio = t["us_per_delivery"] / b["us_per_delivery"]
            print(f"  target CPU per delivery <= 1.2x bare: {'MET' if ratio <= 1.2 else 'NOT MET'} ({ratio:.2f}x)")
        if t["clients"] >= 2000 and b["deliveries_per_s"]:
            share = t["deliveries_per_s"] / b["deliveries_per_s"]
            gap = t["p99"] - b["p99"]
            print(f"  target >= 90 % of bare deliveries: {'MET' if share >= 0.9 else 'NOT MET'} ({share * 100:.1f} %)")
            print(f"  target p99 within 20 ms of bare: {'MET' if gap <= 20 else 'NOT MET'} ({gap:+.1f} ms)")
    return 0 if shown else 1


if __name__ == "__main__":
    sys.exit(main())
