"""JSON, CSV and Markdown report formats."""

from __future__ import annotations

import csv
import io
import json
import re

from google.protobuf.json_format import MessageToDict

from llmping.cli import report_data as data
from llmping.v1 import llmping_pb2 as pb

DISTRIBUTION_FIELDS = ("count", "mean", "p50", "p90", "p95", "p99", "max")
DISTRIBUTION_METRICS = ("ttft_ms", "e2e_ms", "ttfb_ms", "tpot_ms", "start_lag_ms")
# json.dumps escapes C0 characters but writes DEL and C1 characters as they are.
_UNESCAPED_CONTROLS = re.compile(r"[\x7f-\x9f]")
# Characters that start Markdown syntax or inline HTML inside a table cell.
_MARKDOWN_SPECIALS = re.compile(r"[\\`*_~\[\]<>|&]")


def to_json(report: pb.Report) -> str:
    """Render the whole report as JSON with proto field names and sorted keys.

    Fields left at their default are included so every report has the same keys.
    """
    document = MessageToDict(
        report,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    # These characters can only be inside strings, where a \uXXXX escape is the same text.
    return _UNESCAPED_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def csv_columns() -> list[str]:
    columns = ["run_id", "provider", "model", "target", "not_available"]
    columns += ["requests", "successes", "errors", "error_rate", "warmup_requests", "cancelled"]
    for metric in DISTRIBUTION_METRICS:
        name = metric.removesuffix("_ms")
        columns += [
            f"{name}_{stat}" + ("" if stat == "count" else "_ms") for stat in DISTRIBUTION_FIELDS
        ]
    columns += ["e2e_mean_ci95_low_ms", "e2e_mean_ci95_high_ms"]
    columns += ["output_tokens_mean", "output_tokens_estimated", "throughput_rps", "score"]
    columns += ["error_classes"]
    return columns


def _csv_row(report: pb.Report, summary: pb.Summary) -> list[object]:
    row: list[object] = [
        report.run.run_id,
        summary.provider,
        summary.model,
        summary.target,
        summary.not_available,
        summary.requests,
        summary.successes,
        summary.errors,
        summary.error_rate,
        summary.warmup_requests,
        summary.cancelled,
    ]
    for metric in DISTRIBUTION_METRICS:
        distribution = getattr(summary, metric)
        row += [getattr(distribution, stat) for stat in DISTRIBUTION_FIELDS]
    row += [summary.e2e_ms.mean_ci95_low, summary.e2e_ms.mean_ci95_high]
    row += [
        summary.output_tokens_mean,
        summary.output_tokens_estimated,
        summary.throughput_rps,
        summary.score,
    ]
    row.append(";".join(f"{k}={v}" for k, v in sorted(summary.error_classes.items())))
    return row


def to_csv(report: pb.Report) -> str:
    """Render one row per provider x target, in plan order, with flat columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns())
    grid = data.summary_grid(report)
    for provider in data.provider_names(report):
        for target in data.target_names(report):
            summary = grid.get((provider, target))
            if summary is not None:
                writer.writerow(_csv_row(report, summary))
    return buffer.getvalue()


def md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_escape_message(text: str) -> str:
    """Escape provider text for a Markdown table cell, so that it shows as written.

    A backslash, which GitHub-flavored Markdown allows before any ASCII punctuation,
    disarms table pipes, emphasis, code, links and inline HTML such as <script>.
    """
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\g<0>", text)
    return escaped.replace("\r", " ").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _md_grid(report: pb.Report) -> list[str]:
    grid = data.summary_grid(report)
    marks = data.fastest_marks(report)
    targets = data.target_names(report)
    rows = []
    for provider in data.provider_names(report):
        model = data.model_of(report, provider)
        cells = [f"**{md_escape(provider)}**" + (f"<br>{md_escape(model)}" if model else "")]
        for target in targets:
            key = (provider, target)
            lines = data.cell_lines(grid.get(key), marks.get(key, ""))
            cells.append("<br>".join(md_escape(line) for line in lines))
        rows.append(cells)
    return md_table(["provider", *targets], rows)


def _md_sections(report: pb.Report) -> list[str]:
    lines: list[str] = []
    notes = data.not_available_notes(report)
    if notes:
        lines += ["", "**N/A**: the provider does not offer the model.", ""]
        lines += [f"- {md_escape(note)}" for note in notes]
    noise = data.noise_notes(report)
    if noise:
        lines += ["", "**Within noise** (95% confidence intervals of mean E2E overlap):", ""]
        lines += [
            f"- {md_escape(n.target)}: {md_escape(n.faster)} "
            f"{data.format_ms(n.faster_mean_ms)} ms vs {md_escape(n.slower)} "
            f"{data.format_ms(n.slower_mean_ms)} ms"
            for n in noise
        ]
    errors = data.summaries_with_errors(report)
    if errors:
        lines += ["", "## Errors", ""]
        rows = [
            [
                md_escape(s.provider),
                md_escape(s.target),
                f"{s.errors}/{s.requests}",
                md_escape(data.error_breakdown(s)),
                md_escape_message(data.sample_error_message(s)),
            ]
            for s in errors
        ]
        lines += md_table(["provider", "target", "errors", "classes", "sample message"], rows)
    return lines


def _md_thresholds(report: pb.Report) -> list[str]:
    if not report.threshold_results:
        return []
    rows = [
        [
            md_escape(data.describe_threshold(r.threshold)),
            md_escape(data.threshold_scope(r)),
            f"{r.observed:g}",
            "pass" if r.passed else "**FAIL**",
        ]
        for r in report.threshold_results
    ]
    return ["", "## Thresholds", "", *md_table(["rule", "scope", "observed", "result"], rows)]


def _md_diagnoses(report: pb.Report) -> list[str]:
    if not report.agent_diagnoses:
        return []
    rows = [[md_escape(cell) for cell in row] for row in data.diagnosis_rows(report)]
    return ["", "## Agent self-diagnosis", "", *md_table(data.diagnosis_columns(report), rows)]


def to_markdown(report: pb.Report) -> str:
    """Render the comparison table and its sections as GitHub-flavored Markdown."""
    lines = [f"# llmping report: {md_escape(report.plan.name or report.run.plan_name)}", ""]
    lines += [f"- {md_escape(line)}" for line in data.header_lines(report)]
    lines += ["", *_md_grid(report), "", f"_{md_escape(data.LEGEND)}_"]
    lines += _md_sections(report)
    lines += _md_thresholds(report)
    lines += _md_diagnoses(report)
    return "\n".join(lines) + "\n"
