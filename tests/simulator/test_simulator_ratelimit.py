"""Sliding-window rate limit: 429 with Retry-After above the limit, recovery after it."""

from __future__ import annotations

import asyncio
import time

from llmping.simulator.provider_state import SlidingWindowLimiter


async def test_burst_above_limit_gets_429(simulator, session, profile, body):
    sim = await simulator(profile(rate_limit_per_s=3))
    url = sim.base_url("sim") + "/chat/completions"

    async def send() -> tuple[int, dict[str, str], dict]:
        async with session.post(url, json=body(stream=False)) as response:
            return response.status, dict(response.headers), await response.json()

    results = await asyncio.gather(*(send() for _ in range(6)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 200, 429, 429, 429]

    _, headers, error_body = next(r for r in results if r[0] == 429)
    assert headers["Retry-After"] == "1"
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("ms")
    assert error_body["error"]["code"] == "rate_limit_exceeded"
    assert sim.stats("sim").statuses[429] == 3


async def test_admits_again_after_window(simulator, session, profile, body):
    sim = await simulator(profile(rate_limit_per_s=1))
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body(stream=False)) as response:
        assert response.status == 200

    first_429_ns = None
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        async with session.post(url, json=body(stream=False)) as response:
            if response.status == 200:
                break
            assert response.status == 429
            first_429_ns = first_429_ns or time.perf_counter_ns()
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the provider never admitted a request again")
    assert first_429_ns is not None


def test_limiter_counts_only_admitted_requests():
    limiter = SlidingWindowLimiter(2)
    second_ns = 1_000_000_000
    assert limiter.try_admit(0).admitted
    assert limiter.try_admit(100_000_000).admitted
    rejected = limiter.try_admit(200_000_000)
    assert not rejected.admitted
    assert rejected.reset_ms == 800.0
    # Rejections do not enter the window, so a slot frees 1 s after the first admission.
    assert limiter.try_admit(second_ns).admitted
    assert not limiter.try_admit(second_ns + 1).admitted
