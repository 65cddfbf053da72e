"""Garbage collector settings for an agent process.

CPython starts a generation-0 collection once 700 more container objects exist than
at the last one. An agent creates many per response: its task, aiohttp's request and
response objects, the accumulator and the parsed chunks. In bench/agent_ceiling.py
(64-chunk responses, CPython 3.11.7) the collector ran about once every ten responses,
and a full collection of every object in the process came every few seconds. That cost
10 to 13% of the agent's CPU, and every collection also delays the reads queued behind
it.

An agent process therefore raises the generation-0 threshold and freezes the objects
that exist after start-up (modules, classes, configuration), so that collections walk
only what the run created. Garbage in reference cycles then waits for up to
GEN0_THRESHOLD new objects before it is freed, tens of megabytes at most.
"""

from __future__ import annotations

import gc

# Allocations of container objects between two generation-0 collections (CPython's
# default is 700). Generations 1 and 2 keep their defaults (10, 10).
GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Raise the generation-0 threshold and exclude every existing object from collections."""
    _, gen1, gen2 = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
