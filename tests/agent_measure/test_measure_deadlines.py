"""The deadline guard's single timer: each limit fires with its own class, never early."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Awaitable

import pytest

from llmping.agent.deadlines import DeadlineGuard, TimeoutLimits
from llmping.agent.errors import TIMEOUT_CONNECT, TIMEOUT_IDLE, TIMEOUT_TOTAL, TIMEOUT_TTFT

LONG_S = 30.0


def limits(**overrides: float) -> TimeoutLimits:
    values = {"connect_s": LONG_S, "ttft_s": LONG_S, "idle_s": LONG_S, "total_s": LONG_S}
    values.update(overrides)
    return TimeoutLimits(**values)


async def read_every(guard: DeadlineGuard, interval_s: float, count: int) -> None:
    for _ in range(count):
        guard.bytes_arrived(time.perf_counter_ns())
        await asyncio.sleep(interval_s)


# The loop clock and perf_counter_ns may round differently by a little.
CLOCK_SLACK_S = 0.005


def new_guard(**overrides: float) -> tuple[DeadlineGuard, int]:
    send_ns = time.perf_counter_ns()
    return DeadlineGuard(limits(**overrides), send_ns), send_ns


async def run_until_timeout(guard: DeadlineGuard, send_ns: int, body: Awaitable[None]) -> float:
    """Run body inside the guard's scope; return the seconds from send to the timeout."""
    scope = guard.scope()
    with pytest.raises(TimeoutError):
        async with scope:
            await body
    assert scope.expired()
    return (time.perf_counter_ns() - send_ns) / 1e9 + CLOCK_SLACK_S


async def test_deadline_connect_fires() -> None:
    guard, send_ns = new_guard(connect_s=0.1)
    elapsed_s = await run_until_timeout(guard, send_ns, asyncio.sleep(LONG_S))
    assert guard.timeout_error("connect", False, 0).error_class == TIMEOUT_CONNECT
    assert 0.1 <= elapsed_s < 2


async def test_deadline_idle_after_reads_stop() -> None:
    guard, send_ns = new_guard(idle_s=0.1)

    async def body() -> None:
        guard.connected()
        await read_every(guard, 0.03, 10)
        await asyncio.sleep(LONG_S)

    elapsed_s = await run_until_timeout(guard, send_ns, body())
    error = guard.timeout_error("body", True, 0)
    assert error.error_class == TIMEOUT_IDLE
    assert error.detail == "read idle timeout after partial output (no bytes for 0.1 s)"
    # Ten reads 30 ms apart kept the request alive past the first 0.1 s; the last
    # one came at 0.27 s at the earliest.
    assert 0.27 + 0.1 <= elapsed_s < 3


async def test_deadline_first_read_brings_idle_earlier() -> None:
    guard, send_ns = new_guard(idle_s=0.1)

    async def body() -> None:
        guard.connected()
        guard.bytes_arrived(time.perf_counter_ns())
        await asyncio.sleep(LONG_S)

    elapsed_s = await run_until_timeout(guard, send_ns, body())
    assert guard.timeout_error("first_token", False, 0).error_class == TIMEOUT_IDLE
    assert 0.1 <= elapsed_s < 2


async def test_deadline_reads_do_not_move_ttft() -> None:
    guard, send_ns = new_guard(ttft_s=0.2, idle_s=0.1)

    async def body() -> None:
        guard.connected()
        await read_every(guard, 0.02, 1000)

    elapsed_s = await run_until_timeout(guard, send_ns, body())
    error = guard.timeout_error("first_token", False, 5)
    assert error.error_class == TIMEOUT_TTFT
    assert error.detail == "no generated text within 0.2 s (5 keep-alive events received)"
    assert 0.2 <= elapsed_s < 2


async def test_deadline_total_while_text_flows() -> None:
    guard, send_ns = new_guard(ttft_s=0.1, idle_s=0.1, total_s=0.3)

    async def body() -> None:
        guard.connected()
        guard.text_arrived()
        await read_every(guard, 0.02, 1000)

    elapsed_s = await run_until_timeout(guard, send_ns, body())
    assert guard.timeout_error("body", True, 0).error_class == TIMEOUT_TOTAL
    assert 0.3 <= elapsed_s < 2


async def test_deadline_block_ends_in_time() -> None:
    guard, _ = new_guard(idle_s=0.05, total_s=0.1)
    scope = guard.scope()
    async with scope:
        guard.connected()
        guard.bytes_arrived(time.perf_counter_ns())
    await asyncio.sleep(0.15)
    assert not scope.expired()


async def test_deadline_timer_released_at_exit() -> None:
    # A timer still set after the block would keep the guard alive until it fired.
    guard, _ = new_guard()
    async with guard.scope():
        guard.bytes_arrived(time.perf_counter_ns())
    reference = weakref.ref(guard)
    del guard
    gc.collect()
    assert reference() is None
