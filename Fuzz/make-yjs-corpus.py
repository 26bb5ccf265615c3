"""Writes the seed corpora of the TandemYjs fuzz harnesses from pycrdt-generated documents.

    .venv/bin/python Fuzz/make-yjs-corpus.py

Corpus/fuzz-yjs-update: updates (local edits, sync diffs, whole documents) of a few scenarios.
Corpus/fuzz-yjs-merge:  lib0 lists (varUint count, varUint8Array each) of a scenario's updates.
Corpus/fuzz-yjs-message: the y-protocols messages pycrdt writes (sync steps, updates, awareness).
"""

import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "yjs"))
import pycrdt_oracle  # noqa: E402


def var_uint(value):
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def write(target, data):
    folder = os.path.join(HERE, "Corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as file:
        file.write(data)


for seed in range(1, 9):
    scenario = pycrdt_oracle.scenario(seed, 2 + seed % 3, 12)
    updates = [bytes.fromhex(u) for u in scenario["updates"]]
    for update in updates[:6] + [bytes.fromhex(scenario["full"])]:
        write("fuzz-yjs-update", update)
    chosen = updates[:5]
    write("fuzz-yjs-merge", var_uint(len(chosen)) + b"".join(var_uint(len(u)) + u for u in chosen))
    for message in pycrdt_oracle.messages(seed):
        write("fuzz-yjs-message", bytes.fromhex(message))
