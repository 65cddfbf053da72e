"""Percentiles and confidence intervals shared by the agent and the controller.

Written by hand because the formulas are short and pulling in numpy for them would
double the agent's install size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95% quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0-100) of already sorted values.

    Uses linear interpolation between closest ranks, the same rule as numpy's
    default ("linear"), so figures match what users compute themselves.
    Raises ValueError on an empty sequence or a q outside 0..100.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sequence is undefined")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Return (mean, stddev, ci_low, ci_high) with a normal-approximation 95% interval.

    The sample standard deviation uses n - 1. With fewer than two values the
    interval collapses to the mean.
    """
    count = len(values)
    if count == 0:
        raise ValueError("mean of an empty sequence is undefined")
    mean = math.fsum(values) / count
    if count < 2:
        return mean, 0.0, mean, mean
    variance = math.fsum((v - mean) ** 2 for v in values) / (count - 1)
    stddev = math.sqrt(variance)
    half_width = Z_95 * stddev / math.sqrt(count)
    return mean, stddev, mean - half_width, mean + half_width
