"""Drivers: start one provider lane's requests when its load model schedules them.

A driver calls an ``AttemptFn`` once per attempt and never measures anything itself.
``OpenLoopDriver`` follows a fixed schedule and enforces the optional in-flight cap.
With overflow "delay", an arrival waits for a free slot, but only until the load window
ends: arrivals still waiting then are dropped and counted as dropped by the cap, so a
10 s plan does not keep sending after 10 s. Requests already in flight finish normally.
``ClosedLoopDriver`` keeps the model's number of workers busy. Cancelling ``run()``
cancels the requests in flight and waits until each has recorded its outcome.

Once the lane's ``LaneBreaker`` stops it, a driver starts no request and no retry, and
the requests already in flight finish normally. An open-loop lane keeps its schedule
until the load ends and counts each later arrival as not sent. A closed-loop lane
ends at once, because it has no schedule and a request_count it would never reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from llmping.agent.load import Arrival, ClosedLoop, OpenLoop
from llmping.agent.retry import LaneBreaker, RetryRule
from llmping.agent.wake_timer import WakeTimer

log = logging.getLogger(__name__)

# Send one attempt: (arrival, attempt number, measure_from_scheduled) -> error class,
# "" on success. Must not raise except asyncio.CancelledError.
AttemptFn = Callable[[Arrival, int, bool], Awaitable[str]]

OVERFLOW_DELAY = "delay"
OVERFLOW_DROP = "drop"

# How long before a deadline sleep_until() stops sleeping and polls the clock, where
# no WakeTimer is available (see agent/wake_timer.py).
# CPython 3.11's EpollSelector rounds timeouts up to whole milliseconds, so a plain
# sleep wakes up to 1 ms late. uvloop 0.23 keeps timers in milliseconds too but fired
# them up to 1.3 ms early in a local measurement. The loop in sleep_until() sleeps
# again after an early wake, so uvloop needs no polling window, which saves CPU.
_STDLIB_LOOP_WINDOW_NS = 1_000_000

# Arrivals dropped at the window end are counted in batches of this size, with a yield
# to the event loop after each batch.
_DROP_COUNT_BATCH = 10_000


def spin_window_ns() -> int:
    """Return the polling window for the running event loop."""
    loop_module = type(asyncio.get_running_loop()).__module__
    return 0 if loop_module.startswith("uvloop") else _STDLIB_LOOP_WINDOW_NS


async def sleep_until(deadline_ns: int, window_ns: int) -> None:
    """Sleep until perf_counter_ns() reaches ``deadline_ns``, waking as close to it as possible."""
    while True:
        remaining_ns = deadline_ns - time.perf_counter_ns()
        if remaining_ns <= 0:
            return
        if remaining_ns > window_ns:
            await asyncio.sleep((remaining_ns - window_ns) / 1e9)
        else:
            await asyncio.sleep(0)


@dataclass
class LaneCounters:
    """Live counts of one lane, read by heartbeats and the assignment's diagnosis."""

    arrivals: int = 0
    in_flight: int = 0
    delayed_by_cap: int = 0
    dropped_by_cap: int = 0
    # The part of dropped_by_cap that was still waiting for a slot when the window ended.
    dropped_at_window_end: int = 0
    # Open-loop arrivals scheduled after the lane's breaker stopped it.
    not_sent_after_stop: int = 0


async def run_attempts(
    arrival: Arrival,
    send: AttemptFn,
    retry: RetryRule,
    measure_from_scheduled: bool,
    breaker: LaneBreaker | None = None,
) -> None:
    """Send ``arrival`` and its retries; each retry is scheduled when its backoff ends.

    No retry is sent once ``breaker`` has stopped the lane.
    """
    attempt = 1
    while True:
        error_class = await send(arrival, attempt, measure_from_scheduled)
        if not retry.should_retry(error_class, attempt):
            return
        if breaker is not None and breaker.stopped:
            return
        attempt += 1
        await asyncio.sleep(retry.backoff_before_s(attempt))
        arrival = Arrival(time.perf_counter_ns(), arrival.stage_index, arrival.warmup)


