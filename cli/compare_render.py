"""Formats of `llmping compare`: terminal table, JSON and Markdown."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from llmping.cli import compare_data as data
from llmping.cli import report_data
from llmping.cli.report_sanitize import printable_report
from llmping.cli.report_text import md_escape, md_table
from llmping.errors import InputError
from llmping.v1 import llmping_pb2 as pb

COMPARE_FORMATS = ("table", "json", "markdown")
TABLE_WIDTH = 160
ROW_COLUMNS = [
    "provider",
    "target",
    "metric",
    "baseline",
    "candidate",
    "change",
    "95% CI",
    "result",
]
LEGEND = (
    "change: candidate - baseline. 95% CI: interval of the change of the mean (Welch's t) "
    "or of the error rate (Newcombe's score interval, in percentage points). "
    "A change whose interval contains 0 is within noise."
)
NOT_AVAILABLE_TITLE = "N/A: the provider does not offer the model"
# Short cells kept on one line; rich wraps the figures columns instead.
NO_WRAP_COLUMNS = frozenset({"metric", "95% CI", "result"})
# Result cells colored in the terminal table.
RESULT_STYLES = {
    data.SLOWER: "bold red",
    data.MORE_ERRORS: "bold red",
    data.FASTER: "green",
    data.FEWER_ERRORS: "green",
    data.WITHIN_NOISE: "dim",
}

Cell = list[str]


# ---------------------------------------------------------------------------
# Rows shared by the table and Markdown formats.
# ---------------------------------------------------------------------------


def distribution_lines(distribution: pb.Distribution) -> Cell:
    if distribution.count == 0:
        return ["no successful requests"]
    return [
        f"mean {report_data.format_ms(distribution.mean)} ms (n={distribution.count})",
        f"p50 {report_data.format_ms(distribution.p50)} / "
        f"p95 {report_data.format_ms(distribution.p95)} ms",
    ]


def latency_change_lines(latency: data.LatencyComparison) -> Cell:
    if latency.baseline.count == 0 or latency.candidate.count == 0:
        return [report_data.MISSING]
    p50_ms = latency.candidate.p50 - latency.baseline.p50
    p95_ms = latency.candidate.p95 - latency.baseline.p95
    return [
        f"mean {data.describe_latency_change(latency)}",
        f"p50 {data.signed_ms(p50_ms)} / p95 {data.signed_ms(p95_ms)} ms",
    ]


def latency_interval_text(latency: data.LatencyComparison) -> str:
    if latency.ci95_ms is None:
        return report_data.MISSING
    low, high = latency.ci95_ms
    return f"[{data.signed_ms(low)}, {data.signed_ms(high)}] ms"


def error_rate_text(errors: int, requests: int) -> str:
    if requests == 0:
        return "no requests"
    return f"{report_data.format_percent(errors / requests)} ({errors}/{requests})"


def error_interval_text(errors: data.ErrorRateComparison) -> str:
    if errors.ci95 is None:
        return report_data.MISSING
    low, high = errors.ci95
    return f"[{low * 100:+.1f}, {high * 100:+.1f}] pp"


def _latency_row(latency: data.LatencyComparison) -> list[Cell]:
    return [
        [data.LATENCY_METRICS[latency.metric]],
        distribution_lines(latency.baseline),
        distribution_lines(latency.candidate),
        latency_change_lines(latency),
        [latency_interval_text(latency)],
        [latency.verdict],
    ]


def _error_row(errors: data.ErrorRateComparison) -> list[Cell]:
    return [
        ["errors"],
        [error_rate_text(errors.baseline_errors, errors.baseline_requests)],
        [error_rate_text(errors.candidate_errors, errors.candidate_requests)],
        [data.format_points(errors.change)],
        [error_interval_text(errors)],
        [errors.verdict],
    ]


def _not_available_row(group: data.GroupComparison) -> list[Cell]:
    """Return the latency row of a group whose provider did not offer the model."""
    baseline = report_data.NOT_AVAILABLE if group.baseline_not_available else "-"
    candidate = report_data.NOT_AVAILABLE if group.candidate_not_available else "-"
    missing = [report_data.MISSING]
    return [["latency"], [baseline], [candidate], missing, missing, [group.availability()]]


def not_available_notes(comparison: data.RunComparison) -> list[str]:
    """Return one line per group and run where the provider did not offer the model."""
    notes = []
    for group in comparison.compared_groups():
        for role, detail in (
            ("baseline", group.baseline_not_available),
            ("candidate", group.candidate_not_available),
        ):
            if detail:
                notes.append(f"{group.provider} @ {group.target} in the {role}: {detail}")
    return notes


def group_rows(group: data.GroupComparison) -> list[list[Cell]]:
    """Return the rows of one group; each row has one cell per ROW_COLUMNS entry."""
    head: list[Cell] = [[group.provider], [group.target]]
    missing = [report_data.MISSING]
    if group.status != data.COMPARED:
        return [[*head, missing, missing, missing, missing, missing, [group.status]]]

    rows = [[*head, *_latency_row(latency)] for latency in group.latencies]
    if not group.latencies:
        rows.append([*head, *_not_available_row(group)])
    if group.error_rate is not None:
        rows.append([*head, *_error_row(group.error_rate)])
    return rows


def header_lines(comparison: data.RunComparison) -> list[str]:
    """Return one line per run: its role, id, plan, state and start time."""
    lines = []
    for role, report in (("baseline", comparison.baseline), ("candidate", comparison.candidate)):
        run = report.run
        started, _ = report_data.run_timing(run)
        lines.append(
            f"{role}: run {run.run_id or report_data.MISSING}, "
            f"plan {report.plan.name or run.plan_name or report_data.MISSING}, "
            f"{report_data.state_name(run.state)}, started {report_data.format_unix_ns(started)}"
        )
    return lines


# ---------------------------------------------------------------------------
# Formats.
# ---------------------------------------------------------------------------


def render_table(comparison: data.RunComparison) -> Group:
    """Build the terminal table; every cell is a Text so that names are never markup."""
    table = Table(title="Baseline vs candidate", show_lines=True, title_justify="left")
    for column in ROW_COLUMNS:
        table.add_column(column, no_wrap=column in NO_WRAP_COLUMNS)
    for group in comparison.groups:
        for row in group_rows(group):
            cells = [Text("\n".join(cell)) for cell in row]
            cells[-1].stylize(RESULT_STYLES.get(row[-1][0], ""))
            table.add_row(*cells)
    parts: list[RenderableType] = [Text("\n".join(header_lines(comparison)))]
    parts += [table, Text(LEGEND, style="dim")]
    notes = not_available_notes(comparison)
    if notes:
        parts += [Text(NOT_AVAILABLE_TITLE, style="bold"), *map(Text, notes)]
    return Group(*parts)


def table_text(comparison: data.RunComparison) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=TABLE_WIDTH, force_terminal=False, color_system=None)
    console.print(render_table(comparison))
    return buffer.getvalue()


def to_markdown(comparison: data.RunComparison) -> str:
    lines = ["# llmping comparison", ""]
    lines += [f"- {md_escape(line)}" for line in header_lines(comparison)]
    rows = [
        ["<br>".join(md_escape(line) for line in cell) for cell in row]
        for group in comparison.groups
        for row in group_rows(group)
    ]
    lines += ["", *md_table(ROW_COLUMNS, rows), "", f"_{md_escape(LEGEND)}_"]
    notes = not_available_notes(comparison)
    if notes:
        lines += ["", f"**{NOT_AVAILABLE_TITLE}**", ""]
        lines += [f"- {md_escape(note)}" for note in notes]
    return "\n".join(lines) + "\n"


def _distribution_document(distribution: pb.Distribution) -> dict[str, Any]:
    return {
        "count": distribution.count,
        "mean_ms": distribution.mean,
        "p50_ms": distribution.p50,
        "p95_ms": distribution.p95,
        "stddev_ms": distribution.stddev,
    }


def _interval_document(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def _group_document(group: data.GroupComparison) -> dict[str, Any]:
    document: dict[str, Any] = {
        "provider": group.provider,
        "target": group.target,
        "status": group.status,
        "baseline_not_available": group.baseline_not_available,
        "candidate_not_available": group.candidate_not_available,
    }
    for latency in group.latencies:
        document[latency.metric] = {
            "baseline": _distribution_document(latency.baseline),
            "candidate": _distribution_document(latency.candidate),
            "change_ms": latency.change_ms,
            "change_pct": latency.change_pct,
            "ci95_ms": _interval_document(latency.ci95_ms),
            "result": latency.verdict,
        }
    errors = group.error_rate
    if errors is not None:
        document["error_rate"] = {
            "baseline": {"errors": errors.baseline_errors, "requests": errors.baseline_requests},
            "candidate": {"errors": errors.candidate_errors, "requests": errors.candidate_requests},
            "change": errors.change,
            "ci95": _interval_document(errors.ci95),
            "result": errors.verdict,
        }
    return document


def _run_document(report: pb.Report) -> dict[str, Any]:
    return {
        "run_id": report.run.run_id,
        "plan_name": report.plan.name or report.run.plan_name,
        "state": report_data.state_name(report.run.state),
    }


def to_json(comparison: data.RunComparison, max_slowdown_pct: float | None) -> str:
    """Render the comparison as JSON; changes are candidate - baseline.

    Error-rate changes and intervals are fractions (0.01 is one percentage point).
    ``regressions`` lists what `--fail-on-regression` would fail on.
    """
    document = {
        "baseline": _run_document(comparison.baseline),
        "candidate": _run_document(comparison.candidate),
        "max_slowdown_pct": max_slowdown_pct,
        "groups": [_group_document(group) for group in comparison.groups],
        "regressions": data.regressions(comparison, max_slowdown_pct),
    }
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def printable_comparison(comparison: data.RunComparison) -> data.RunComparison:
    """Return the comparison of copies of both reports with control characters replaced."""
    return data.compare_reports(
        printable_report(comparison.baseline), printable_report(comparison.candidate)
    )


def render_comparison(
    comparison: data.RunComparison, output_format: str, max_slowdown_pct: float | None
) -> str:
    """Render in one of COMPARE_FORMATS; JSON keeps every string exactly, as it escapes."""
    if output_format == "json":
        return to_json(comparison, max_slowdown_pct)
    if output_format == "markdown":
        return to_markdown(printable_comparison(comparison))
    if output_format == "table":
        return table_text(printable_comparison(comparison))
    raise InputError(
        f"unknown comparison format {output_format!r}, use one of {', '.join(COMPARE_FORMATS)}"
    )
