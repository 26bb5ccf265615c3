#!/usr/bin/env python3
"""What version history costs in Redis (issue 15, docs/history.md), read from a live Redis after a run.

    scripts/history-bytes.py REDIS_PORT [PREFIX]

For every doc with history (keys `tandem:{D}:hsegs`): the Redis memory of its five history keys
(MEMORY USAGE ... SAMPLES 0, exact), the sealed commits, the ops those commits hold (raw JSON bytes) and
their zlib size (level 6, each doc's ops concatenated in clock order: "the compressed size of the ops").
Prints bytes per commit and the ratio history bytes / compressed ops (the issue's goal: <= 1.5).
Only reads; a small RESP client, no dependencies.
"""
import bz2
import json
import os
import socket
import sys
import zlib


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 20)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(1 << 20)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ValueError(line)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()


def unpack(blob):
    """A blob's JSON (HistoryBlob): kind b (bzip2 parts, each after its LEB128 length), z (zlib) or JSON."""
    if blob[:1] == b"z":
        return zlib.decompress(blob[1:])
    if blob[:1] != b"b":
        return blob
    out, at = b"", 1
    while at < len(blob):
        n = shift = 0
        while True:
            byte = blob[at]
            at += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out += bz2.decompress(blob[at:at + n])
        at += n
    return out


def main():
    port = int(sys.argv[1])
    prefix = sys.argv[2] if len(sys.argv) > 2 else ""
    r = Redis(port)
    # HISTORY_DUMP=FILE: also write every doc's decoded segments there (one JSON line per doc), to try
    # other layouts offline.
    dump_path = os.environ.get("HISTORY_DUMP")
    cursor, keys = b"0", []
    while True:
        cursor, batch = r.call("SCAN", cursor, "MATCH", "tandem:{%s*}:hsegs" % prefix, "COUNT", 1000)
        keys += batch
        if cursor == b"0":
            break
    names = (b"hsealed", b"hsegs", b"hindex", b"hckpts", b"hversions")
    total_bytes = total_commits = total_ops = total_zops = total_segment_blobs = total_segments = 0
    # Checkpoints by kind: full (field CLOCK) and delta (field d:CLOCK, blobs v5): count and blob bytes.
    checkpoints = {"full": [0, 0], "delta": [0, 0]}
    per_key = dict.fromkeys(names, 0)
    for key in keys:
        base = key[: -len(b"hsegs")]
        memory = 0
        for name in names:
            used = r.call("MEMORY", "USAGE", base + name, "SAMPLES", 0) or 0
            per_key[name] += used
            memory += used
        ckpts = r.call("HGETALL", base + b"hckpts")
        for i in range(0, len(ckpts), 2):
            field = ckpts[i]
            kind = "delta" if field.startswith(b"d:") else None if field.startswith(b"a:") else "full"
            if kind:
                checkpoints[kind][0] += 1
                checkpoints[kind][1] += len(ckpts[i + 1])
        dump = [] if dump_path else None
        flat = r.call("HGETALL", key)
        segments = sorted((int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2))
        total_segments += len(segments)
        total_segment_blobs += sum(len(blob) for _, blob in segments)
        ops = []
        for _, blob in segments:
            segment = json.loads(unpack(blob))
            if dump is not None:
                dump.append(segment)
            for commit_ops in segment["ops"]:
                ops.append(json.dumps(commit_ops, separators=(",", ":"), sort_keys=True).encode())
        raw = b"\n".join(ops)
        total_bytes += memory
        if dump_path:
            with open(dump_path, "a") as f:
                f.write(json.dumps({"doc": key.decode(), "segments": dump}) + "\n")
        total_commits += len(ops)
        total_ops += len(raw)
        total_zops += len(zlib.compress(raw, 6))
    if total_commits == 0:
        print("no sealed history found")
        return
    print(f"docs with history: {len(keys)}; sealed commits: {total_commits}")
    print(f"history in Redis: {total_bytes} bytes = {total_bytes / total_commits:.1f} bytes per commit")
    print(f"ops: {total_ops} bytes raw ({total_ops / total_commits:.1f}/commit), {total_zops} zlib ({total_zops / total_commits:.1f}/commit)")
    print(f"history / compressed ops: {total_bytes / total_zops:.2f} (goal <= 1.5)")
    print(f"segments: {total_segments}, {total_segment_blobs} bytes of blobs ({total_segment_blobs / total_commits:.1f}/commit); "
          + "Redis memory by key: " + ", ".join(f"{name.decode()} {used}" for name, used in per_key.items()))
    print("checkpoints: " + ", ".join(
        f"{kind} {count} ({size} bytes of blobs, {size / count:.0f} each)" if count else f"{kind} 0"
        for kind, (count, size) in checkpoints.items()))


if __name__ == "__main__":
    main()