async def _acquire_before(slots: asyncio.Semaphore, deadline_ns: int | None) -> bool:
    """Acquire a slot and return True, or False once perf_counter_ns() passes ``deadline_ns``."""
    if deadline_ns is None:
        await slots.acquire()
        return True
    try:
        async with asyncio.timeout(max(0.0, (deadline_ns - time.perf_counter_ns()) / 1e9)):
            await slots.acquire()
    except TimeoutError:
        return False
    return True


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("request task failed", exc_info=task.exception())


class OpenLoopDriver:
    """Starts arrivals at their scheduled times, whatever the provider's speed."""

    measure_from_scheduled = True

    def __init__(
        self,
        model: OpenLoop,
        send: AttemptFn,
        retry: RetryRule,
        max_in_flight: int = 0,
        overflow: str = OVERFLOW_DELAY,
        breaker: LaneBreaker | None = None,
    ) -> None:
        if overflow not in (OVERFLOW_DELAY, OVERFLOW_DROP):
            raise ValueError(f"overflow must be 'delay' or 'drop', got {overflow!r}")
        self.model = model
        self.counters = LaneCounters()
        self._send = send
        self._retry = retry
        self._breaker = breaker or LaneBreaker()
        self._overflow = overflow
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight > 0 else None
        self._tasks: set[asyncio.Task[None]] = set()
        # When the scheduler last got a slot after waiting for one. Arrivals scheduled
        # before it were held up by the cap even if a slot is free when their turn comes.
        self._unblocked_ns = 0

    async def run(self, start_ns: int) -> None:
        """Run the whole schedule, then wait for the requests still in flight."""
        wake_timer = WakeTimer.create()
        try:
            await self._run(start_ns, wake_timer)
        finally:
            if wake_timer is not None:
                wake_timer.close()

    async def _run(self, start_ns: int, wake_timer: WakeTimer | None) -> None:
        spin_ns = spin_window_ns()
        end_ns = self.model.limits.end_ns
        window_end_ns = None if end_ns is None else start_ns + end_ns
        try:
            arrivals = self.model.arrivals(start_ns)
            for arrival in arrivals:
                if self._breaker.stopped:
                    # A stopped lane sends nothing, so its arrivals need no precise wake-up.
                    await sleep_until(arrival.scheduled_ns, 0)
                elif wake_timer is not None:
                    await wake_timer.sleep_until(arrival.scheduled_ns)
                else:
                    await sleep_until(arrival.scheduled_ns, spin_ns)
                self.counters.arrivals += 1
                if self._breaker.stopped:
                    self.counters.not_sent_after_stop += 1
                    continue
                if self._drops_at_cap():
                    self.counters.dropped_by_cap += 1
                    continue
                if not await self._wait_for_slot(arrival, window_end_ns):
                    await self._drop_waiting(arrivals)
                    break
                if self._breaker.stopped:
                    # The lane stopped while this arrival waited for a slot.
                    self._release_slot()
                    self.counters.not_sent_after_stop += 1
                    continue
                self._spawn(arrival)
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        except asyncio.CancelledError:
            await _cancel_all(self._tasks)
            raise

    def _drops_at_cap(self) -> bool:
        """Return whether overflow "drop" applies to an arrival now."""
        return self._overflow == OVERFLOW_DROP and self._slots is not None and self._slots.locked()

    async def _wait_for_slot(self, arrival: Arrival, window_end_ns: int | None) -> bool:
        """Take a slot, waiting for one if needed. Return False if the window ended first."""
        if self._slots is None:
            return True
        waited = self._slots.locked()
        if waited and not await _acquire_before(self._slots, window_end_ns):
            return False
        if not waited:
            await self._slots.acquire()
        if waited or arrival.scheduled_ns < self._unblocked_ns:
            self.counters.delayed_by_cap += 1
        if waited:
            self._unblocked_ns = time.perf_counter_ns()
        return True

    async def _drop_waiting(self, arrivals: Iterator[Arrival]) -> None:
        """Drop the arrival that waited past the window end and every later one.

        The later arrivals are all scheduled before the window end, so they are overdue
        and would have waited for a slot as well.
        """
        dropped = 1
        for _ in arrivals:
            dropped += 1
            # A cap that stayed full from early on leaves millions of arrivals to count,
            # and the heartbeats must keep going meanwhile.
            if dropped % _DROP_COUNT_BATCH == 0:
                await asyncio.sleep(0)
        self.counters.arrivals += dropped - 1
        self.counters.dropped_by_cap += dropped
        self.counters.dropped_at_window_end += dropped
        log.debug(
            "%s: dropped %d arrivals still waiting for an in-flight slot when the load "
            "window ended",
            self.model.label,
            dropped,
        )

    def _spawn(self, arrival: Arrival) -> None:
        task = asyncio.create_task(self._run_arrival(arrival))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_task_failure)

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _run_arrival(self, arrival: Arrival) -> None:
        self.counters.in_flight += 1
        try:
            await run_attempts(
                arrival, self._send, self._retry, self.measure_from_scheduled, self._breaker
            )
        finally:
            self.counters.in_flight -= 1
            self._release_slot()


