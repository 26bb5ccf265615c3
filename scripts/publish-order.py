#!/usr/bin/env python3
"""Does a tick's PUBLISH wait behind the presence writes of the same pipeline? (issue 11 item 4)

A shard's tick hands one `EVALSHA` of `PresenceScripts.write` per doc to the Redis thread, which writes
them together; each script stores the doc's entries and then PUBLISHes the delta. This starts a scratch
redis-server, writes one such pipeline per round (DOCS docs of ENTRIES entries each, as one `sendall`) and
timestamps, on a subscriber connection, when each doc's message arrives. Variants, interleaved round by
round so load drifts hit them alike:

  atend        the script as Tandem runs it (PUBLISH after the HSET/PEXPIRE)
  infirst      the same script with the PUBLISH moved to its first line
  pubsfirst    every doc's PUBLISH as its own command first, then the scripts without PUBLISH
  interleaved  per doc: PUBLISH, then the script without PUBLISH

Redis sends what a command produces for other clients (a pub/sub message) only from `beforeSleep`, after
it has run every command of what it read in that event-loop iteration (a read is at most 16 KB of a big
pipeline), so moving the PUBLISH within the script cannot help; only commands that reach Redis in an
earlier read can. Figures are wall clock on a shared machine: compare variants within one run.

  python3 scripts/publish-order.py [--docs 10] [--entries 25] [--rounds 200]
"""
import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
import resp  # noqa: E402 (scripts/lib/resp.py)


def write_script():
    """`PresenceScripts.write`'s Lua source, from the Swift file (so the experiment runs what Tandem runs).

    The source is `PresenceScripts.writeSource(listenerArgument: false)`: its last string literal is the
    script with `\\(first)` (and `\\(first - 1)`) and `\\(publish)` interpolated; the second is the publish block without the
    listener argument, where entries start at ARGV[8]."""
    swift = (Path(__file__).resolve().parent.parent / "Sources/TandemServer/Redis/PresenceScripts.swift").read_text()
    function = re.search(r"static func writeSource\(listenerArgument: Bool\) -> String \{(.*?)\n    \}\n", swift, re.S).group(1)
    literals = [dedent(text) for text in re.findall(r'"""\n(.*?)\n\s*"""', function, re.S)]
    assert len(literals) == 3, "PresenceScripts.writeSource no longer has its three string literals"
    publish, template = literals[1], literals[2]
    publish_indent = re.search(r"^( *)\\\(publish\)$", template, re.M).group(1)
    publish = "\n".join(publish_indent + line if line else line for line in publish.split("\n"))
    source = re.sub(r"^ *\\\(publish\)$", lambda _: publish, template, flags=re.M)
    # `\(first)` and arithmetic on it (`\(first - 1)`): entries start at ARGV[8] without the listener argument.
    source = re.sub(r"\\\((first[-+ 0-9]*)\)", lambda m: str(eval(m.group(1), {"first": 8})), source)
    assert "\\(" not in source, "an interpolation of PresenceScripts.writeSource is not handled here"
    return source + "\n"


