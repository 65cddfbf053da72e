"""Threshold metric names and their evaluation against report summaries.

Metric names:

- ``<metric>_<stat>_ms`` where metric is ttft, e2e, ttfb, tpot or start_lag and stat is
  p50, p90, p95, p99, mean, min or max (for example ttft_p95_ms, e2e_mean_ms);
- ``error_rate`` (0..1), ``throughput_rps`` and ``score`` (1-5).

A threshold applies to every summary that its provider and target fields select (empty
selects all). It passes when ``observed <op> value`` holds. A latency threshold on a
summary with no successful request fails, with observed 0, because nothing shows that
the limit was met. A threshold that selects no summary at all also yields one failed
result, so a typo in a provider name cannot pass silently.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from llmping.v1 import llmping_pb2 as pb

DISTRIBUTION_METRICS = ("ttft", "e2e", "ttfb", "tpot", "start_lag")
DISTRIBUTION_STATS = ("p50", "p90", "p95", "p99", "mean", "min", "max")
SCALAR_METRICS = ("error_rate", "throughput_rps", "score")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def metric_names() -> list[str]:
    """Return every metric name a threshold may use."""
    names = [f"{m}_{s}_ms" for m in DISTRIBUTION_METRICS for s in DISTRIBUTION_STATS]
    return [*names, *SCALAR_METRICS]


def _parse_distribution_metric(metric: str) -> tuple[str, str] | None:
    if not metric.endswith("_ms"):
        return None
    stem = metric[: -len("_ms")]
    for stat in DISTRIBUTION_STATS:
        suffix = "_" + stat
        if stem.endswith(suffix) and stem[: -len(suffix)] in DISTRIBUTION_METRICS:
            return stem[: -len(suffix)], stat
    return None


def is_known_metric(metric: str) -> bool:
    return metric in SCALAR_METRICS or _parse_distribution_metric(metric) is not None


def observed_value(summary: pb.Summary, metric: str) -> float | None:
    """Return the summary's value for a metric, or None when it has no data for it."""
    if metric == "error_rate":
        return summary.error_rate if summary.requests > 0 else None
    if metric == "throughput_rps":
        return summary.throughput_rps if summary.requests > 0 else None
    if metric == "score":
        return summary.score if summary.score > 0 else None
    parsed = _parse_distribution_metric(metric)
    if parsed is None:
        raise ValueError(f"unknown threshold metric {metric!r}")
    name, stat = parsed
    distribution: pb.Distribution = getattr(summary, f"{name}_ms")
    if distribution.count == 0:
        return None
    return float(getattr(distribution, stat))


def _selects(threshold: pb.Threshold, summary: pb.Summary) -> bool:
    if threshold.provider and threshold.provider != summary.provider:
        return False
    return not (threshold.target and threshold.target != summary.target)


def evaluate_thresholds(
    thresholds: Sequence[pb.Threshold], summaries: Sequence[pb.Summary]
) -> list[pb.ThresholdResult]:
    """Return one result per threshold and selected summary."""
    results: list[pb.ThresholdResult] = []
    for threshold in thresholds:
        compare = OPERATORS[threshold.op]
        selected = [s for s in summaries if _selects(threshold, s)]
        if not selected:
            results.append(
                pb.ThresholdResult(
                    threshold=threshold,
                    provider=threshold.provider,
                    target=threshold.target,
                    observed=0.0,
                    passed=False,
                )
            )
        for summary in selected:
            observed = observed_value(summary, threshold.metric)
            results.append(
                pb.ThresholdResult(
                    threshold=threshold,
                    provider=summary.provider,
                    target=summary.target,
                    observed=0.0 if observed is None else observed,
                    passed=observed is not None and compare(observed, threshold.value),
                )
            )
    return results
