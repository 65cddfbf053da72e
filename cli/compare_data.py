"""Run-to-run comparison: per provider x target, baseline against candidate.

A latency change is beyond the noise when the 95% interval of the difference of the
means (Welch's t interval) excludes 0. An error-rate change is beyond the noise when
the 95% interval of the difference of the two proportions (Newcombe's score interval)
excludes 0. Differences are always candidate - baseline, so a positive change is slower
or more errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmping.cli import report_data
from llmping.stats import proportion_diff_ci95, welch_diff_ci95
from llmping.v1 import llmping_pb2 as pb

# Each side of a latency comparison needs this many successful requests, because the
# sample standard deviation and Welch's interval need at least two values.
MIN_LATENCY_COUNT = 2
LATENCY_METRICS = {"ttft_ms": "TTFT", "e2e_ms": "E2E"}

FASTER = "faster"
SLOWER = "slower"
MORE_ERRORS = "more errors"
FEWER_ERRORS = "fewer errors"
WITHIN_NOISE = "within noise"
NOT_ENOUGH_DATA = "not enough data"

COMPARED = "compared"
ONLY_IN_BASELINE = "only in baseline"
ONLY_IN_CANDIDATE = "only in candidate"


@dataclass(frozen=True)
class LatencyComparison:
    """One latency metric (TTFT or E2E) of one group, baseline against candidate.

    ``change_ms`` is the difference of the means; ``ci95_ms`` is its 95% interval, None
    when a side has fewer than MIN_LATENCY_COUNT values.
    """

    metric: str
    baseline: pb.Distribution
    candidate: pb.Distribution
    verdict: str
    change_ms: float
    change_pct: float | None
    ci95_ms: tuple[float, float] | None


@dataclass(frozen=True)
class ErrorRateComparison:
    """Error rate of one group; changes and intervals are fractions, not percent."""

    baseline_errors: int
    baseline_requests: int
    candidate_errors: int
    candidate_requests: int
    verdict: str
    change: float
    ci95: tuple[float, float] | None


@dataclass(frozen=True)
class GroupComparison:
    """One provider x target: compared, or present in one run only."""

    provider: str
    target: str
    status: str
    # Non-empty when the provider did not offer the model in that run.
    baseline_not_available: str = ""
    candidate_not_available: str = ""
    latencies: list[LatencyComparison] = field(default_factory=list)
    error_rate: ErrorRateComparison | None = None

    def availability(self) -> str:
        """Return ``not available in baseline`` (or candidate, or both), or ``""``."""
        sides = []
        if self.baseline_not_available:
            sides.append("baseline")
        if self.candidate_not_available:
            sides.append("candidate")
        return "not available in " + " and ".join(sides) if sides else ""


@dataclass(frozen=True)
class RunComparison:
    baseline: pb.Report
    candidate: pb.Report
    groups: list[GroupComparison]

    def compared_groups(self) -> list[GroupComparison]:
        return [group for group in self.groups if group.status == COMPARED]


def percent_change(change: float, baseline: float) -> float | None:
    """Return change as a percentage of baseline, or None when the baseline is 0."""
    if baseline == 0.0:
        return None
    return change / baseline * 100.0


def latency_verdict(interval: tuple[float, float]) -> str:
    low, high = interval
    if low > 0.0:
        return SLOWER
    if high < 0.0:
        return FASTER
    return WITHIN_NOISE


def compare_latency(
    metric: str, baseline: pb.Distribution, candidate: pb.Distribution
) -> LatencyComparison:
    """Compare the means of one metric with Welch's 95% interval of their difference."""
    change_ms = candidate.mean - baseline.mean
    change_pct = percent_change(change_ms, baseline.mean)
    if baseline.count < MIN_LATENCY_COUNT or candidate.count < MIN_LATENCY_COUNT:
        return LatencyComparison(
            metric, baseline, candidate, NOT_ENOUGH_DATA, change_ms, change_pct, None
        )
    interval = welch_diff_ci95(
        (baseline.mean, baseline.stddev, baseline.count),
        (candidate.mean, candidate.stddev, candidate.count),
    )
    return LatencyComparison(
        metric, baseline, candidate, latency_verdict(interval), change_ms, change_pct, interval
    )


