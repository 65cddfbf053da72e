"""Inline SVG plots for the HTML report, drawn by hand so the page needs no library.

Every function returns one ``<svg>`` element as text. Labels are escaped, and the
elements carry no xmlns URL, which inline SVG in HTML5 does not need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from llmping.v1 import llmping_pb2 as pb

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
GROUP_COLORS = {"4xx": "#d97706", "5xx": "#dc2626", "other": "#6b7280"}

WIDTH = 760
LABEL_WIDTH = 220
ROW_HEIGHT = 26
MARGIN = 30


DASHES = ("", "6,3", "2,2", "8,3,2,3")


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def dash_for(index: int) -> str:
    return DASHES[index % len(DASHES)]


def nice_ticks(max_value: float, count: int = 5) -> list[float]:
    """Return round tick values from 0 up to at least max_value."""
    if max_value <= 0 or math.isnan(max_value):
        return [0.0, 1.0]
    raw_step = max_value / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    ticks = [0.0]
    while ticks[-1] < max_value:
        ticks.append(ticks[-1] + step)
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:g}" if value < 1e5 else f"{value:.0e}"


def _svg_open(height: int, title: str) -> list[str]:
    return [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="16" class="plot-title">{escape(title)}</text>',
    ]


def _x_axis(ticks: Sequence[float], top: int, bottom: int, scale_x: float, unit: str) -> list[str]:
    parts = []
    for tick in ticks:
        x = LABEL_WIDTH + tick * scale_x
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" class="grid"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" class="tick" text-anchor="middle">'
            f"{_tick_label(tick)}</text>"
        )
    parts.append(
        f'<text x="{WIDTH - 4}" y="{bottom + 28}" class="tick" text-anchor="end">'
        f"{escape(unit)}</text>"
    )
    return parts


@dataclass(frozen=True)
class DistributionRow:
    """One provider @ target row of a latency distribution plot."""

    label: str
    distribution: pb.Distribution
    color: str


def distribution_plot(rows: Sequence[DistributionRow], title: str, unit: str = "ms") -> str:
    """Draw each row's spread and its mean with the 95% confidence interval as an error bar.

    Thin line: min to max. Bar: p50 to p95. Ticks: p90 and p99. Dot: mean, with the
    whisker of its confidence interval.
    """
    rows = [r for r in rows if r.distribution.count]
    top = MARGIN
    height = top + ROW_HEIGHT * max(1, len(rows)) + 40
    bottom = height - 36
    max_value = max((r.distribution.max for r in rows), default=1.0)
    ticks = nice_ticks(max_value)
    scale_x = (WIDTH - LABEL_WIDTH - 20) / ticks[-1]
    parts = _svg_open(height, title)
    parts += _x_axis(ticks, top, bottom, scale_x, unit)
    for index, row in enumerate(rows):
        y = top + index * ROW_HEIGHT + ROW_HEIGHT / 2
        parts += _distribution_row(row, y, scale_x)
    parts.append("</svg>")
    return "\n".join(parts)


def _distribution_row(row: DistributionRow, y: float, scale_x: float) -> list[str]:
    d = row.distribution

    def x(value: float) -> float:
        return LABEL_WIDTH + value * scale_x

    label = f"{row.label} (n={d.count})"
    return [
        f'<text x="{LABEL_WIDTH - 8}" y="{y + 4:.1f}" class="label" text-anchor="end">'
        f"{escape(label)}</text>",
        f'<line x1="{x(d.min):.1f}" y1="{y:.1f}" x2="{x(d.max):.1f}" y2="{y:.1f}" '
        f'stroke="{row.color}" stroke-width="1"/>',
        f'<rect x="{x(d.p50):.1f}" y="{y - 6:.1f}" width="{max(1.0, x(d.p95) - x(d.p50)):.1f}" '
        f'height="12" fill="{row.color}" fill-opacity="0.35" stroke="{row.color}"/>',
        f'<line x1="{x(d.p90):.1f}" y1="{y - 8:.1f}" x2="{x(d.p90):.1f}" y2="{y + 8:.1f}" '
        f'stroke="{row.color}"/>',
        f'<line x1="{x(d.p99):.1f}" y1="{y - 8:.1f}" x2="{x(d.p99):.1f}" y2="{y + 8:.1f}" '
        f'stroke="{row.color}" stroke-dasharray="2,2"/>',
        f'<line x1="{x(d.mean_ci95_low):.1f}" y1="{y:.1f}" x2="{x(d.mean_ci95_high):.1f}" '
        f'y2="{y:.1f}" stroke="#111" stroke-width="2.5"/>',
        f'<circle cx="{x(d.mean):.1f}" cy="{y:.1f}" r="3.5" fill="#111">'
        f"<title>mean {d.mean:.1f} {escape('ms')}, 95% CI {d.mean_ci95_low:.1f} to "
        f"{d.mean_ci95_high:.1f}; p50 {d.p50:.1f}, p95 {d.p95:.1f}, p99 {d.p99:.1f}</title>"
        "</circle>",
    ]


@dataclass(frozen=True)
class Series:
    """A line of (seconds since run start, value) points."""

    label: str
    points: list[tuple[float, float]]
    color: str
    # SVG stroke-dasharray; empty draws a solid line.
    dash: str = ""


def line_plot(series: Sequence[Series], title: str, y_unit: str) -> str:
    """Draw one polyline per series over time, with a legend below the axes."""
    series = [s for s in series if s.points]
    plot_left, plot_right, top, bottom = 60, WIDTH - 20, MARGIN + 14, 240
    height = bottom + 40 + 18 * math.ceil(max(1, len(series)) / 3)
    x_ticks = nice_ticks(max((p[0] for s in series for p in s.points), default=1.0))
    y_ticks = nice_ticks(max((p[1] for s in series for p in s.points), default=1.0))
    scale_x = (plot_right - plot_left) / x_ticks[-1]
    scale_y = (bottom - top) / y_ticks[-1]
    parts = _svg_open(height, title)
    parts += _time_axes(x_ticks, y_ticks, (plot_left, top, bottom), (scale_x, scale_y), y_unit)
    for item in series:
        points = " ".join(
            f"{plot_left + t * scale_x:.1f},{bottom - v * scale_y:.1f}" for t, v in item.points
        )
        dash = f' stroke-dasharray="{item.dash}"' if item.dash else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{item.color}" stroke-width="1.8"'
            f"{dash}><title>{escape(item.label)}</title></polyline>"
        )
    parts += _legend([(s.label, s.color, s.dash) for s in series], bottom + 34)
    parts.append("</svg>")
    return "\n".join(parts)


def _time_axes(
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    frame: tuple[int, int, int],
    scale: tuple[float, float],
    y_unit: str,
) -> list[str]:
    left, top, bottom = frame
    scale_x, scale_y = scale
    parts = []
    for tick in y_ticks:
        y = bottom - tick * scale_y
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - 20}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{_tick_label(tick)}</text>"
        )
    for tick in x_ticks:
        x = left + tick * scale_x
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" class="tick" text-anchor="middle">'
            f"{_tick_label(tick)}</text>"
        )
    parts.append(f'<text x="4" y="{top - 10}" class="tick">{escape(y_unit)}</text>')
    parts.append(
        f'<text x="{WIDTH - 20}" y="{bottom + 28}" class="tick" text-anchor="end">'
        "seconds since start</text>"
    )
    return parts


def _legend(entries: Sequence[tuple[str, str, str]], top: float) -> list[str]:
    """Draw (label, color, dash) entries in three columns."""
    parts = []
    column_width = (WIDTH - 40) / 3
    for index, (label, color, dash) in enumerate(entries):
        x = 20 + (index % 3) * column_width
        y = top + (index // 3) * 18
        dash_attribute = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{x:.1f}" y1="{y - 7:.1f}" x2="{x + 14:.1f}" y2="{y - 7:.1f}" '
            f'stroke="{color}" stroke-width="3"{dash_attribute}/>'
        )
        parts.append(f'<text x="{x + 18:.1f}" y="{y - 4:.1f}" class="label">{escape(label)}</text>')
    return parts


@dataclass(frozen=True)
class ErrorRow:
    """Error counts of one provider @ target, grouped as 4xx, 5xx and other."""

    label: str
    requests: int
    group_counts: dict[str, int]


def error_plot(rows: Sequence[ErrorRow], title: str) -> str:
    """Draw the error rate of each row as a bar stacked by error group."""
    top = MARGIN
    height = top + ROW_HEIGHT * max(1, len(rows)) + 58
    bottom = height - 54
    max_rate = max(
        (sum(r.group_counts.values()) / r.requests for r in rows if r.requests), default=0.0
    )
    ticks = [t / 100 for t in nice_ticks(max(max_rate, 0.01) * 100)]
    scale_x = (WIDTH - LABEL_WIDTH - 20) / ticks[-1]
    parts = _svg_open(height, title)
    parts += _x_axis([t * 100 for t in ticks], top, bottom, scale_x / 100, "% of requests")
    for index, row in enumerate(rows):
        y = top + index * ROW_HEIGHT + ROW_HEIGHT / 2
        parts += _error_row(row, y, scale_x)
    parts += _legend([(group, color, "") for group, color in GROUP_COLORS.items()], bottom + 46)
    parts.append("</svg>")
    return "\n".join(parts)


def _error_row(row: ErrorRow, y: float, scale_x: float) -> list[str]:
    errors = sum(row.group_counts.values())
    parts = [
        f'<text x="{LABEL_WIDTH - 8}" y="{y + 4:.1f}" class="label" text-anchor="end">'
        f"{escape(row.label)} ({errors}/{row.requests})</text>"
    ]
    x = float(LABEL_WIDTH)
    for group, color in GROUP_COLORS.items():
        count = row.group_counts.get(group, 0)
        if not count or not row.requests:
            continue
        width = count / row.requests * scale_x
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 7:.1f}" width="{max(width, 1.0):.1f}" height="14" '
            f'fill="{color}"><title>{group}: {count}</title></rect>'
        )
        x += width
    return parts
