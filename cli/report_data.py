"""Figures shared by every report format: the provider x target grid, cell text,
error grouping, noise comparisons and the run's pass/fail verdict.

Each figure carries the number of requests behind it (``n=``) because a p95 over
five requests means little.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from llmping.cli.report_sanitize import clean_text
from llmping.v1 import llmping_pb2 as pb

ERROR_GROUPS = ("4xx", "5xx", "other")
MISSING = "-"
# Maximum length, in characters, of the sample error message in the table and Markdown
# reports. The HTML and JSON reports keep the whole detail.
SAMPLE_ERROR_MAX_CHARS = 200
NOT_AVAILABLE = "N/A"
LEGEND = (
    "avg: mean E2E with the half-width of its 95% confidence interval. "
    "E2E: request start to the end of the response. TTFT: time to the first generated text. "
    "loss: failed requests / requests. n: requests behind the figure. Score: 1-5."
)
OP_SYMBOLS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
TERMINAL_STATES = frozenset({pb.COMPLETED, pb.PARTIAL, pb.FAILED, pb.CANCELLED})


def state_name(state: int) -> str:
    return pb.RunState.Name(state) if state in pb.RunState.values() else str(state)


def provider_names(report: pb.Report) -> list[str]:
    """Return providers in plan order, then any that only the summaries name."""
    names = [p.name for p in report.plan.providers]
    names += [s.provider for s in report.summaries if s.provider not in names]
    return list(dict.fromkeys(names))


def target_names(report: pb.Report) -> list[str]:
    """Return targets in plan order, then any that only the summaries name."""
    names = [t.name for t in report.plan.targets]
    names += [s.target for s in report.summaries if s.target not in names]
    return list(dict.fromkeys(names))


def summary_grid(report: pb.Report) -> dict[tuple[str, str], pb.Summary]:
    """Index the summaries by (provider, target)."""
    return {(s.provider, s.target): s for s in report.summaries}


def model_of(report: pb.Report, provider: str) -> str:
    for entry in report.plan.providers:
        if entry.name == provider:
            return entry.model
    for summary in report.summaries:
        if summary.provider == provider:
            return summary.model
    return ""


def format_ms(value: float) -> str:
    """Format milliseconds: whole numbers from 100 ms up, one decimal below."""
    if math.isnan(value):
        return "?"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def format_unix_ns(unix_ns: int) -> str:
    if unix_ns <= 0:
        return MISSING
    moment = datetime.fromtimestamp(unix_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def stars(score: float) -> str:
    """Render a 1-5 score as five stars plus the figure; 0 means too little data."""
    if score <= 0:
        return "score n/a"
    filled = max(1, min(5, round(score)))
    return "★" * filled + "☆" * (5 - filled) + f" {score:.1f}"


# ---------------------------------------------------------------------------
# Cells.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseNote:
    """Two providers in one target whose mean E2E 95% confidence intervals overlap."""

    target: str
    faster: str
    slower: str
    faster_mean_ms: float
    slower_mean_ms: float


def _has_e2e(summary: pb.Summary) -> bool:
    return not summary.not_available and summary.e2e_ms.count >= 2


def _intervals_overlap(a: pb.Distribution, b: pb.Distribution) -> bool:
    return a.mean_ci95_low <= b.mean_ci95_high and b.mean_ci95_low <= a.mean_ci95_high


def noise_notes(report: pb.Report) -> list[NoiseNote]:
    """List, per target, every provider pair whose E2E difference is within noise."""
    grid = summary_grid(report)
    notes: list[NoiseNote] = []
    for target in target_names(report):
        rows = [grid[(p, target)] for p in provider_names(report) if (p, target) in grid]
        ranked = sorted((s for s in rows if _has_e2e(s)), key=lambda s: s.e2e_ms.mean)
        for faster, slower in itertools.combinations(ranked, 2):
            if _intervals_overlap(faster.e2e_ms, slower.e2e_ms):
                notes.append(
                    NoiseNote(
                        target,
                        faster.provider,
                        slower.provider,
                        faster.e2e_ms.mean,
                        slower.e2e_ms.mean,
                    )
                )
    return notes


def fastest_marks(report: pb.Report) -> dict[tuple[str, str], str]:
    """Mark, per target, the fastest provider by mean E2E and those tied with it."""
    grid = summary_grid(report)
    marks: dict[tuple[str, str], str] = {}
    for target in target_names(report):
        rows = [grid[(p, target)] for p in provider_names(report) if (p, target) in grid]
        ranked = sorted((s for s in rows if _has_e2e(s)), key=lambda s: s.e2e_ms.mean)
        if len(ranked) < 2:
            continue
        best = ranked[0]
        tied = [s for s in ranked[1:] if _intervals_overlap(best.e2e_ms, s.e2e_ms)]
        marks[(best.provider, target)] = "fastest" + (" (tie within noise)" if tied else "")
        for summary in tied:
            marks[(summary.provider, target)] = f"≈ {best.provider}, within noise"
    return marks


def cell_lines(summary: pb.Summary | None, mark: str = "") -> list[str]:
    """Return the lines of one provider x target cell."""
    if summary is None:
        return [MISSING]
    if summary.not_available:
        return [NOT_AVAILABLE]
    if summary.requests == 0:
        return ["no requests"]
    lines: list[str] = []
    e2e = summary.e2e_ms
    if e2e.count:
        half_width = (e2e.mean_ci95_high - e2e.mean_ci95_low) / 2
        lines.append(f"avg {format_ms(e2e.mean)} ms ±{format_ms(half_width)} (n={e2e.count})")
        lines.append(f"E2E p50 {format_ms(e2e.p50)} / p95 {format_ms(e2e.p95)} ms")
    ttft = summary.ttft_ms
    if ttft.count:
        lines.append(
            f"TTFT avg {format_ms(ttft.mean)} p50 {format_ms(ttft.p50)} "
            f"/ p95 {format_ms(ttft.p95)} ms (n={ttft.count})"
        )
    loss = f"loss {format_percent(summary.error_rate)} ({summary.errors}/{summary.requests})"
    if summary.cancelled:
        loss += f", {summary.cancelled} cancelled"
    lines.append(loss)
    lines.append(stars(summary.score))
    if mark:
        lines.append(mark)
    return lines


# ---------------------------------------------------------------------------
# Errors, availability, thresholds.
# ---------------------------------------------------------------------------


def error_group(error_class: str) -> str:
    """Return 4xx, 5xx or other for an error class such as http_429 or timeout_ttft."""
    if error_class.startswith("http_4"):
        return "4xx"
    if error_class.startswith("http_5"):
        return "5xx"
    return "other"


def group_error_classes(classes: Mapping[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Split error counts into 4xx, 5xx and other, each sorted by count, largest first."""
    grouped: dict[str, list[tuple[str, int]]] = {group: [] for group in ERROR_GROUPS}
    for error_class, count in classes.items():
        grouped[error_group(error_class)].append((error_class, count))
    for entries in grouped.values():
        entries.sort(key=lambda entry: (-entry[1], entry[0]))
    return grouped


