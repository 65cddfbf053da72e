"""The 1-5 score of a provider in a target, a quick verdict next to the numbers.

Each summary starts at 5 and loses points:

- error rate: below 1% loses 0, below 5% loses 1, below 20% loses 2, otherwise 3;
- p50 E2E latency relative to the best provider in the same target: up to 1.2x the
  best loses 0, up to 1.5x loses 0.5, up to 2x loses 1, beyond that 1.5;
- p50 TTFT relative to the best in the same target, with the same bands, when both
  have TTFT values.

The result is clamped to 1..5. A summary with no successful request scores 1. A
summary with no requests, or whose provider does not offer the model, scores 0, which
means "no score". Because latency counts relative to the best provider in the target,
the fastest provider with no errors scores 5 even when it is slow in absolute terms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llmping.v1 import llmping_pb2 as pb

MAX_SCORE = 5.0
MIN_SCORE = 1.0
# (error rate upper bound, exclusive; points lost)
ERROR_RATE_BANDS = ((0.01, 0.0), (0.05, 1.0), (0.20, 2.0))
ERROR_RATE_PENALTY_MAX = 3.0
# (latency / best latency upper bound, inclusive; points lost)
LATENCY_RATIO_BANDS = ((1.2, 0.0), (1.5, 0.5), (2.0, 1.0))
LATENCY_PENALTY_MAX = 1.5


def error_rate_penalty(error_rate: float) -> float:
    for upper, penalty in ERROR_RATE_BANDS:
        if error_rate < upper:
            return penalty
    return ERROR_RATE_PENALTY_MAX


def latency_penalty(value_ms: float, best_ms: float) -> float:
    """Points lost for a latency relative to the best one; 0 when best_ms is not positive."""
    if best_ms <= 0:
        return 0.0
    ratio = value_ms / best_ms
    for upper, penalty in LATENCY_RATIO_BANDS:
        if ratio <= upper:
            return penalty
    return LATENCY_PENALTY_MAX


def _best_p50(summaries: Iterable[pb.Summary], field: str) -> float:
    values = [
        getattr(s, field).p50
        for s in summaries
        if getattr(s, field).count > 0 and not s.not_available
    ]
    return min(values) if values else 0.0


def score_summary(summary: pb.Summary, best_e2e_p50_ms: float, best_ttft_p50_ms: float) -> float:
    """Return the score of one summary given the best p50s of its target."""
    if summary.requests == 0 or summary.not_available:
        return 0.0
    if summary.successes == 0:
        return MIN_SCORE
    score = MAX_SCORE - error_rate_penalty(summary.error_rate)
    if summary.e2e_ms.count > 0:
        score -= latency_penalty(summary.e2e_ms.p50, best_e2e_p50_ms)
    if summary.ttft_ms.count > 0:
        score -= latency_penalty(summary.ttft_ms.p50, best_ttft_p50_ms)
    return max(MIN_SCORE, min(MAX_SCORE, score))


def score_summaries(summaries: Sequence[pb.Summary]) -> None:
    """Set the score of every summary, comparing providers within each target."""
    targets = {s.target for s in summaries}
    for target in targets:
        group = [s for s in summaries if s.target == target]
        best_e2e = _best_p50(group, "e2e_ms")
        best_ttft = _best_p50(group, "ttft_ms")
        for summary in group:
            summary.score = score_summary(summary, best_e2e, best_ttft)
