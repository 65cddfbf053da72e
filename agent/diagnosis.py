"""Self-diagnosis: whether the agent itself, not the provider, was the bottleneck.

An overloaded agent sends requests late and reads responses late, which makes the
provider look slower than it is. Three signals show it:

- start lag: how late requests left compared to their schedule (p99 per assignment);
- event-loop lag: how late a ticker task wakes up compared to its timer. The verdict
  uses its p99, because one pause (a garbage collection, an import) moves the max
  without making the measurements late;
- CPU: process CPU time over wall time, in percent of one core. It includes gRPC's
  own threads, so on a multi-core host it can pass 100%.

The verdict also names requests the provider never saw. Some failed inside the agent
(out of file descriptors or local ports), some were dropped by the in-flight cap, and
some were not sent because the agent stopped a provider that kept rejecting the model
or the key. AgentDiagnosis has no field for a stopped provider, so the verdict carries it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from llmping.agent.errors import LOCAL_OUT_OF_FILE_DESCRIPTORS, LOCAL_OUT_OF_PORTS
from llmping.stats import percentile
from llmping.v1 import llmping_pb2 as pb

log = logging.getLogger(__name__)

START_LAG_P99_LIMIT_MS = 10.0
LOOP_LAG_LIMIT_MS = 20.0
CPU_LIMIT_PERCENT = 90.0

# Cause and remedy of each marker of errors.LOCAL_FAILURES, as the verdict states them.
_LOCAL_FAILURE_TEXT = {
    LOCAL_OUT_OF_FILE_DESCRIPTORS: (
        "out of file descriptors; raise the open-file limit or lower the load"
    ),
    LOCAL_OUT_OF_PORTS: (
        "out of local ports; reuse connections, widen the local port range "
        "(net.ipv4.ip_local_port_range) or lower the load"
    ),
}


@dataclass
class HealthPeaks:
    """Loop lags and the highest CPU seen while one assignment was tracked."""

    loop_lag_max_ms: float = 0.0
    cpu_percent_max: float = 0.0
    # One sample per tick (20 per second by default), 8 bytes each.
    loop_lags_ms: array = field(default_factory=lambda: array("d"))

    def loop_lag_p99_ms(self) -> float:
        """Return the p99 of the loop lag samples (0 with none)."""
        if not self.loop_lags_ms:
            return 0.0
        return percentile(sorted(self.loop_lags_ms), 99.0)


class HealthMonitor:
    """Ticker that measures event-loop lag and process CPU in fixed windows."""

    def __init__(self, tick_s: float = 0.05, window_s: float = 0.5) -> None:
        self.tick_s = tick_s
        self.window_s = window_s
        # Values of the last complete window, as heartbeats report them.
        self.loop_lag_ms = 0.0
        self.cpu_percent = 0.0
        self._tracked: list[HealthPeaks] = []

    def track(self) -> HealthPeaks:
        """Start collecting peaks for one assignment."""
        peaks = HealthPeaks()
        self._tracked.append(peaks)
        return peaks

    def untrack(self, peaks: HealthPeaks) -> None:
        """Stop updating ``peaks``."""
        if peaks in self._tracked:
            self._tracked.remove(peaks)

    async def run(self) -> None:
        """Measure until cancelled."""
        tick_ns = round(self.tick_s * 1e9)
        window_ns = round(self.window_s * 1e9)
        window_start_ns = time.perf_counter_ns()
        window_cpu_s = time.process_time()
        window_lag_ms = 0.0
        while True:
            expected_ns = time.perf_counter_ns() + tick_ns
            await asyncio.sleep(self.tick_s)
            now_ns = time.perf_counter_ns()
            lag_ms = max(0, now_ns - expected_ns) / 1e6
            window_lag_ms = max(window_lag_ms, lag_ms)
            for peaks in self._tracked:
                peaks.loop_lag_max_ms = max(peaks.loop_lag_max_ms, lag_ms)
                peaks.loop_lags_ms.append(lag_ms)

            if now_ns - window_start_ns >= window_ns:
                cpu_s = time.process_time()
                self.cpu_percent = 100.0 * (cpu_s - window_cpu_s) * 1e9 / (now_ns - window_start_ns)
                self.loop_lag_ms = window_lag_ms
                for peaks in self._tracked:
                    peaks.cpu_percent_max = max(peaks.cpu_percent_max, self.cpu_percent)
                window_start_ns, window_cpu_s, window_lag_ms = now_ns, cpu_s, 0.0


@dataclass(frozen=True)
class ProviderStop:
    """A provider lane that the agent stopped after failures that retrying will not change."""

    provider: str
    failures: int
    error_classes: tuple[str, ...]
    # Open-loop arrivals scheduled after the stop (0 for a closed loop, which has no schedule).
    not_sent: int = 0


@dataclass
class LoadShortfall:
    """Requests of one assignment sent late or not at all, summed over its provider lanes."""

    delayed_by_cap: int = 0
    dropped_by_cap: int = 0
    # The part of dropped_by_cap still waiting for a slot when the load window ended.
    dropped_at_window_end: int = 0
    # The in-flight cap per provider that the agent derived from its open-file limit
    # because the plan set none; 0 when the plan set a cap or no lane had one.
    default_cap: int = 0
    # Requests that failed inside the agent, per marker of errors.LOCAL_FAILURES.
    failed_locally: Counter[str] = field(default_factory=Counter)
    stops: list[ProviderStop] = field(default_factory=list)


class LocalFailures:
    """Counts an assignment's requests that failed inside the agent; logs only the first."""

    def __init__(self, assignment_id: str) -> None:
        self.assignment_id = assignment_id
        self.counts: Counter[str] = Counter()

    def add(self, record: pb.Record) -> None:
        """Count one failed request; its record is not stored."""
        self.counts[record.error_class] += 1
        if self.counts.total() == 1:
            log.warning(
                "assignment %s: a request to provider %s failed inside the agent, not at the "
                "provider: %s; later ones are counted and reported when the assignment ends",
                self.assignment_id,
                record.provider,
                record.error_detail,
            )


