"""Measured latency against llmping's simulator, whose TTFT and token rate are known.

The simulator runs as its own ``llmping simulate`` process, so its timing does not share
an event loop with the agents or the test. Medians are compared, not single requests,
so that one request delayed by the scheduler of a busy 2-core machine cannot fail it.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from llmping.v1 import llmping_pb2 as pb

REGIONS = ("shanghai", "tokyo")
TTFT_MS = 120.0
TOKENS_PER_S = 100.0
OUTPUT_TOKENS = 8
REQUEST_COUNT = 12
TOLERANCE_MS = 5.0
# The answer's end also carries OUTPUT_TOKENS - 1 token gaps, each an asyncio sleep in the
# simulator that can overshoot by about a millisecond on a busy machine.
E2E_TOLERANCE_MS = TOLERANCE_MS + OUTPUT_TOKENS * 1.0


@pytest.fixture(scope="module")
def simulator_cluster(shared_cluster: Any) -> Any:
    return shared_cluster


def steady_profile() -> dict[str, Any]:
    return {
        "name": "steady",
        "models": ["sim-model"],
        "ttft_ms": TTFT_MS,
        "ttft_jitter_ms": 0.0,
        "tokens_per_s": TOKENS_PER_S,
        "output_tokens": OUTPUT_TOKENS,
    }


def simulator_plan(base_url: str) -> dict[str, Any]:
    return {
        "name": "e2e-simulator-ttft",
        "providers": [
            {
                "name": "steady",
                "kind": "openai_compatible",
                "base_url": base_url,
                "model": "sim-model",
            }
        ],
        "request": {"prompt": "写一篇100字的短文", "max_tokens": 64},
        "load": {"mode": "closed", "concurrency": 2, "request_count": REQUEST_COUNT},
        "targets": list(REGIONS),
        "timeouts": {"connect_s": 5, "ttft_s": 10, "idle_s": 10, "total_s": 20},
    }


@pytest.fixture(scope="module")
def simulator_run(simulator_cluster: Any) -> tuple[pb.Report, list[dict[str, Any]], str]:
    simulator = simulator_cluster.start_simulator([steady_profile()])
    plan_path = simulator_cluster.write_plan(simulator_plan(simulator.base_url("steady")))

    result = simulator_cluster.run_plan(plan_path)
    report = result.report()
    return report, simulator_cluster.records(report.run.run_id), result.stderr


def test_simulator_run_completes(simulator_run: tuple[pb.Report, list[Any], str]) -> None:
    report, records, stderr = simulator_run

    assert report.run.state == pb.COMPLETED, stderr
    assert len(records) == REQUEST_COUNT * len(REGIONS)
    assert [r for r in records if r["error_class"]] == []


@pytest.mark.parametrize("region", REGIONS)
def test_simulator_ttft_median_matches_injected(
    simulator_run: tuple[pb.Report, list[dict[str, Any]], str], region: str
) -> None:
    _, records, _ = simulator_run
    ttfts = [r["ttft_ms"] for r in records if r["target"] == region]

    assert len(ttfts) == REQUEST_COUNT
    assert statistics.median(ttfts) == pytest.approx(TTFT_MS, abs=TOLERANCE_MS)


def test_simulator_ttft_never_below_injected(
    simulator_run: tuple[pb.Report, list[dict[str, Any]], str],
) -> None:
    _, records, _ = simulator_run

    # The simulator waits at least TTFT_MS, so a smaller figure would be a clock error.
    assert min(r["ttft_ms"] for r in records) >= TTFT_MS - 1.0


def test_simulator_e2e_median_matches_token_rate(
    simulator_run: tuple[pb.Report, list[dict[str, Any]], str],
) -> None:
    _, records, _ = simulator_run
    gap_ms = 1000.0 / TOKENS_PER_S
    expected_e2e_ms = TTFT_MS + (OUTPUT_TOKENS - 1) * gap_ms

    assert statistics.median(r["e2e_ms"] for r in records) == pytest.approx(
        expected_e2e_ms, abs=E2E_TOLERANCE_MS
    )


def test_simulator_report_p50_matches_injected(
    simulator_run: tuple[pb.Report, list[dict[str, Any]], str],
) -> None:
    report, _, _ = simulator_run

    assert len(report.summaries) == len(REGIONS)
    for summary in report.summaries:
        assert summary.ttft_ms.count == REQUEST_COUNT
        assert summary.ttft_ms.p50 == pytest.approx(TTFT_MS, abs=TOLERANCE_MS)


def test_simulator_output_tokens_reported(
    simulator_run: tuple[pb.Report, list[dict[str, Any]], str],
) -> None:
    _, records, _ = simulator_run

    assert {r["output_tokens"] for r in records} == {OUTPUT_TOKENS}