class ClosedLoopDriver:
    """Keeps the model's number of workers sending back to back."""

    measure_from_scheduled = False

    def __init__(
        self,
        model: ClosedLoop,
        send: AttemptFn,
        retry: RetryRule,
        breaker: LaneBreaker | None = None,
    ) -> None:
        self.model = model
        self.counters = LaneCounters()
        self._send = send
        self._retry = retry
        self._breaker = breaker or LaneBreaker()
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._target_workers = 0
        self._ended = False
        # Set when the request count is reached or the breaker stopped the lane.
        self._no_more_requests = asyncio.Event()
        self._start_ns = 0

    async def run(self, start_ns: int) -> None:
        """Run until the end time or request count, then wait for the last requests."""
        self._start_ns = start_ns
        try:
            await self._supervise()
            self._ended = True
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
        except asyncio.CancelledError:
            self._ended = True
            await _cancel_all(set(self._workers.values()))
            raise

    async def _supervise(self) -> None:
        """Adjust the worker count at stage and ramp steps until the load ends."""
        end_ns = self.model.limits.end_ns
        while not self._no_more_requests.is_set():
            elapsed_ns = time.perf_counter_ns() - self._start_ns
            if end_ns is not None and elapsed_ns >= end_ns:
                return
            self._target_workers = self.model.workers_at(elapsed_ns)
            self._spawn_missing_workers()

            candidates = (self.model.next_change_ns(elapsed_ns), end_ns)
            wake_points = [t for t in candidates if t is not None]
            if not wake_points:
                # Constant worker count with only a request count: wait for the count.
                await self._no_more_requests.wait()
                return
            timeout_s = (self._start_ns + min(wake_points) - time.perf_counter_ns()) / 1e9
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._no_more_requests.wait(), max(0.0, timeout_s))

    def _spawn_missing_workers(self) -> None:
        for worker_index in range(self._target_workers):
            worker = self._workers.get(worker_index)
            if worker is None or worker.done():
                task = asyncio.create_task(self._work(worker_index))
                task.add_done_callback(_log_task_failure)
                self._workers[worker_index] = task

    def _claim_request(self) -> bool:
        if self._breaker.stopped:
            self._no_more_requests.set()
            return False
        count = self.model.limits.request_count
        if count and self.counters.arrivals >= count:
            self._no_more_requests.set()
            return False
        self.counters.arrivals += 1
        return True

    async def _work(self, worker_index: int) -> None:
        """Send requests back to back while this worker is within the target count."""
        limits = self.model.limits
        while not self._ended and worker_index < self._target_workers:
            now_ns = time.perf_counter_ns()
            elapsed_ns = now_ns - self._start_ns
            if limits.end_ns is not None and elapsed_ns >= limits.end_ns:
                return
            if not self._claim_request():
                return
            arrival = Arrival(
                scheduled_ns=now_ns,
                stage_index=self.model.profile.stage_at(elapsed_ns),
                warmup=limits.is_warmup(elapsed_ns),
            )
            self.counters.in_flight += 1
            try:
                await run_attempts(
                    arrival, self._send, self._retry, self.measure_from_scheduled, self._breaker
                )
            finally:
                self.counters.in_flight -= 1
            # An attempt that fails without awaiting anything (an executor that returns at
            # once) would otherwise keep this loop going and starve every other task.
            await asyncio.sleep(0)


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until each has finished its cleanup."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


LoadDriver = OpenLoopDriver | ClosedLoopDriver
