"""Lane stop: a provider that keeps rejecting the model or the key gets no more requests.

The breaker is tested alone, then inside the drivers (an attempt function that fails at
once, as a provider on loopback does), then in whole assignments against a real
aiohttp server that responds 404 model_not_found or 401, with the real executor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from llmping.agent.driver import ClosedLoopDriver, OpenLoopDriver
from llmping.agent.load import Arrival, ClosedLoop, OpenLoop, build_model
from llmping.agent.retry import (
    PERMANENT_ERROR_CLASSES,
    STOP_AFTER_PERMANENT_FAILURES,
    LaneBreaker,
    RetryRule,
)
from llmping.v1 import llmping_pb2 as pb

# -- the breaker alone ---------------------------------------------------------------


def test_breaker_stops_at_threshold() -> None:
    breaker = LaneBreaker()

    results = [breaker.add("model_not_found", "no such model") for _ in range(7)]

    assert results == [False] * 4 + [True, False, False]
    assert breaker.stopped
    assert breaker.stop is not None
    assert breaker.stop.failures == STOP_AFTER_PERMANENT_FAILURES
    assert breaker.stop.error_classes == ("model_not_found",)
    assert breaker.stop.detail == "no such model"


def test_breaker_success_resets_count() -> None:
    breaker = LaneBreaker()

    for _ in range(4):
        breaker.add("http_401", "invalid key")
    breaker.add("", "")
    for _ in range(4):
        breaker.add("http_401", "invalid key")

    assert not breaker.stopped


def test_breaker_other_error_resets_count() -> None:
    breaker = LaneBreaker()

    for _ in range(4):
        breaker.add("http_404", "not found")
    breaker.add("http_429", "slow down")
    for _ in range(4):
        breaker.add("http_404", "not found")

    assert not breaker.stopped


def test_breaker_counts_mixed_permanent_classes() -> None:
    breaker = LaneBreaker()

    for error_class in ["http_404", "model_not_found", "http_404", "http_403", "http_401"]:
        breaker.add(error_class, f"detail of {error_class}")

    assert breaker.stop is not None
    assert breaker.stop.error_classes == ("http_404", "model_not_found", "http_403", "http_401")
    assert breaker.stop.detail == "detail of http_401"


def test_breaker_stays_stopped_after_success() -> None:
    breaker = LaneBreaker(threshold=2)
    breaker.add("http_403", "forbidden")
    breaker.add("http_403", "forbidden")

    assert breaker.add("", "") is False
    assert breaker.stopped


def test_permanent_classes_are_the_documented_ones() -> None:
    assert {"model_not_found", "http_401", "http_403", "http_404"} == PERMANENT_ERROR_CLASSES


# -- the drivers ---------------------------------------------------------------------


@dataclass
class FailingProvider:
    """Attempt function that feeds the breaker the way the runner does."""

    breaker: LaneBreaker
    error_class: str = "model_not_found"
    service_s: float = 0.0
    calls: list[tuple[Arrival, int]] = field(default_factory=list)

    async def __call__(self, arrival: Arrival, attempt: int, from_scheduled: bool) -> str:
        self.calls.append((arrival, attempt))
        if self.service_s:
            await asyncio.sleep(self.service_s)
        self.breaker.add(self.error_class, "The model `gpt-x` does not exist")
        return self.error_class


def closed_loop(concurrency: int, duration_s: float = 0, request_count: int = 0) -> ClosedLoop:
    load = pb.LoadSpec(mode=pb.LoadSpec.CLOSED, duration_s=duration_s)
    model = build_model(load, pb.LoadShare(concurrency=concurrency, request_count=request_count))
    assert isinstance(model, ClosedLoop)
    return model


def open_loop(rate_per_s: float, duration_s: float) -> OpenLoop:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=duration_s)
    model = build_model(load, pb.LoadShare(rate_per_s=rate_per_s))
    assert isinstance(model, OpenLoop)
    return model


@pytest.mark.parametrize("error_class", sorted(PERMANENT_ERROR_CLASSES))
async def test_closed_loop_stops_fast_failures(error_class: str) -> None:
    breaker = LaneBreaker()
    send = FailingProvider(breaker, error_class=error_class)
    driver = ClosedLoopDriver(
        closed_loop(concurrency=4, duration_s=5.0), send, RetryRule(), breaker
    )
    start_ns = time.perf_counter_ns()

    await asyncio.wait_for(driver.run(start_ns), 3.0)

    elapsed_s = (time.perf_counter_ns() - start_ns) / 1e9
    # The fifth failure stops the lane; the other three workers may each have one
    # request on the way, which then finishes normally.
    assert STOP_AFTER_PERMANENT_FAILURES <= len(send.calls) <= STOP_AFTER_PERMANENT_FAILURES + 3
    assert driver.counters.arrivals == len(send.calls)
    # A stopped closed loop ends at once instead of idling until duration_s.
    assert elapsed_s < 1.0


async def test_closed_loop_without_duration_ends_on_stop() -> None:
    breaker = LaneBreaker()
    send = FailingProvider(breaker, service_s=0.001)
    driver = ClosedLoopDriver(
        closed_loop(concurrency=2, request_count=100_000), send, RetryRule(), breaker
    )

    await asyncio.wait_for(driver.run(time.perf_counter_ns()), 3.0)

    assert len(send.calls) <= STOP_AFTER_PERMANENT_FAILURES + 1


async def test_closed_loop_sends_no_retry_after_stop() -> None:
    breaker = LaneBreaker()
    send = FailingProvider(breaker, error_class="http_401")
    rule = RetryRule(max_attempts=10, on_error_classes=frozenset({"http_4xx"}))
    driver = ClosedLoopDriver(closed_loop(concurrency=1, duration_s=5.0), send, rule, breaker)

    await asyncio.wait_for(driver.run(time.perf_counter_ns()), 3.0)

    assert [attempt for _, attempt in send.calls] == [1, 2, 3, 4, 5]


async def test_closed_loop_keeps_going_on_other_errors() -> None:
    breaker = LaneBreaker()
    send = FailingProvider(breaker, error_class="http_500", service_s=0.001)
    driver = ClosedLoopDriver(
        closed_loop(concurrency=1, duration_s=0.2), send, RetryRule(), breaker
    )

    await driver.run(time.perf_counter_ns())

    assert len(send.calls) > 2 * STOP_AFTER_PERMANENT_FAILURES
    assert not breaker.stopped


async def test_open_loop_counts_arrivals_after_stop() -> None:
    breaker = LaneBreaker()
    send = FailingProvider(breaker, service_s=0.002)
    driver = OpenLoopDriver(
        open_loop(rate_per_s=100, duration_s=0.3), send, RetryRule(), breaker=breaker
    )
    start_ns = time.perf_counter_ns()

    await driver.run(start_ns)

    # 2 ms per request and 10 ms between arrivals: each failure is in before the next
    # arrival, so exactly five are sent.
    assert len(send.calls) == STOP_AFTER_PERMANENT_FAILURES
    assert driver.counters.arrivals == 30
    assert driver.counters.not_sent_after_stop == 30 - STOP_AFTER_PERMANENT_FAILURES
    # The lane keeps its schedule until the load window ends.
    assert time.perf_counter_ns() - start_ns >= 280_000_000


async def test_open_loop_drops_waiting_arrival_after_stop() -> None:
    breaker = LaneBreaker(threshold=1)
    send = FailingProvider(breaker, service_s=0.05)
    # One slot: the second arrival waits for the first request, which stops the lane.
    driver = OpenLoopDriver(
        open_loop(rate_per_s=100, duration_s=0.1),
        send,
        RetryRule(),
        max_in_flight=1,
        overflow="delay",
        breaker=breaker,
    )

    await driver.run(time.perf_counter_ns())

    assert len(send.calls) == 1
    assert driver.counters.not_sent_after_stop == 9
    assert driver.counters.in_flight == 0


# -- whole assignments ---------------------------------------------------------------


@dataclass
class RejectingProvider:
    """A loopback OpenAI-compatible server that rejects every request at once."""

    base_url: str
    status: int = 404
    body: dict[str, Any] = field(default_factory=dict)
    requests: int = 0

    def provider(self, name: str) -> pb.Provider:
        return pb.Provider(
            name=name, kind="openai_compatible", base_url=self.base_url, model="gpt-x"
        )


REJECTING_KEY = web.AppKey("rejecting", RejectingProvider)

MODEL_MISSING_BODY = {
    "error": {
        "message": "The model `gpt-x` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
}
BAD_KEY_BODY = {"error": {"message": "Incorrect API key provided.", "type": "auth_error"}}


async def _reject(request: web.Request) -> web.Response:
    state = request.app[REJECTING_KEY]
    state.requests += 1
    await request.read()
    return web.Response(
        status=state.status, text=json.dumps(state.body), content_type="application/json"
    )


@pytest.fixture
async def rejecting() -> AsyncIterator[RejectingProvider]:
    state = RejectingProvider(base_url="", body=MODEL_MISSING_BODY)
    app = web.Application()
    app[REJECTING_KEY] = state
    app.router.add_post("/v1/chat/completions", _reject)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    yield state
    await runner.cleanup()


async def finished(peer: Any, waiter: Any, timeout_s: float = 10.0) -> pb.AssignmentUpdate:
    controller = peer.controller
    await waiter(
        lambda: controller.final_update("a-1") is not None, timeout_s, what="a final update"
    )
    final = controller.final_update("a-1")
    assert final is not None
    stored = lambda: {seq for aid, seq in controller.stored if aid == "a-1"}  # noqa: E731
    await waiter(lambda: stored() == set(range(1, final.final_batch_seq + 1)), what="all batches")
    return final


async def start_agent(peer: Any, make_agent: Any, waiter: Any) -> None:
    await make_agent(peer.address)
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")


async def test_closed_loop_run_stops_missing_model(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
    rejecting: RejectingProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="llmping.agent")
    await start_agent(peer, make_agent, waiter)
    load = pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, duration_s=1.5)
    plan = plan_factory([rejecting.provider("missing"), provider.provider(name="working")], load)
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=2)))

    final = await finished(peer, waiter)

    records = peer.controller.records("a-1")
    missing = [r for r in records if r.provider == "missing"]
    working = [r for r in records if r.provider == "working"]
    # The stopping record plus at most one more from the second worker.
    assert STOP_AFTER_PERMANENT_FAILURES <= len(missing) <= STOP_AFTER_PERMANENT_FAILURES + 1
    assert rejecting.requests == len(missing)
    assert all(r.error_class == "model_not_found" for r in missing)
    assert "does not exist" in missing[0].error_detail
    # The other provider's lane runs its whole duration.
    assert len(working) > 10
    assert all(r.error_class == "" for r in working)
    verdict = final.diagnosis.verdict
    assert "stopped provider missing after 5 consecutive model_not_found responses" in verdict
    assert "working" not in verdict
    warnings = [r for r in caplog.records if "stopped sending to provider" in r.getMessage()]
    assert len(warnings) == 1
    assert "missing" in warnings[0].getMessage()
    assert "does not exist" in warnings[0].getMessage()


async def test_open_loop_run_stops_rejected_key(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    rejecting: RejectingProvider,
) -> None:
    rejecting.status = 401
    rejecting.body = BAD_KEY_BODY
    await start_agent(peer, make_agent, waiter)
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=1.0)
    plan = plan_factory([rejecting.provider("bad-key")], load)
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(rate_per_s=40.0)))

    final = await finished(peer, waiter)

    records = peer.controller.records("a-1")
    # A 401 on loopback takes a few ms and arrivals are 25 ms apart, so each failure is
    # usually in before the next arrival. A busy host may have a few more on the way.
    assert STOP_AFTER_PERMANENT_FAILURES <= len(records) <= STOP_AFTER_PERMANENT_FAILURES + 5
    assert rejecting.requests == len(records)
    assert all(r.error_class == "http_401" for r in records)
    not_sent = 40 - len(records)
    # A busy host may add a saturation finding in front, so only this finding is checked.
    assert (
        "stopped provider bad-key after 5 consecutive http_401 responses, "
        f"{not_sent} scheduled requests not sent"
    ) in final.diagnosis.verdict
    assert final.records_total == len(records)