def saturation_verdict(start_lag_p99_ms: float, loop_lag_p99_ms: float, cpu_max: float) -> str:
    """Return a one-line verdict when any signal passes its limit, else ""."""
    findings = []
    if start_lag_p99_ms > START_LAG_P99_LIMIT_MS:
        findings.append(f"start lag p99 {start_lag_p99_ms:.0f} ms")
    if loop_lag_p99_ms > LOOP_LAG_LIMIT_MS:
        findings.append(f"event-loop lag p99 {loop_lag_p99_ms:.0f} ms")
    if cpu_max > CPU_LIMIT_PERCENT:
        findings.append(f"CPU {cpu_max:.0f}%")
    if not findings:
        return ""
    return f"agent saturated: {', '.join(findings)}; results understate provider speed"


def local_failure_verdict(failed_locally: Counter[str]) -> str:
    """Return one finding per cause of requests that failed inside the agent, else ""."""
    findings = [
        f"{count} requests failed inside the agent: {_LOCAL_FAILURE_TEXT.get(marker, marker)}"
        for marker, count in sorted(failed_locally.items())
        if count
    ]
    return "; ".join(findings)


def dropped_verdict(shortfall: LoadShortfall) -> str:
    """Return a finding about requests dropped by the in-flight cap, else ""."""
    dropped = shortfall.dropped_by_cap
    if not dropped:
        return ""
    text = f"{dropped} requests dropped by the in-flight cap"
    if shortfall.default_cap:
        text += (
            f" (the agent's default of {shortfall.default_cap} per provider, from its "
            "open-file limit; set load.max_in_flight to choose another)"
        )
    if shortfall.dropped_at_window_end:
        text += (
            f", {shortfall.dropped_at_window_end} of them still waiting for a slot when the "
            "load window ended"
        )
    return text + "; the provider got less load than planned"


def stop_verdict(stops: list[ProviderStop]) -> str:
    """Return one finding per stopped provider lane, else ""."""
    findings = []
    for stop in stops:
        text = (
            f"stopped provider {stop.provider} after {stop.failures} consecutive "
            f"{' or '.join(stop.error_classes)} responses"
        )
        if stop.not_sent:
            text += f", {stop.not_sent} scheduled requests not sent"
        findings.append(text)
    return "; ".join(findings)


def diagnosis_verdict(
    start_lag_p99_ms: float, loop_lag_p99_ms: float, cpu_max: float, shortfall: LoadShortfall
) -> str:
    """Return every finding of the assignment as sentences, or "" when there is none."""
    findings = [
        saturation_verdict(start_lag_p99_ms, loop_lag_p99_ms, cpu_max),
        local_failure_verdict(shortfall.failed_locally),
        dropped_verdict(shortfall),
        stop_verdict(shortfall.stops),
    ]
    return ". ".join(finding for finding in findings if finding)


class AssignmentDiagnosis:
    """Collects one assignment's start lags and health peaks into an AgentDiagnosis."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self._monitor = monitor
        self._peaks = monitor.track()
        # array('d') stores 8 bytes per value, so long runs stay small.
        self._start_lags_ms = array("d")

    def add_start_lag(self, start_lag_ms: float) -> None:
        """Record the start lag of one sent request."""
        self._start_lags_ms.append(start_lag_ms)

    def start_lag_p99_ms(self) -> float:
        """Return the p99 start lag so far (0 with no requests)."""
        if not self._start_lags_ms:
            return 0.0
        return percentile(sorted(self._start_lags_ms), 99.0)

    def finish(self, shortfall: LoadShortfall) -> pb.AgentDiagnosis:
        """Stop tracking and build the diagnosis for the final AssignmentUpdate."""
        self._monitor.untrack(self._peaks)
        start_lag_p99_ms = self.start_lag_p99_ms()
        loop_lag_p99_ms = self._peaks.loop_lag_p99_ms()
        cpu_max = self._peaks.cpu_percent_max
        return pb.AgentDiagnosis(
            start_lag_p99_ms=start_lag_p99_ms,
            event_loop_lag_max_ms=self._peaks.loop_lag_max_ms,
            event_loop_lag_p99_ms=loop_lag_p99_ms,
            cpu_percent_max=cpu_max,
            requests_delayed_by_cap=shortfall.delayed_by_cap,
            requests_dropped_by_cap=shortfall.dropped_by_cap,
            requests_failed_locally=shortfall.failed_locally.total(),
            verdict=diagnosis_verdict(start_lag_p99_ms, loop_lag_p99_ms, cpu_max, shortfall),
        )
