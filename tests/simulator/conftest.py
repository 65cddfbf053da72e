"""Fixtures for simulator and delay-proxy tests: real servers on 127.0.0.1, port 0."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from llmping.simulator import ProviderProfile, SimulatorHandle, start_simulator

StartSimulator = Callable[..., Awaitable[SimulatorHandle]]


def make_profile(**overrides: Any) -> ProviderProfile:
    """Return a fast, error-free profile named "sim" offering model "m", with overrides."""
    fields: dict[str, Any] = {
        "name": "sim",
        "models": ("m",),
        "ttft_ms": 0.0,
        "tokens_per_s": 1000.0,
        "output_tokens": 5,
    }
    fields.update(overrides)
    return ProviderProfile(**fields)


def with_quirks(profile: ProviderProfile, **quirks: Any) -> ProviderProfile:
    return dataclasses.replace(profile, quirks=dataclasses.replace(profile.quirks, **quirks))


@dataclasses.dataclass
class SseLine:
    """One non-empty line of an event stream and when the client read it."""

    received_ns: int
    text: str

    @property
    def data(self) -> Any:
        """Parsed JSON of a data line ([DONE] stays a string)."""
        payload = self.text.removeprefix("data: ")
        return payload if payload == "[DONE]" else json.loads(payload)


async def read_sse_lines(response: aiohttp.ClientResponse) -> list[SseLine]:
    """Read a whole event stream; decoding as strict UTF-8 fails on broken bytes."""
    lines: list[SseLine] = []
    async for raw in response.content:
        received_ns = time.perf_counter_ns()
        text = raw.decode("utf-8").rstrip("\n")
        if text:
            lines.append(SseLine(received_ns, text))
    return lines


def chat_body(model: str = "m", stream: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say something short."}],
    }
    body.update(extra)
    return body


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def simulator() -> AsyncIterator[StartSimulator]:
    """Start simulators with the given profiles; all are stopped after the test."""
    handles: list[SimulatorHandle] = []

    async def start(*profiles: ProviderProfile) -> SimulatorHandle:
        handle = await start_simulator("127.0.0.1", 0, list(profiles) or [make_profile()])
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()


# Test modules are imported with --import-mode=importlib, so they cannot import this
# file; the helpers reach them as fixtures.


@pytest.fixture
def profile() -> Callable[..., ProviderProfile]:
    return make_profile


@pytest.fixture
def quirky() -> Callable[..., ProviderProfile]:
    return with_quirks


@pytest.fixture
def read_sse() -> Callable[[aiohttp.ClientResponse], Awaitable[list[SseLine]]]:
    return read_sse_lines


@pytest.fixture
def body() -> Callable[..., dict[str, Any]]:
    return chat_body
