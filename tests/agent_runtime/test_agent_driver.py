"""Drivers: in-flight cap (delay and drop), closed-loop workers, retries, cancellation.

The attempt function here replaces the runner: it records each call and sleeps
for a fixed service time, which is all a driver can observe of a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from llmping.agent.driver import ClosedLoopDriver, OpenLoopDriver
from llmping.agent.load import Arrival, ClosedLoop, OpenLoop, build_model
from llmping.agent.retry import RetryRule
from llmping.v1 import llmping_pb2 as pb


@dataclass
class Recorder:
    """Attempt function that takes ``service_s`` and fails with ``errors`` in turn."""

    service_s: float = 0.05
    errors: list[str] = field(default_factory=list)
    calls: list[tuple[Arrival, int, bool]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0

    async def __call__(self, arrival: Arrival, attempt: int, from_scheduled: bool) -> str:
        self.calls.append((arrival, attempt, from_scheduled))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.service_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        return self.errors.pop(0) if self.errors else ""


def open_loop(rate_per_s: float, duration_s: float, request_count: int = 0) -> OpenLoop:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=duration_s)
    model = build_model(load, pb.LoadShare(rate_per_s=rate_per_s, request_count=request_count))
    assert isinstance(model, OpenLoop)
    return model


def closed_loop(concurrency: int, duration_s: float = 0, request_count: int = 0) -> ClosedLoop:
    load = pb.LoadSpec(mode=pb.LoadSpec.CLOSED, duration_s=duration_s)
    share = pb.LoadShare(concurrency=concurrency, request_count=request_count)
    model = build_model(load, share)
    assert isinstance(model, ClosedLoop)
    return model


async def test_open_loop_sends_every_arrival_on_schedule() -> None:
    recorder = Recorder(service_s=0.01)
    model = open_loop(rate_per_s=100, duration_s=0.2)
    driver = OpenLoopDriver(model, recorder, RetryRule())
    start_ns = time.perf_counter_ns() + 10_000_000

    await driver.run(start_ns)

    assert len(recorder.calls) == 20
    assert all(from_scheduled for _, _, from_scheduled in recorder.calls)
    scheduled = [arrival.scheduled_ns - start_ns for arrival, _, _ in recorder.calls]
    assert scheduled == [i * 10_000_000 for i in range(20)]
    assert driver.counters.arrivals == 20
    assert driver.counters.in_flight == 0


async def test_cap_delay_keeps_scheduled_times() -> None:
    recorder = Recorder(service_s=0.05)
    # A request count with no duration has no load window, so every arrival waits its turn.
    model = open_loop(rate_per_s=200, duration_s=0, request_count=20)
    driver = OpenLoopDriver(model, recorder, RetryRule(), max_in_flight=2, overflow="delay")
    start_ns = time.perf_counter_ns()

    await driver.run(start_ns)

    assert len(recorder.calls) == 20
    assert recorder.max_in_flight == 2
    # Only the first two found a free slot; every later arrival waited for one.
    assert driver.counters.delayed_by_cap == 18
    assert driver.counters.dropped_by_cap == 0
    scheduled = [arrival.scheduled_ns - start_ns for arrival, _, _ in recorder.calls]
    assert scheduled == [i * 5_000_000 for i in range(20)]


async def test_cap_drop_counts_dropped_arrivals() -> None:
    recorder = Recorder(service_s=0.05)
    model = open_loop(rate_per_s=200, duration_s=0.2)
    driver = OpenLoopDriver(model, recorder, RetryRule(), max_in_flight=2, overflow="drop")

    await driver.run(time.perf_counter_ns())

    sent = len(recorder.calls)
    assert recorder.max_in_flight == 2
    assert sent + driver.counters.dropped_by_cap == 40
    # Two slots of 50 ms over 200 ms serve about 8 requests, far fewer than 40.
    assert 4 <= sent <= 14
    assert driver.counters.delayed_by_cap == 0


async def test_cap_delay_drops_waiting_at_window_end() -> None:
    recorder = Recorder(service_s=0.15)
    # 100 arrivals per second for 0.2 s and two slots of 150 ms: the first two are sent
    # at once, the next two when those end at 150 ms, and 16 are still waiting at 200 ms.
    model = open_loop(rate_per_s=100, duration_s=0.2)
    driver = OpenLoopDriver(model, recorder, RetryRule(), max_in_flight=2, overflow="delay")
    start_ns = time.perf_counter_ns()

    await driver.run(start_ns)
    elapsed_s = (time.perf_counter_ns() - start_ns) / 1e9

    sent = len(recorder.calls)
    assert sent == 4
    assert driver.counters.arrivals == 20
    assert driver.counters.dropped_by_cap == 16
    assert driver.counters.dropped_at_window_end == 16
    assert driver.counters.delayed_by_cap == 2
    # The last two requests started at about 150 ms and took 150 ms. Sending the backlog
    # would have taken 20 / 2 * 150 ms = 1.5 s.
    assert elapsed_s < 0.6
    assert all(a.scheduled_ns - start_ns < 200_000_000 for a, _, _ in recorder.calls)


async def test_cap_delay_lets_in_flight_finish() -> None:
    recorder = Recorder(service_s=0.3)
    model = open_loop(rate_per_s=50, duration_s=0.1)
    driver = OpenLoopDriver(model, recorder, RetryRule(), max_in_flight=1, overflow="delay")
    start_ns = time.perf_counter_ns()

    await driver.run(start_ns)

    # The one request sent finished after the window end instead of being cancelled.
    assert len(recorder.calls) == 1
    assert recorder.cancelled == 0
    assert time.perf_counter_ns() - start_ns >= 300_000_000
    assert driver.counters.dropped_at_window_end == 4


async def test_cap_delay_counts_large_backlog() -> None:
    recorder = Recorder(service_s=0.6)
    # The one slot stays busy past the window end, so 24,999 arrivals wait and are dropped.
    model = open_loop(rate_per_s=50_000, duration_s=0.5)
    driver = OpenLoopDriver(model, recorder, RetryRule(), max_in_flight=1, overflow="delay")

    await driver.run(time.perf_counter_ns())

    assert len(recorder.calls) == 1
    assert driver.counters.arrivals == 25_000
    assert driver.counters.dropped_by_cap == 24_999
    assert driver.counters.dropped_at_window_end == 24_999


async def test_closed_loop_request_count() -> None:
    recorder = Recorder(service_s=0.01)
    driver = ClosedLoopDriver(closed_loop(concurrency=3, request_count=10), recorder, RetryRule())

    await driver.run(time.perf_counter_ns())

    assert len(recorder.calls) == 10
    assert recorder.max_in_flight == 3
    assert not any(from_scheduled for _, _, from_scheduled in recorder.calls)


async def test_closed_loop_stops_at_duration() -> None:
    recorder = Recorder(service_s=0.05)
    driver = ClosedLoopDriver(closed_loop(concurrency=2, duration_s=0.3), recorder, RetryRule())
    start_ns = time.perf_counter_ns()

    await driver.run(start_ns)

    # Two workers, 50 ms per request, 300 ms: about 12 requests, none started late.
    assert 8 <= len(recorder.calls) <= 14
    assert all(a.scheduled_ns - start_ns < 300_000_000 for a, _, _ in recorder.calls)
    assert recorder.max_in_flight == 2


async def test_closed_loop_stage_changes_worker_count() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CLOSED,
        stages=[pb.Stage(concurrency=1, duration_s=0.2), pb.Stage(concurrency=4, duration_s=0.2)],
    )
    share = pb.LoadShare(stages=[pb.StageShare(concurrency=1), pb.StageShare(concurrency=4)])
    model = build_model(load, share)
    assert isinstance(model, ClosedLoop)
    recorder = Recorder(service_s=0.02)

    await ClosedLoopDriver(model, recorder, RetryRule()).run(time.perf_counter_ns())

    stage_0 = [a for a, _, _ in recorder.calls if a.stage_index == 0]
    stage_1 = [a for a, _, _ in recorder.calls if a.stage_index == 1]
    assert 6 <= len(stage_0) <= 11
    assert len(stage_1) >= 3 * len(stage_0)
    assert recorder.max_in_flight == 4


async def test_closed_loop_yields_to_other_tasks() -> None:
    calls = 0

    async def fail_at_once(arrival: Arrival, attempt: int, from_scheduled: bool) -> str:
        nonlocal calls
        calls += 1
        return "connection_refused"

    ticks_ns: list[int] = []

    async def ticker() -> None:
        while True:
            ticks_ns.append(time.perf_counter_ns())
            await asyncio.sleep(0.001)

    ticker_task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    driver = ClosedLoopDriver(closed_loop(concurrency=2, duration_s=0.3), fail_at_once, RetryRule())
    start_ns = time.perf_counter_ns()
    try:
        await driver.run(start_ns)
    finally:
        ticker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker_task

    during = [t for t in ticks_ns if start_ns <= t]
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(during)]
    assert calls > 100
    # A worker that never yields would hold the loop for all 300 ms.
    assert len(during) >= 20
    assert max(gaps_ms) < 100


async def test_retries_make_new_attempts() -> None:
    recorder = Recorder(service_s=0.001, errors=["http_503", "http_503"])
    rule = RetryRule(max_attempts=3, backoff_s=0.01, on_error_classes=frozenset({"http_5xx"}))
    driver = ClosedLoopDriver(closed_loop(concurrency=1, request_count=2), recorder, rule)

    await driver.run(time.perf_counter_ns())

    assert [attempt for _, attempt, _ in recorder.calls] == [1, 2, 3, 1]
    # A retry is scheduled when its backoff ends, not at the first attempt's time.
    first, second = recorder.calls[0][0], recorder.calls[1][0]
    assert second.scheduled_ns - first.scheduled_ns >= 10_000_000
    assert driver.counters.arrivals == 2


async def test_no_retry_by_default() -> None:
    recorder = Recorder(service_s=0.001, errors=["http_503"])
    driver = ClosedLoopDriver(closed_loop(concurrency=1, request_count=2), recorder, RetryRule())

    await driver.run(time.perf_counter_ns())

    assert [attempt for _, attempt, _ in recorder.calls] == [1, 1]


@pytest.mark.parametrize("kind", ["open", "closed"])
async def test_cancel_stops_in_flight_requests(kind: str, waiter: Any) -> None:
    recorder = Recorder(service_s=10.0)
    driver: OpenLoopDriver | ClosedLoopDriver
    if kind == "open":
        driver = OpenLoopDriver(open_loop(rate_per_s=100, duration_s=5), recorder, RetryRule())
    else:
        driver = ClosedLoopDriver(closed_loop(concurrency=3, duration_s=5), recorder, RetryRule())
    task = asyncio.create_task(driver.run(time.perf_counter_ns()))
    await waiter(lambda: len(recorder.calls) >= 3, what="three requests in flight")

    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)

    assert task.cancelled()
    assert recorder.cancelled == len(recorder.calls)
    assert recorder.in_flight == 0