def error_breakdown(summary: pb.Summary) -> str:
    """Return ``4xx: http_429 x12 | 5xx: http_502 x3`` for one summary."""
    parts = []
    for group, entries in group_error_classes(summary.error_classes).items():
        if entries:
            counts = ", ".join(f"{name} x{count}" for name, count in entries)
            parts.append(f"{group}: {counts}")
    return " | ".join(parts)


def sample_error_message(summary: pb.Summary, max_chars: int = SAMPLE_ERROR_MAX_CHARS) -> str:
    """Return the first sample error detail, shortened at a space to max_chars.

    The cut falls between words, so an address such as 127.0.0.1:7890 stays whole. A
    detail with no space in its first max_chars is cut at max_chars.
    """
    if not summary.sample_error_details:
        return ""
    text = " ".join(summary.sample_error_details[0].split())
    if len(text) <= max_chars:
        return text
    head = text[: max_chars - 1]
    space = head.rfind(" ")
    # A head followed by a space already ends with a whole word.
    if text[max_chars - 1] != " " and space > 0:
        head = head[:space]
    return head.rstrip() + "…"


def summaries_with_errors(report: pb.Report) -> list[pb.Summary]:
    grid = summary_grid(report)
    ordered = [
        grid[(p, t)] for p in provider_names(report) for t in target_names(report) if (p, t) in grid
    ]
    return [s for s in ordered if s.errors and not s.not_available]


def not_available_notes(report: pb.Report) -> list[str]:
    """Return one line per provider and target where the model was not offered."""
    return [
        f"{s.provider} @ {s.target}: {s.not_available_detail or 'model not offered'}"
        for s in report.summaries
        if s.not_available
    ]


def describe_threshold(threshold: pb.Threshold) -> str:
    symbol = OP_SYMBOLS.get(threshold.op, threshold.op)
    return f"{threshold.metric} {symbol} {threshold.value:g}"


def threshold_scope(result: pb.ThresholdResult) -> str:
    provider = result.provider or "all providers"
    target = result.target or "all targets"
    return f"{provider} @ {target}"


def describe_request(plan: pb.Plan) -> str:
    """Return the request as one line: the last user message and the main settings."""
    prompt = next((m.content for m in reversed(plan.request.messages) if m.role == "user"), "")
    if len(prompt) > 60:
        prompt = prompt[:57] + "..."
    mode = "stream" if plan.request.stream else "no stream"
    return f"{prompt!r}, max_tokens {plan.request.max_tokens}, {mode}"


def describe_load(load: pb.LoadSpec) -> str:
    """Return a short label such as ``closed, c=2, 50 requests per provider per target``."""
    mode = pb.LoadSpec.Mode.Name(load.mode).lower() if load.mode else "unset"
    parts = [mode]
    if load.stages:
        steps = [
            f"c={s.concurrency}" if load.mode == pb.LoadSpec.CLOSED else f"{s.rate_per_s:g}/s"
            for s in load.stages
        ]
        parts.append(" -> ".join(steps))
    elif load.mode == pb.LoadSpec.CLOSED:
        parts.append(f"c={load.concurrency}")
    else:
        parts.append(f"{load.rate_per_s:g}/s")
    if load.duration_s:
        parts.append(f"{load.duration_s:g} s")
    if load.request_count:
        parts.append(f"{load.request_count} requests")
    return ", ".join(parts) + " per provider per target"