def compare_error_rate(baseline: pb.Summary, candidate: pb.Summary) -> ErrorRateComparison:
    """Compare errors / requests with Newcombe's 95% interval of the difference."""
    if baseline.requests == 0 or candidate.requests == 0:
        return ErrorRateComparison(
            baseline.errors,
            baseline.requests,
            candidate.errors,
            candidate.requests,
            NOT_ENOUGH_DATA,
            candidate.error_rate - baseline.error_rate,
            None,
        )
    low, high = proportion_diff_ci95(
        (baseline.errors, baseline.requests), (candidate.errors, candidate.requests)
    )
    if low > 0.0:
        verdict = MORE_ERRORS
    elif high < 0.0:
        verdict = FEWER_ERRORS
    else:
        verdict = WITHIN_NOISE
    change = candidate.errors / candidate.requests - baseline.errors / baseline.requests
    return ErrorRateComparison(
        baseline.errors,
        baseline.requests,
        candidate.errors,
        candidate.requests,
        verdict,
        change,
        (low, high),
    )


def _not_available_text(summary: pb.Summary) -> str:
    if not summary.not_available:
        return ""
    return summary.not_available_detail or "model not offered"


def compare_group(baseline: pb.Summary, candidate: pb.Summary) -> GroupComparison:
    """Compare TTFT, E2E and error rate of one provider x target present in both runs.

    A provider that did not offer the model has no latency to compare, but its error
    rate still is, so a model that disappeared shows up as more errors.
    """
    baseline_na = _not_available_text(baseline)
    candidate_na = _not_available_text(candidate)
    latencies = []
    if not baseline_na and not candidate_na:
        latencies = [
            compare_latency(metric, getattr(baseline, metric), getattr(candidate, metric))
            for metric in LATENCY_METRICS
        ]
    return GroupComparison(
        provider=baseline.provider,
        target=baseline.target,
        status=COMPARED,
        baseline_not_available=baseline_na,
        candidate_not_available=candidate_na,
        latencies=latencies,
        error_rate=compare_error_rate(baseline, candidate),
    )


def _ordered_keys(baseline: pb.Report, candidate: pb.Report) -> list[tuple[str, str]]:
    """Return every provider x target of either run: the baseline's order, then the rest."""
    providers = report_data.provider_names(baseline)
    providers += [p for p in report_data.provider_names(candidate) if p not in providers]
    targets = report_data.target_names(baseline)
    targets += [t for t in report_data.target_names(candidate) if t not in targets]
    return [(provider, target) for provider in providers for target in targets]


def compare_reports(baseline: pb.Report, candidate: pb.Report) -> RunComparison:
    """Compare every provider x target of two reports; groups in one run only are listed."""
    baseline_grid = report_data.summary_grid(baseline)
    candidate_grid = report_data.summary_grid(candidate)
    groups: list[GroupComparison] = []
    for key in _ordered_keys(baseline, candidate):
        old = baseline_grid.get(key)
        new = candidate_grid.get(key)
        if old is not None and new is not None:
            groups.append(compare_group(old, new))
        elif old is not None:
            groups.append(GroupComparison(*key, status=ONLY_IN_BASELINE))
        elif new is not None:
            groups.append(GroupComparison(*key, status=ONLY_IN_CANDIDATE))
    return RunComparison(baseline, candidate, groups)


def regressions(comparison: RunComparison, max_slowdown_pct: float | None) -> list[str]:
    """Return one line per regression beyond the noise; empty when the candidate passes.

    A latency metric regresses when it is slower beyond the noise and, with
    ``max_slowdown_pct``, when its mean also grew by more than that percentage of the
    baseline mean. An error rate regresses when it has more errors beyond the noise.
    """
    found: list[str] = []
    for group in comparison.compared_groups():
        scope = f"{group.provider} @ {group.target}"
        for latency in group.latencies:
            if latency.verdict != SLOWER or _tolerated(latency, max_slowdown_pct):
                continue
            name = LATENCY_METRICS[latency.metric]
            found.append(f"{scope}: mean {name} slower by {describe_latency_change(latency)}")
        errors = group.error_rate
        if errors is not None and errors.verdict == MORE_ERRORS:
            found.append(f"{scope}: error rate up by {format_points(errors.change)}")
    return found


def _tolerated(latency: LatencyComparison, max_slowdown_pct: float | None) -> bool:
    if max_slowdown_pct is None or latency.change_pct is None:
        return False
    return latency.change_pct <= max_slowdown_pct


# ---------------------------------------------------------------------------
# Text of a change, used in regression lines and in every format.
# ---------------------------------------------------------------------------


def signed_ms(value: float) -> str:
    return ("+" if value >= 0 else "-") + report_data.format_ms(abs(value))


def format_points(fraction: float) -> str:
    """Format a change of proportions in percentage points, with its sign."""
    return f"{fraction * 100:+.1f} pp"


def describe_latency_change(latency: LatencyComparison) -> str:
    """Return ``+45 ms (+5.5%)``; the percentage is left out when the baseline mean is 0."""
    text = f"{signed_ms(latency.change_ms)} ms"
    if latency.change_pct is not None and math.isfinite(latency.change_pct):
        text += f" ({latency.change_pct:+.1f}%)"
    return text
