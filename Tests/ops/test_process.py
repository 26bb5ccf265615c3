"""The `tandem` process as shipped: what the ops plane cannot see from its metrics."""
import sys

import pytest

from conftest import Stack


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jemalloc is linked on Linux only")
def test_nodes_allocate_through_jemalloc(scraped_stack: Stack):
    """Package.swift links the executable with jemalloc (docs/architecture.md, "Memory allocator"): a node
    whose maps lack it would run on glibc's malloc, ~10 % more CPU per commit, with nothing else to show it."""
    for name, node in scraped_stack.nodes.items():
        with open(f"/proc/{node.process.pid}/maps") as maps:
            libraries = {line.split()[-1] for line in maps if len(line.split()) >= 6}
        assert any("libjemalloc" in path for path in libraries), f"{name}: no libjemalloc mapped: {sorted(libraries)}"
