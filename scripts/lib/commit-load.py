#!/usr/bin/env python3
"""Group commits of one push each (the overload scenario's shape at 10,000 pushes/s: a batch is about one
commit), written as RESP for `redis-cli --pipe` (scripts/redis-cost.sh, SIDE=server).

The script is GroupCommitScript.commit, read from the Swift source (so a change to it is measured
without a build). Each phase file continues the state of the one before (clocks, record versions,
session counters), so every call commits ('ok'); the caller checks the final clocks with `expect`.

  commit-load.py SOURCE OUTDIR DOCS WARMUP N      → OUTDIR/script.lua, warmup.resp, small.resp (N calls),
                                                   large.resp (2N calls), expect (doc clock per line)
Each doc has 5 sessions (editors); a push patches its editor's own record, as tandem-bench sync does:
ops {"edK":["patch",{"f":["put",ID]}]}, an 'e' expectation with the replica's version, one 'p' write.
BATCH (environment, 1 to 5, default 1) pushes per call, from that many sessions of one doc.
ROUND (environment, default 0) > 0: commit rounds (GroupCommitScript.commitRound, stop 30) of ROUND docs'
batches each, the docs taken in turn (DOCS should be a multiple of ROUND); the phases then hold N (2N)
rounds, and the caller divides by ROUND for one doc's commit. ROUND=0: one `commit` call per batch.
OWN (environment, default -1): the calls' ownSubscribers; 1 (a node subscribed to its docs, alone on them)
makes each commit count the channel's subscribers (`PUBSUB NUMSUB`, stop 31) as a node does on one Redis.
"""
import os
import re
import sys

import resp  # scripts/lib/resp.py, beside this file


def swift_string(text):
    """A Swift multi-line literal's body: indentation of the closing delimiter removed, `\\\\` unescaped."""
    lines = text.split("\n")
    indent = min(len(l) - len(l.lstrip(" ")) for l in lines if l.strip())
    body = "\n".join(l[indent:] for l in lines)
    if re.search(r"\\[^\\]", body.replace("\\\\", "")):
        sys.exit("unexpected escape in the Swift literal")
    return body.replace("\\\\", "\\")


def literal(src, name):
    """`static let NAME = \"\"\"…\"\"\"`'s text."""
    return swift_string(re.search(r'static let %s = """\n(.*?)\n\s*"""' % name, src, re.S).group(1))


def script(source, round_docs=0):
    """The script's text, and whether it is the form from before stop 29 (keepAlive + body: 15 keys, the
    channel and 14 header arguments), so SCRIPT= can still measure an older copy. round_docs > 0: the
    commit-round script (`roundHead` + `commitBody` + `roundTail`, as GroupCommitScript.commitRound)."""
    src = open(source).read()
    if "static let commitBody = " in src:
        # roundHead and commitPrologue end in an empty line (a newline the pattern leaves out); roundTail
        # starts with one.
        body = literal(src, "commitBody")
        if round_docs:
            return literal(src, "roundHead") + "\n" + body + literal(src, "roundTail") + "\n", False
        prologue = literal(src, "commitPrologue") + "\n" if "static let commitPrologue = " in src else ""
        return prologue + body + "\n", False
    if round_docs:
        sys.exit("%s has no commit-round script (GroupCommitScript.commitRound)" % source)
    old = re.search(r'static let commit = RedisScript\(\s*keepAlive \+ """\n(.*?)\n\s*"""\)', src, re.S)
    if old:
        keep = re.search(r'static let keepAlive = """\n(.*?)\n\s*"""', src, re.S).group(1)
        return swift_string(keep) + "\n" + swift_string(old.group(1)) + "\n", True
    commit = re.search(r'static let commit = RedisScript\(\s*"""\n(.*?)\n\s*"""\)', src, re.S).group(1)
    return swift_string(commit) + "\n", False


NOW_MS = int(os.environ.get("NOW_MS") or __import__("time").time() * 1000)  # the commits' `at`: a doc's deadline is at + --doc-ttl

