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


# ---------------------------------------------------------------------------
# Intervals of a difference between two runs, used by `llmping compare`.
# ---------------------------------------------------------------------------

# The t quantile is computed here, from the incomplete beta function, because the
# standard library has only the normal distribution and scipy, which has both, would add
# a large dependency for this one function.
# Above this many degrees of freedom the t quantile is replaced by the normal one: at
# 10,000 they differ by less than 0.02%, and the continued fraction converges slowly.
NORMAL_DF = 10_000.0
_FRACTION_EPSILON = 1e-14
_FRACTION_TINY = 1e-300
_FRACTION_MAX_TERMS = 10_000


def regularized_beta(x: float, a: float, b: float) -> float:
    """Return the regularized incomplete beta function I_x(a, b) for a, b > 0.

    Evaluated with its continued fraction (DLMF 8.17.22) by the modified Lentz method,
    on the side of x where the fraction converges quickly.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)
    return math.exp(log_front) / a * _beta_fraction(x, a, b)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction_term(j: int, x: float, a: float, b: float) -> float:
    """Return d_j, the j-th numerator of 1 / (1 + d_1 / (1 + d_2 / (1 + ...)))."""
    m = j // 2
    if j % 2 == 0:
        return m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
    return -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))


def _beta_fraction(x: float, a: float, b: float) -> float:
    # Lentz: the value after term j is the value after term j - 1 times c_j * d_j, where
    # c_j = 1 + d_j / c_{j-1} and d_j = 1 / (1 + d_j * d_{j-1}), with every denominator
    # kept away from zero by _FRACTION_TINY. The first term, 1 / (1 + d_1), starts it.
    c = 1.0
    d = _nonzero(1.0 + _beta_fraction_term(1, x, a, b))
    d = 1.0 / d
    value = d
    for j in range(2, _FRACTION_MAX_TERMS):
        numerator = _beta_fraction_term(j, x, a, b)
        d = 1.0 / _nonzero(1.0 + numerator * d)
        c = _nonzero(1.0 + numerator / c)
        step = c * d
        value *= step
        if abs(step - 1.0) < _FRACTION_EPSILON:
            break
    return value


def _nonzero(value: float) -> float:
    return value if abs(value) > _FRACTION_TINY else _FRACTION_TINY


def t_upper_tail(t: float, df: float) -> float:
    """Return P(T > t) for Student's t distribution with df degrees of freedom, t >= 0."""
    return 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)


def t_quantile_975(df: float) -> float:
    """Return the 0.975 quantile of Student's t with df > 0 degrees of freedom.

    df may be fractional, as the Welch-Satterthwaite formula gives it. Found by bisection
    on the upper tail; above NORMAL_DF the normal quantile Z_95 is returned.
    """
    if df <= 0.0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if df > NORMAL_DF:
        return Z_95
    low, high = Z_95, 2.0 * Z_95
    while t_upper_tail(high, df) > 0.025:
        low, high = high, high * 2.0
    for _ in range(100):
        middle = (low + high) / 2.0
        if t_upper_tail(middle, df) > 0.025:
            low = middle
        else:
            high = middle
        if high - low < 1e-9:
            break
    return (low + high) / 2.0


def welch_diff_ci95(
    baseline: tuple[float, float, int], candidate: tuple[float, float, int]
) -> tuple[float, float]:
    """Return the 95% interval of candidate mean - baseline mean, by Welch's t interval.

    Each side is (mean, sample stddev, count) and needs a count of at least 2. The
    degrees of freedom come from the Welch-Satterthwaite formula, so the two sides may
    have different variances and sizes. When both stddevs are 0 the interval is the
    difference itself.
    """
    mean_1, stddev_1, count_1 = baseline
    mean_2, stddev_2, count_2 = candidate
    if count_1 < 2 or count_2 < 2:
        raise ValueError(f"each side needs at least 2 values, got {count_1} and {count_2}")
    difference = mean_2 - mean_1
    variance_1 = stddev_1**2 / count_1
    variance_2 = stddev_2**2 / count_2
    standard_error = math.sqrt(variance_1 + variance_2)
    if standard_error == 0.0:
        return difference, difference
    df = (variance_1 + variance_2) ** 2 / (
        variance_1**2 / (count_1 - 1) + variance_2**2 / (count_2 - 1)
    )
    half_width = t_quantile_975(df) * standard_error
    return difference - half_width, difference + half_width


def wilson_ci95(events: int, count: int) -> tuple[float, float]:
    """Return the Wilson score 95% interval of the proportion events / count, count > 0."""
    if count <= 0:
        raise ValueError(f"a proportion needs a positive count, got {count}")
    proportion = events / count
    z_squared = Z_95 * Z_95
    center = (proportion + z_squared / (2 * count)) / (1 + z_squared / count)
    half_width = (
        Z_95
        / (1 + z_squared / count)
        * math.sqrt(proportion * (1 - proportion) / count + z_squared / (4 * count * count))
    )
    return max(0.0, center - half_width), min(1.0, center + half_width)


def proportion_diff_ci95(
    baseline: tuple[int, int], candidate: tuple[int, int]
) -> tuple[float, float]:
    """Return the 95% interval of candidate proportion - baseline proportion.

    Each side is (events, count). Newcombe's hybrid score interval (Newcombe 1998,
    method 10) combines the two Wilson intervals. Unlike the Wald interval, it stays
    usable when a side has 0 events, which is the usual case for error rates.
    """
    p_1 = baseline[0] / baseline[1]
    p_2 = candidate[0] / candidate[1]
    low_1, high_1 = wilson_ci95(*baseline)
    low_2, high_2 = wilson_ci95(*candidate)
    difference = p_2 - p_1
    lower = difference - math.sqrt((p_2 - low_2) ** 2 + (high_1 - p_1) ** 2)
    upper = difference + math.sqrt((high_2 - p_2) ** 2 + (p_1 - low_1) ** 2)
    return lower, upper
