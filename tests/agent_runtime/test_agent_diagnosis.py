"""Self-diagnosis: loop lag, CPU and the saturation verdict."""

from __future__ import annotations

import asyncio
import contextlib
import time

from llmping.agent.diagnosis import AssignmentDiagnosis, HealthMonitor, saturation_verdict


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

    result = diagnosis.finish(delayed_by_cap=3, dropped_by_cap=1)
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
    assert "start lag p99 98 ms" in diagnosis.finish(0, 0).verdict