def dedent(text):
    lines = text.split("\n")
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10, help="docs per tick's pipeline (one shard's)")
    parser.add_argument("--entries", type=int, default=25, help="changed entries per doc per tick")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="publish-order.")
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        run(port, args)
    finally:
        redis.terminate()
        redis.wait(timeout=10)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def run(port, args):
    publish = "if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end\n"
    source = write_script()
    assert publish in source, "PresenceScripts.write no longer ends with its PUBLISH line"
    scripts = {
        "atend": source,
        "nopub": source.replace(publish, ""),
        "infirst": publish + source.replace(publish, ""),
    }
    c = connect(port)
    shas = {}
    for name, text in scripts.items():
        c.sendall(resp.command("SCRIPT", "LOAD", text))
        shas[name] = c.recv(4096).split(b"\r\n")[1]
    sub = connect(port)
    channels = ["tandem:{doc%d}" % d for d in range(args.docs)]
    sub.sendall(b"".join(resp.command("SUBSCRIBE", ch) for ch in channels))
    confirmations = b""
    while confirmations.count(b"subscribe\r\n") < args.docs:
        confirmations += sub.recv(1 << 16)

    arrivals = {}

    def reader():
        buf = b""
        while True:
            data = sub.recv(1 << 20)
            if not data:
                return
            now = time.perf_counter_ns()
            buf += data
            for m in re.finditer(rb"tandem:\{doc(\d+)\}\r\n\$\d+\r\n\{r(\d+)\}", buf):
                arrivals.setdefault((int(m.group(2)), int(m.group(1))), now)
            buf = buf[-200:]

    threading.Thread(target=reader, daemon=True).start()
    entry = b'{"name":"user","node":"node-a","role":"editor","sid":"s%04d","state":{"cursor":{"x":123,"y":456}},"user":"u","v":%d}'

    def pipeline(variant, rnd):
        out = []
        for d in range(args.docs):
            entries = [entry % (i, rnd) for i in range(args.entries)]
            payload = b"{r%d}" % rnd + b'{"k":"p","n":"node-a","u":[' + b",".join(entries) + b'],"r":[]}'
            keys = ["tandem:{doc%d}:presence:node-a" % d, "tandem:{doc%d}:nodes" % d, "node-a", 4000, "0", "0", channels[d]]
            pairs = []
            for i, e in enumerate(entries):
                pairs += [b"s%04d" % i, e]
            if variant in ("atend", "infirst"):
                out.append(resp.command("EVALSHA", shas[variant], 2, *keys, payload, args.entries, *pairs))
            elif variant == "pubsfirst":
                out.insert(d, resp.command("PUBLISH", channels[d], payload))
                out.append(resp.command("EVALSHA", shas["nopub"], 2, *keys, b"", args.entries, *pairs))
            else:
                out.append(resp.command("PUBLISH", channels[d], payload))
                out.append(resp.command("EVALSHA", shas["nopub"], 2, *keys, b"", args.entries, *pairs))
        return b"".join(out)

    variants = ["atend", "infirst", "pubsfirst", "interleaved"]
    results = {v: [] for v in variants}
    rnd = 0
    for _ in range(args.rounds):
        for variant in variants:
            rnd += 1
            data = pipeline(variant, rnd)
            replies = args.docs * (1 if variant in ("atend", "infirst") else 2)
            start = time.perf_counter_ns()
            c.sendall(data)
            got = b""
            while got.count(b"\r\n") < replies:  # integer replies (":1", ":0"): one line each
                got += c.recv(1 << 16)
            deadline = time.time() + 5
            while any((rnd, d) not in arrivals for d in range(args.docs)):
                if time.time() > deadline:
                    raise SystemExit(f"round {rnd}: a message did not arrive")
                time.sleep(0.0002)
            results[variant].append([(arrivals[(rnd, d)] - start) / 1000 for d in range(args.docs)])
            time.sleep(0.01)
    info = connect(port)
    info.sendall(resp.command("INFO", "commandstats"))
    time.sleep(0.2)
    stats = info.recv(1 << 16).decode(errors="replace")
    print(f"{args.docs} docs x {args.entries} entries per pipeline ({len(pipeline('atend', 1))} bytes), {args.rounds} rounds")
    for line in stats.splitlines():
        if line.startswith(("cmdstat_evalsha", "cmdstat_publish")):
            print("  " + line)
    print("send -> message arrival, µs, median over rounds of: the first doc's, the mean of the docs', the last doc's")
    for variant in variants:
        rows = results[variant]
        print("  %-12s first %6.0f   mean %6.0f   last %6.0f" % (
            variant, statistics.median(min(r) for r in rows), statistics.median(statistics.mean(r) for r in rows),
            statistics.median(max(r) for r in rows)))


if __name__ == "__main__":
    main()
