"""Injected timing: TTFT, token gaps and the absence of cumulative drift.

Tolerances are wide enough for a loaded two-core machine: the simulator itself wakes
within about 1 ms, and the rest is client and scheduler noise.
"""

from __future__ import annotations

import itertools
import statistics
import time

TOLERANCE_MS = 15.0


def _content_times_ms(lines, sent_ns):
    return [
        (line.received_ns - sent_ns) / 1e6
        for line in lines
        if line.text.startswith("data: {")
        and line.data.get("choices")
        and line.data["choices"][0]["delta"].get("content")
    ]


async def test_ttft_median_matches_profile(simulator, session, read_sse, profile, body):
    sim = await simulator(profile(ttft_ms=60.0, tokens_per_s=200.0, output_tokens=3))
    url = sim.base_url("sim") + "/chat/completions"

    ttfts_ms: list[float] = []
    for _ in range(20):
        sent_ns = time.perf_counter_ns()
        async with session.post(url, json=body()) as response:
            lines = await read_sse(response)
        ttfts_ms.append(_content_times_ms(lines, sent_ns)[0])

    # A token can never come early: the client starts its clock before the server's.
    assert min(ttfts_ms) >= 60.0
    assert abs(statistics.median(ttfts_ms) - 60.0) < TOLERANCE_MS


async def test_role_chunk_precedes_ttft(simulator, session, read_sse, profile, body):
    sim = await simulator(profile(ttft_ms=80.0))
    sent_ns = time.perf_counter_ns()
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        lines = await read_sse(response)
    role_ms = (lines[0].received_ns - sent_ns) / 1e6
    assert role_ms < 80.0 - TOLERANCE_MS


async def test_token_gaps_without_drift(simulator, session, read_sse, profile, body):
    # 50 tokens per second: a 20 ms gap, 20 tokens.
    sim = await simulator(profile(ttft_ms=30.0, tokens_per_s=50.0, output_tokens=20))
    sent_ns = time.perf_counter_ns()
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        lines = await read_sse(response)

    times_ms = _content_times_ms(lines, sent_ns)
    gaps_ms = [later - earlier for earlier, later in itertools.pairwise(times_ms)]
    assert len(times_ms) == 20
    assert abs(statistics.median(gaps_ms) - 20.0) < 5.0
    # Tokens are scheduled from the arrival time, so lateness does not add up.
    assert abs(times_ms[-1] - (30.0 + 19 * 20.0)) < TOLERANCE_MS


async def test_non_streaming_waits_for_last_token(simulator, session, profile, body):
    sim = await simulator(profile(ttft_ms=40.0, tokens_per_s=100.0, output_tokens=6))
    sent_ns = time.perf_counter_ns()
    async with session.post(
        sim.base_url("sim") + "/chat/completions", json=body(stream=False)
    ) as response:
        await response.read()
    elapsed_ms = (time.perf_counter_ns() - sent_ns) / 1e6
    # The last of 6 tokens is due at 40 + 5 * 10 ms.
    assert 90.0 <= elapsed_ms < 90.0 + TOLERANCE_MS * 2


async def test_error_delay_honoured(simulator, session, profile, body):
    sim = await simulator(profile(error_rate=1.0, error_status=500, error_delay_ms=50.0))
    sent_ns = time.perf_counter_ns()
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        assert response.status == 500
    assert (time.perf_counter_ns() - sent_ns) / 1e6 >= 50.0