OLD_SUFFIXES = ["clock", "records", "versions", "tombs", "log", "pushids", "pushlast", "pushes", "pushers", "sum",
                "hsealed", "hsegs", "hindex", "hckpts", "hversions"]


def main():
    source, outdir, docs, warmup, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    round_docs = int(os.environ.get("ROUND") or 0)
    text, old = script(source, round_docs)
    text = text.rstrip("\n")  # as `$(cat script.lua)` passes it
    open(os.path.join(outdir, "script.lua"), "w").write(text)
    import hashlib
    sha = hashlib.sha1(text.encode()).hexdigest()
    clock = [0] * docs
    versions = [dict() for _ in range(docs)]
    next_id = [1] * (docs * 5)
    calls = [0]

    batch = int(os.environ.get("BATCH") or 1)
    own = int(os.environ.get("OWN") or -1)
    assert 1 <= batch <= 5

    def commit(d):
        keys, args = call(d)
        return resp.command("EVALSHA", sha, len(keys), *keys, *args)

    def round_call(ds):
        """One commit round: each doc's clock key, the four arguments every doc shares (node, retention,
        docTTLMs, nowMs), then per doc the rest of its arguments (GroupCommitScript.commitRound)."""
        keys, args = [], []
        for d in ds:
            k, a = call(d)
            if not args:
                args = [a[0], a[1], a[2], a[4]]
            keys += k
            args += [a[3]] + a[5:-1] + [own]  # its mode, growth…deltas, ownSubscribers (-1: always publish)
        return resp.command("EVALSHA", sha, len(keys), *keys, *args)

    def call(d):
        doc = "bench-doc-%04d" % d
        calls[0] += 1
        first = clock[d] + 1
        pushes, expectations, writes, deltas, created = [], [], [], [], 0
        for k in range(batch):
            editor = (calls[0] + k) % 5
            sid = "c2Vzc2lvbi0%04d-%d-xYz" % (d, editor)
            pid = next_id[d * 5 + editor]
            next_id[d * 5 + editor] += 1
            record = "ed%d" % editor
            pushes += [sid, str(pid), '{"%s":["patch",{"f":["put",%d]}]}' % (record, pid)]
            have = versions[d].get(record)
            expectations += [record, "e", str(have)] if have else [record, "a", ""]
            writes += [record, "p" if have else "c", '{"f":%d}' % pid, k]
            created += 0 if have else 1
            deltas.append("%016x" % ((pid * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
            versions[d][record] = first + k
        clock[d] += batch
        if old:
            keys = ["tandem:{%s}:%s" % (doc, s) for s in OLD_SUFFIXES]
            args = ["node-7f3a9c", "tandem:{%s}" % doc, 10000, 100000, 30 * 86400000, "b", "0", NOW_MS + calls[0]]
            args += [created, 0, batch, "t%d" % calls[0], "", ""]
        else:
            keys = ["tandem:{%s}:clock" % doc]  # the doc's other keys and channel are made from it
            args = ["node-7f3a9c", 10000, 30 * 86400000, "b", NOW_MS + calls[0]]
            args += ["%d 0 100000" % created if created else "0", batch, "t%d" % calls[0], ""]
        args += pushes + [batch] + expectations + [batch] + writes + deltas + ([] if old else [own])
        return keys, args

    rounds = [0]

    def phase(name, count):
        with open(os.path.join(outdir, name), "wb") as f:
            for k in range(count):
                if round_docs:
                    first = rounds[0] * round_docs
                    rounds[0] += 1
                    f.write(round_call([(first + j) % docs for j in range(round_docs)]))
                else:
                    f.write(commit(k % docs))

    phase("warmup.resp", warmup)
    phase("small.resp", n)
    phase("large.resp", 2 * n)
    with open(os.path.join(outdir, "expect"), "w") as f:
        for d in range(docs):
            f.write("tandem:{bench-doc-%04d}:clock %d\n" % (d, clock[d]))


main()
