#!/usr/bin/env python3
"""Groups the allocations an allocation-counting test traced by call stack (issue 14).

    TANDEM_ALLOCATION_TRACE=1 swift test --skip-build --no-parallel --filter PresenceAllocationTests > trace.txt 2>&1
    scripts/allocation-trace.py trace.txt --last 50            # the last 50 allocations (e.g. one tick)
    scripts/allocation-trace.py trace.txt --last 20 --skip 50  # the 20 before those (e.g. a round's updates)

With TANDEM_ALLOCATION_TRACE=1, Tests/AllocationCounter writes each counted allocation's stack to stderr
(`--- allocation`, then backtrace_symbols_fd lines). The test executable's own frames are offsets only (its
symbols are not exported): llvm-symbolizer names them, `swift demangle` makes them readable. Prints each
distinct stack (the allocator's own frames dropped) with how many allocations it made, most first.
"""
import argparse
import collections
import re
import subprocess

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("trace")
parser.add_argument("--last", type=int, default=0, help="only the last N allocations (after --skip)")
parser.add_argument("--skip", type=int, default=0, help="leave out the last N allocations first")
parser.add_argument("--depth", type=int, default=9, help="frames per stack to group by (default 9)")
args = parser.parse_args()

blocks = open(args.trace, errors="replace").read().split("--- allocation\n")[1:]
blocks = [[line for line in block.splitlines() if re.match(r"^/.*\[0x[0-9a-f]+\]$", line)] for block in blocks]
if args.skip:
    blocks = blocks[: -args.skip]
if args.last:
    blocks = blocks[-args.last :]

names = {}
ALLOCATOR = ("malloc", "calloc", "realloc", "posix_memalign", "memalign", "aligned_alloc", "swift_slowAlloc",
             "swift_allocObject")


def name(line):
    match = re.match(r"^(\S+?)\((.*?)\)\[0x[0-9a-f]+\]$", line)
    if not match:
        return line
    path, inner = match.groups()
    if not inner.startswith("+"):
        return inner.split("+")[0]
    key = (path, inner[1:])
    if key not in names:
        out = subprocess.run(["llvm-symbolizer", "--obj=" + path, "--functions=linkage", key[1]],
                             capture_output=True, text=True).stdout.splitlines()
        symbol = out[0] if out else "??"
        demangled = subprocess.run(["swift", "demangle", "--simplified", "--compact", symbol],
                                   capture_output=True, text=True).stdout.strip()
        names[key] = demangled or symbol
    return names[key]


stacks = collections.Counter()
for block in blocks:
    frames = [name(line) for line in block[1:]]  # (the first frame is the counter's own function)
    frames = [f for f in frames if f.split("(")[0].strip() not in ALLOCATOR and f != "??"]
    stacks[tuple(frames[: args.depth])] += 1
print(f"{len(blocks)} allocations, {len(stacks)} distinct stacks")
for stack, count in stacks.most_common():
    print(count)
    for frame in stack:
        print("    " + frame[:200])
