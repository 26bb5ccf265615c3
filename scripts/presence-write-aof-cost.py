#!/usr/bin/env python3
"""redis-server CPU per presence write (issue 14, stop 29): PresenceScripts.docWrite as it is in the Swift
source (no build needed) against the same script without its `redis.set_repl(redis.REPL_REPLICA)`, i.e. with
its effects written to the append-only file as well, alternated on one fresh redis-server with AOF on
(`--appendfsync everysec`, as scripts/bench.sh runs it).

Each call is one doc's write at 2,000 clients / 40 docs: 50 changed states of ~200 B, every second call a
TTL refresh, nobody listening (the publish is skipped, as for a node alone on a doc). CPU is the server
process's utime + stime (every thread: the AOF fsync thread too) from /proc over N calls, a short pause
after every 80 calls so that the server's loop writes the AOF in the batches it makes under a real load,
and a second after each block for the last fsync. CPU time, not instructions: the kernel's part of the AOF
write (the write and fsync syscalls) is part of the cost. On a busy machine the figures move with it; the
blocks alternate so that both variants see the same drift.

  scripts/presence-write-aof-cost.py                 # N=4000 calls per block, ROUNDS=4, PIPE=1
  PIPE=8 scripts/presence-write-aof-cost.py          # 8 calls pipelined per round trip
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import random

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import resp  # noqa: E402 (scripts/lib/resp.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "Sources/TandemServer/Redis/PresenceScripts.swift")


def lua():
    """The docWrite script's Lua (listener argument on), from writeSource's literal."""
    src = open(SOURCE).read()
    m = re.search(r'static func writeSource.*?return """\n(.*?)\n        """', src, re.S)
    if not m:
        sys.exit("writeSource not found in " + SOURCE)
    body = m.group(1)
    pm = re.search(r'listenerArgument\s*\? """\n(.*?)\n            """', src, re.S)
    publish = "\n".join(l[12:] for l in pm.group(1).split("\n"))
    first = 10
    body = body.replace("\\(publish)", publish)
    body = body.replace("\\(first - 1)", str(first - 1)).replace("\\(first)", str(first))
    body = "\n".join(l[8:] if l.startswith("        ") else l for l in body.split("\n"))
    without = "\n".join(l for l in body.split("\n") if "redis.set_repl" not in l)
    return without, "redis.set_repl(redis.REPL_REPLICA)\n" + without


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    n = int(os.environ.get("N", "4000"))
    rounds = int(os.environ.get("ROUNDS", "4"))
    pipe = int(os.environ.get("PIPE", "1"))
    with_aof, replica_only = lua()
    work = tempfile.mkdtemp(prefix="presence-aof-cost.")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", work, "--appendonly", "yes",
                               "--appendfsync", "everysec", "--save", "", "--logfile", work + "/redis.log"])
    try:
        for _ in range(200):
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        f = conn.makefile("rb")

        def call(*a):
            conn.sendall(resp.command(*a))
            return resp.read_reply(f)

        sha = {"aof": call("SCRIPT", "LOAD", with_aof).decode(), "replica-only": call("SCRIPT", "LOAD", replica_only).decode()}
        docs, entries = 40, 50

        def command(which, i):
            doc = i % docs
            args = ["EVALSHA", sha[which], 2, f"tandem:{{d{doc}}}:presence:n1", f"tandem:{{d{doc}}}:nodes", "n1", 2000, 0,
                    1 if i % 2 == 0 else 0, f"tandem:{{d{doc}}}", '{"k":"p","n":"n1","u":[', entries, 0, "]}"]
            for e in range(entries):
                sid = f"s{doc}-{e}"
                args += [sid, '{"sid":"%s","user":"u%d","name":"user %d","role":"editor","node":"n1","v":%d,'
                         '"state":{"cursor":{"x":%d,"y":%d},"sel":null,"pad":"%s"}}'
                         % (sid, e, e, i, random.randint(0, 99999), random.randint(0, 99999), "p" * 60)]
            return resp.command(*args)

        commands = {w: [command(w, i) for i in range(400)] for w in sha}

        def block(which):
            start = cpu_seconds(server.pid)
            sent = 0
            while sent < n:
                conn.sendall(b"".join(commands[which][(sent + k) % 400] for k in range(pipe)))
                for _ in range(pipe):
                    resp.read_reply(f)
                sent += pipe
                if sent % 80 == 0:
                    time.sleep(0.02)
                elif pipe == 1:
                    time.sleep(0.002)
            time.sleep(1.2)
            return (cpu_seconds(server.pid) - start) / n * 1e6

        results = {w: [] for w in sha}
        for r in range(rounds):
            for which in (("aof", "replica-only") if r % 2 == 0 else ("replica-only", "aof")):
                results[which].append(block(which))
                print(f"round {r + 1} {which:12s} {results[which][-1]:7.1f} µs of redis-server CPU per write", flush=True)
        for which, xs in results.items():
            print(f"{which:12s} " + " ".join(f"{x:.1f}" for x in xs) + f"  mean {sum(xs) / len(xs):.1f} µs per write")
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
