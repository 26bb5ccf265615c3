"""Side-by-side summary of the Yjs benchmark (issue 10 item 6; scripts/bench.sh yjs-compare, yjs-awareness).

    python3 scripts/bench-yjs-compare.py OUT_DIR [LOAD …]      (LOAD: CLIENTSxROOMS, as in YJS_LOADS)

With loads: reads OUT_DIR/yjs-tandem-LOAD.json and yjs-pycrdt-LOAD.json and prints, per load and server,
deliveries/s, p99 of updates and awareness, server CPU per delivery and peak RSS; then each server's most
deliveries/s with both p99s <= 100 ms and Tandem's multiple of pycrdt-websocket's (the issue's goal: >= 20x).
Always: if OUT_DIR has yjs-awareness.json and presence.json (same size, 20 Hz), Yjs awareness's server CPU
per delivery against protocol-v1 presence's (goal: within 1.5x). Prints what is missing; asserts nothing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cpu_micros(result: dict, deliveries: float, with_redis: bool = False) -> float | None:
    resources = result.get("resources") or {}
    server = resources.get("server")
    if not server or deliveries <= 0:
        return None
    cpu = server["cpuPercent"]
    if with_redis:
        redis = resources.get("redis")
        if not redis:
            return None
        cpu += redis["cpuPercent"]
    return cpu / 100 * resources["windowSeconds"] * 1e6 / deliveries


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def compare(out: Path, loads: list[str]) -> None:
    print("Yjs side by side: Tandem /yjs vs pycrdt-websocket (same tandem-bench yjs load; p99 in ms; CPU per delivery in µs)")
    header = f"{'load':>8} {'server':>7} {'deliveries/s':>13} {'upd p99':>8} {'aw p99':>8} {'delivered':>9} {'CPU/dlv':>8} {'+Redis':>7} {'RSS MB':>7} {'p99<=100':>8}"
    print(header)
    best: dict[str, tuple[float, str]] = {}
    for load_name in loads:
        for server in ("tandem", "pycrdt"):
            result = load(out / f"yjs-{server}-{load_name}.json")
            if result is None:
                print(f"{load_name:>8} {server:>7}   (not run)")
                continue
            deliveries = result["deliveriesPerSecond"]
            upd, aw = result["updates"], result["awareness"]
            expected = upd["expected"] + aw["expected"]
            ratio = (upd["delivered"] + aw["delivered"] + aw["superseded"]) / expected if expected else 0
            met = all(t["met"] for t in result["targets"] if "p99" in t["name"])
            rss = ((result["resources"].get("server") or {}).get("rssPeakMB"))
            window = result["resources"]["windowSeconds"]
            print(
                f"{load_name:>8} {server:>7} {deliveries:>13,.0f} {fmt(upd['latencyMs']['p99']):>8} {fmt(aw['latencyMs']['p99']):>8}"
                f" {ratio * 100:>8.1f}% {fmt(cpu_micros(result, deliveries * window), 2):>8}"
                f" {fmt(cpu_micros(result, deliveries * window, with_redis=True), 2):>7} {fmt(rss, 0):>7} {'yes' if met else 'NO':>8}")
            if met and deliveries > best.get(server, (0, ""))[0]:
                best[server] = (deliveries, load_name)
    print()
    # Server CPU per delivery where both ran the same load (µs; lower is better).
    for load_name in loads:
        results = {server: load(out / f"yjs-{server}-{load_name}.json") for server in ("tandem", "pycrdt")}
        if any(r is None for r in results.values()):
            continue
        cpu = {}
        for server, result in results.items():
            cpu[server] = cpu_micros(result, result["deliveriesPerSecond"] * result["resources"]["windowSeconds"])
        if cpu["tandem"] and cpu["pycrdt"]:
            print(f"CPU per delivery at {load_name}: Tandem {cpu['tandem']:.2f} µs, pycrdt-websocket {cpu['pycrdt']:.2f} µs"
                  f" ({cpu['pycrdt'] / cpu['tandem']:.1f}x less for Tandem)")
    for server in ("tandem", "pycrdt"):
        if server in best:
            print(f"{server}: most deliveries/s with p99 <= 100 ms: {best[server][0]:,.0f} (at {best[server][1]})")
        else:
            print(f"{server}: no load with p99 <= 100 ms")
    if "tandem" in best and "pycrdt" in best:
        multiple = best["tandem"][0] / best["pycrdt"][0]
        print(f"Tandem / pycrdt-websocket: {multiple:.1f}x (goal >= 20x: {'met' if multiple >= 20 else 'MISSED'})")
        if best["tandem"][1] == loads[-1]:
            print("  (Tandem met p99 at the largest load: add larger YJS_LOADS for its ceiling)")


def awareness_vs_presence(out: Path) -> None:
    yjs, presence = load(out / "yjs-awareness.json"), load(out / "presence.json")
    if yjs is None or presence is None:
        print("awareness vs presence: needs yjs-awareness.json and presence.json (scripts/bench.sh presence yjs-awareness)")
        return
    window_y = yjs["resources"]["windowSeconds"]
    window_p = presence["resources"]["windowSeconds"]
    deliveries_y = yjs["awareness"]["delivered"] * window_y / yjs["durationSeconds"]
    deliveries_p = presence["delivered"] * window_p / presence["durationSeconds"]
    print()
    print(f"awareness vs presence ({yjs['clients']} clients, {yjs['rooms']} rooms / {presence['clients']} clients, {presence['docs']} docs, 20 Hz)")
    for label, with_redis in (("server", False), ("server + Redis", True)):
        y, p = cpu_micros(yjs, deliveries_y, with_redis), cpu_micros(presence, deliveries_p, with_redis)
        verdict = ""
        if y is not None and p:
            verdict = f"  ratio {y / p:.2f} (goal <= 1.5: {'met' if y / p <= 1.5 else 'MISSED'})"
        print(f"  {label} CPU per delivery: Yjs awareness {fmt(y, 2)} µs, presence {fmt(p, 2)} µs{verdict}")
    print(f"  p99: Yjs awareness {fmt(yjs['awareness']['latencyMs']['p99'])} ms, presence {fmt(presence['latencyMs']['p99'])} ms")


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts/bench")
    if len(sys.argv) > 2:
        compare(directory, sys.argv[2:])
    awareness_vs_presence(directory)
