"""Reference clients for the agent ceiling: plain aiohttp with little or no parsing.

They send the same POST as llmping, closed loop, and show what Python with aiohttp can
do on this machine before any of llmping's own work:

- ``aiohttp``: reads each body with ``readany()`` and drops it.
- ``aiohttp-json``: also splits the body into lines and decodes every ``data:`` payload
  with the standard library's ``json.loads``.
- ``aiohttp-orjson``: the same with ``orjson.loads`` (only when orjson is installed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import harness

DONE_PAYLOAD = b"[DONE]"
KINDS = ("aiohttp", "aiohttp-json", "aiohttp-orjson")


def decoder_for(kind: str) -> Callable[[bytes], Any] | None:
    """Return the JSON decoder a reference kind uses, None for no parsing."""
    if kind == "aiohttp":
        return None
    if kind == "aiohttp-json":
        return json.loads
    if kind == "aiohttp-orjson":
        import orjson

        return orjson.loads
    raise ValueError(f"unknown reference client {kind!r}, expected one of {', '.join(KINDS)}")


async def read_body(response: aiohttp.ClientResponse, decode: Callable[[bytes], Any] | None) -> int:
    """Read a body to its end; return how many data payloads were decoded."""
    pending = b""
    decoded = 0
    while True:
        piece = await response.content.readany()
        if not piece:
            return decoded
        if decode is None:
            continue
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data: ") and line[6:] != DONE_PAYLOAD:
                decode(line[6:])
                decoded += 1


async def run_plain(
    kind: str, base_url: str, concurrency: int, duration_s: float, warmup_s: float
) -> float:
    """Run ``concurrency`` closed-loop workers; return responses per second after warm-up."""
    decode = decoder_for(kind)
    body = harness.request_body()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench-key"}
    url = base_url + harness.CHAT_PATH
    started = time.perf_counter()
    measure_from = started + warmup_s
    end = measure_from + duration_s
    counted = 0

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal counted
        while time.perf_counter() < end:
            async with session.post(url, data=body, headers=headers) as response:
                await read_body(response, decode)
            if measure_from <= time.perf_counter() < end:
                counted += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(work(session) for _ in range(concurrency)))
    return counted / duration_s
