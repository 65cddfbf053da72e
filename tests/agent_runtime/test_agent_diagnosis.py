"""Self-diagnosis: loop lag, CPU, requests the provider never saw, and the verdict."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

import pytest

from llmping.agent.diagnosis import (
    AssignmentDiagnosis,
    HealthMonitor,
    LoadShortfall,
    LocalFailures,
    diagnosis_verdict,
    saturation_verdict,
)
from llmping.agent.errors import LOCAL_OUT_OF_FILE_DESCRIPTORS, LOCAL_OUT_OF_PORTS
from llmping.v1 import llmping_pb2 as pb


def test_verdict_empty_when_healthy() -> None:
    assert saturation_verdict(2.0, 5.0, 40.0) == ""


def test_verdict_names_each_signal() -> None:
    verdict = saturation_verdict(37.2, 3.0, 98.4)

    assert verdict == (
        "agent saturated: start lag p99 37 ms, CPU 98%; results understate provider speed"
    )
    assert "event-loop lag p99 25 ms" in saturation_verdict(0.0, 25.0, 0.0)


async def test_monitor_sees_event_loop_stall() -> None:
    monitor = HealthMonitor(tick_s=0.01, window_s=0.05)
    diagnosis = AssignmentDiagnosis(monitor)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.03)
        busy_until = time.perf_counter() + 0.06
        while time.perf_counter() < busy_until:  # blocks the event loop and burns CPU
            pass
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    result = diagnosis.finish(LoadShortfall(delayed_by_cap=3, dropped_by_cap=1))
    assert result.event_loop_lag_max_ms >= 40
    assert "event-loop lag" in result.verdict
    # The busy loop burned CPU in this process. How much depends on what else the host
    # runs, so only its presence is checked.
    assert result.cpu_percent_max > 0
    assert result.requests_delayed_by_cap == 3
    assert result.requests_dropped_by_cap == 1


def test_start_lag_p99() -> None:
    diagnosis = AssignmentDiagnosis(HealthMonitor())
    for lag_ms in range(100):
        diagnosis.add_start_lag(float(lag_ms))

    assert 97.0 < diagnosis.start_lag_p99_ms() < 99.0
    assert "start lag p99 98 ms" in diagnosis.finish(LoadShortfall()).verdict


def test_verdict_names_local_failures() -> None:
    shortfall = LoadShortfall(failed_locally=Counter({LOCAL_OUT_OF_FILE_DESCRIPTORS: 7}))

    verdict = diagnosis_verdict(0.0, 0.0, 0.0, shortfall)

    assert verdict == (
        "7 requests failed inside the agent: out of file descriptors; "
        "raise the open-file limit or lower the load"
    )


def test_verdict_names_each_local_cause() -> None:
    failed = Counter({LOCAL_OUT_OF_FILE_DESCRIPTORS: 2, LOCAL_OUT_OF_PORTS: 3})

    verdict = diagnosis_verdict(0.0, 0.0, 0.0, LoadShortfall(failed_locally=failed))

    assert "2 requests failed inside the agent: out of file descriptors" in verdict
    assert "3 requests failed inside the agent: out of local ports" in verdict


def test_verdict_joins_saturation_and_drops() -> None:
    shortfall = LoadShortfall(dropped_by_cap=12, dropped_at_window_end=5, default_cap=768)

    verdict = diagnosis_verdict(40.0, 0.0, 0.0, shortfall)

    saturation, dropped = verdict.split(". ")
    assert saturation.startswith("agent saturated: start lag p99 40 ms")
    assert dropped.startswith("12 requests dropped by the in-flight cap")
    assert "default of 768 per provider" in dropped
    assert "5 of them still waiting for a slot when the load window ended" in dropped


def test_verdict_empty_without_findings() -> None:
    assert diagnosis_verdict(1.0, 1.0, 10.0, LoadShortfall(delayed_by_cap=4)) == ""


def test_diagnosis_counts_failed_locally() -> None:
    shortfall = LoadShortfall(
        failed_locally=Counter({LOCAL_OUT_OF_FILE_DESCRIPTORS: 4, LOCAL_OUT_OF_PORTS: 1})
    )

    result = AssignmentDiagnosis(HealthMonitor()).finish(shortfall)

    assert result.requests_failed_locally == 5
    assert "failed inside the agent" in result.verdict


def test_local_failures_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    failures = LocalFailures("a-1")
    detail = "EMFILE (Too many open files): ClientConnectorError: cannot connect"
    record = pb.Record(
        provider="p1", error_class=LOCAL_OUT_OF_FILE_DESCRIPTORS, error_detail=detail
    )

    with caplog.at_level(logging.DEBUG, logger="llmping.agent.diagnosis"):
        for _ in range(50):
            failures.add(record)

    assert failures.counts == {LOCAL_OUT_OF_FILE_DESCRIPTORS: 50}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "EMFILE" in warnings[0].getMessage()
    assert "provider p1" in warnings[0].getMessage()
