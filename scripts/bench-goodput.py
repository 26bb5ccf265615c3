#!/usr/bin/env python3
"""Goodput under overload (issue 8), from tandem-bench sync results: commits/s at each offered load, the
peak, and each load's share of the peak (the target: >= 90 % at 2x and 4x the load that saturates).

    scripts/bench-goodput.py test-artifacts/bench sync-10k sync-20k sync-40k sync-80k
"""
import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    rows = []
    for name in sys.argv[2:]:
        path = out / f"{name}.json"
        if not path.exists():
            print(f"{name}: no {path}", file=sys.stderr)
            continue
        r = json.loads(path.read_text())
        offered = r["editors"] * r["ratePerEditor"]
        load = r["resources"].get("loadAverageBefore") or [0]
        rows.append((name, offered, r["commitsPerSecond"], r.get("editsCommittedPerSecond", r["commitsPerSecond"]),
                     r["pushToResultMs"]["p99"], r["unanswered"], r["orderViolations"],
                     sum(r.get("refusedByCode", {}).values()), r["retries"], load[0]))
    if not rows:
        return 1
    peak = max(row[2] for row in rows)
    print(f"goodput under overload (peak {peak:,.0f} commits/s)")
    # edits/s: edits committed (a client refused as busy coalesces the edits it makes meanwhile, so one
    # commit can carry several).
    print(f"{'scenario':<10} {'offered/s':>10} {'commits/s':>10} {'of peak':>8} {'edits/s':>8} {'p99 ms':>8} {'unanswered':>10} {'order':>6} {'refused':>8} {'retries':>8} {'load1':>6}")
    for name, offered, commits, edits, p99, unanswered, order, refused, retries, load in rows:
        print(f"{name:<10} {offered:>10,.0f} {commits:>10,.0f} {commits / peak * 100:>7.0f}% {edits:>8,.0f} {p99:>8.1f} {unanswered:>10} {order:>6} {refused:>8} {retries:>8} {load:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