# ---------------------------------------------------------------------------
# Verdict.
# ---------------------------------------------------------------------------


def failed_thresholds(report: pb.Report) -> list[pb.ThresholdResult]:
    return [r for r in report.threshold_results if not r.passed]


def failure_reasons(report: pb.Report) -> list[str]:
    """Return why the run should exit with status 1; empty when it passed.

    The reasons quote the run's reason and provider names, so their control characters
    are replaced before they are printed.
    """
    reasons: list[str] = []
    run = report.run
    if run.state in (pb.PARTIAL, pb.FAILED, pb.CANCELLED):
        reasons.append(
            f"run {run.run_id} ended {state_name(run.state)}: {run.reason or 'no reason given'}"
        )
    for result in failed_thresholds(report):
        reasons.append(
            f"threshold failed: {describe_threshold(result.threshold)} for "
            f"{threshold_scope(result)}, observed {result.observed:g}"
        )
    return [clean_text(reason) for reason in reasons]


def run_timing(run: pb.RunInfo) -> tuple[int, float | None]:
    """Return when the run started (unix ns) and how long it took in seconds, if it ended.

    A run that ended before its planned start (an assignment failed at once) is timed
    from its creation instead, so it never shows a negative duration.
    """
    started = run.start_at_unix_ns or run.created_unix_ns
    if run.ended_unix_ns and run.ended_unix_ns < started:
        started = run.created_unix_ns
    if not run.ended_unix_ns or not started:
        return started, None
    return started, (run.ended_unix_ns - started) / 1e9


def header_lines(report: pb.Report) -> list[str]:
    """Return the lines naming the run, its state, timing and trace."""
    run = report.run
    state = state_name(run.state)
    if run.reason:
        state += f" ({run.reason})"
    lines = [f"run {run.run_id}  plan {report.plan.name or run.plan_name}  {state}"]
    started, took_s = run_timing(run)
    timing = f"started {format_unix_ns(started)}"
    if took_s is not None:
        timing += f", took {took_s:.1f} s"
    lines.append(timing)
    lines.append("request " + describe_request(report.plan))
    lines.append("load " + describe_load(report.plan.load))
    if run.trace_id:
        lines.append(f"trace {run.trace_id}")
    return lines


def _verdict_text(diagnosis: pb.AgentDiagnosis, info: pb.AssignmentInfo | None) -> str:
    """Return the agent's verdict, or why it has none: an assignment that failed never ran."""
    if diagnosis.verdict:
        return diagnosis.verdict
    if info is not None and info.state == pb.AssignmentUpdate.FAILED:
        return f"assignment failed: {info.message}" if info.message else "assignment failed"
    return "ok"


def diagnosis_rows(report: pb.Report) -> Iterable[list[str]]:
    """Yield one row per agent assignment: agent, target, verdict and the figures behind it.

    The rows match diagnosis_columns(report), so they end with the count of requests
    that failed inside the agent only when some agent had such failures.
    """
    show_failed_locally = _any_failed_locally(report)
    assignments = {info.assignment_id: info for info in report.run.assignments}
    for entry in report.agent_diagnoses:
        diagnosis = entry.diagnosis
        row = [
            entry.agent_id,
            entry.target,
            _verdict_text(diagnosis, assignments.get(entry.assignment_id)),
            f"{format_ms(diagnosis.start_lag_p99_ms)} ms",
            f"{format_ms(diagnosis.event_loop_lag_p99_ms)}/"
            f"{format_ms(diagnosis.event_loop_lag_max_ms)} ms",
            f"{diagnosis.cpu_percent_max:.0f}%",
            f"{diagnosis.requests_delayed_by_cap}/{diagnosis.requests_dropped_by_cap}",
        ]
        if show_failed_locally:
            row.append(str(diagnosis.requests_failed_locally))
        yield row


DIAGNOSIS_COLUMNS = [
    "agent",
    "target",
    "verdict",
    "start lag p99",
    "loop lag p99/max",
    "cpu max",
    "delayed/dropped by cap",
]
FAILED_LOCALLY_COLUMN = "failed in agent"


def diagnosis_columns(report: pb.Report) -> list[str]:
    """Return the self-diagnosis columns, with FAILED_LOCALLY_COLUMN only when it is needed.

    The count of requests that failed inside the agent gets a column only when some
    agent counted any, so the table stays narrow otherwise.
    """
    if _any_failed_locally(report):
        return [*DIAGNOSIS_COLUMNS, FAILED_LOCALLY_COLUMN]
    return list(DIAGNOSIS_COLUMNS)


def _any_failed_locally(report: pb.Report) -> bool:
    return any(entry.diagnosis.requests_failed_locally for entry in report.agent_diagnoses)
