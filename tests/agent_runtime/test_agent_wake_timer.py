"""WakeTimer: a timerfd that wakes open-loop arrivals at their scheduled instant."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest
import uvloop

from llmping.agent import wake_timer
from llmping.agent.wake_timer import WakeTimer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="timerfd exists on Linux only"
)


async def _wake_lags_ns(timer: WakeTimer, count: int, step_ns: int) -> list[int]:
    start_ns = time.perf_counter_ns() + step_ns
    lags: list[int] = []
    for index in range(count):
        deadline_ns = start_ns + index * step_ns
        await timer.sleep_until(deadline_ns)
        lags.append(time.perf_counter_ns() - deadline_ns)
    return lags


async def _wakes_at_deadlines() -> list[int]:
    timer = WakeTimer.create()
    assert timer is not None
    try:
        return await _wake_lags_ns(timer, count=40, step_ns=1_000_000)
    finally:
        timer.close()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_wake_timer_never_early(run: object) -> None:
    lags = run(_wakes_at_deadlines())  # type: ignore[operator]
    assert len(lags) == 40
    assert min(lags) >= 0


async def test_wake_timer_past_deadline_returns() -> None:
    timer = WakeTimer.create()
    assert timer is not None
    try:
        await timer.sleep_until(time.perf_counter_ns() - 1_000_000)
        await timer.sleep_until(0)
        # Neither call armed the timer, so it has no expiration to read.
        with pytest.raises(BlockingIOError):
            os.read(timer._fd, 8)
    finally:
        timer.close()


async def test_wake_timer_reusable_after_cancel() -> None:
    timer = WakeTimer.create()
    assert timer is not None
    try:
        # Cancelled long before its deadline, and then the old deadline passes unused.
        task = asyncio.create_task(timer.sleep_until(time.perf_counter_ns() + 20_000_000))
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.03)

        deadline_ns = time.perf_counter_ns() + 5_000_000
        await timer.sleep_until(deadline_ns)
        assert time.perf_counter_ns() >= deadline_ns
    finally:
        timer.close()


async def test_wake_timer_rejects_two_waiters() -> None:
    timer = WakeTimer.create()
    assert timer is not None
    try:
        first = asyncio.create_task(timer.sleep_until(time.perf_counter_ns() + 50_000_000))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="another task waits"):
            await timer.sleep_until(time.perf_counter_ns() + 50_000_000)
        await first
    finally:
        timer.close()


async def test_wake_timer_close_releases_fd() -> None:
    timer = WakeTimer.create()
    assert timer is not None
    fd = timer._fd
    os.fstat(fd)
    timer.close()
    timer.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_libc_timerfd_arms_absolute_deadline() -> None:
    # Python 3.11 and 3.12 use this path, 3.13 and later the os module.
    calls = wake_timer._libc_timerfd()
    assert calls is not None
    create, arm = calls
    fd = create()
    try:
        deadline_ns = time.perf_counter_ns() + 20_000_000
        arm(fd, deadline_ns)
        with pytest.raises(BlockingIOError):
            os.read(fd, 8)
        while time.perf_counter_ns() < deadline_ns + 5_000_000:
            time.sleep(0.005)
        expirations = int.from_bytes(os.read(fd, 8), sys.byteorder)
        assert expirations == 1
    finally:
        os.close(fd)


def test_wake_timer_absent_without_monotonic_perf_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_info = time.get_clock_info

    def other_clock(name: str) -> object:
        info = real_info(name)
        if name == "perf_counter":
            info.implementation = "QueryPerformanceCounter()"
        return info

    monkeypatch.setattr(wake_timer.time, "get_clock_info", other_clock)

    async def create() -> WakeTimer | None:
        return WakeTimer.create()

    assert asyncio.run(create()) is None
