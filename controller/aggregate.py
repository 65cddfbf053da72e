"""Build a run's Report from the records stored in SQLite.

Reports are computed from stored records only, never from trace spans, which may be
sampled. One Summary per provider x target, in plan order:

- requests, successes, errors and error_rate count non-warm-up records; a record is
  an error when its error_class is set. Records with error_class "cancelled" were
  stopped by llmping (a cancelled run, a stopping agent), not failed by the provider,
  so they are counted in Summary.cancelled (warm-up ones not at all) and nowhere else,
  the timeline included.
- The latency distributions (ttft, e2e, ttfb, tpot, start_lag) use successful
  non-warm-up records that carry the field. Failed requests would mix the time to
  fail into the response time, so they are counted in error_rate instead.
- throughput_rps = successes / window, where the window runs from the earliest start
  to the latest end (start + e2e) of the non-warm-up records.
- not_available is set when every non-warm-up record failed with model_not_found, or
  with http_404 and an error detail naming the model (or, for a group with only
  warm-up records, when every one of those did).

The timeline uses every record, warm-up included, so the ramp-up stays visible. It
has 1 s buckets of start time counted from the run's start_at, and its p50s use the
bucket's successful records. Percentiles follow llmping.stats (linear interpolation,
as numpy's default).

Memory: one provider x target group is held at a time. Its successful latencies are
kept in array('d') (8 bytes per value, where a list of floats takes about 32), and a
sorted list of one field exists only while that field's distribution is computed.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmping.stats import mean_ci95, percentile
from llmping.v1 import llmping_pb2 as pb

from .score import score_summaries
from .thresholds import evaluate_thresholds

BUCKET_S = 1.0
SAMPLE_ERROR_LIMIT = 5
SAMPLE_ERROR_CHARS = 300
LATENCY_FIELDS = ("ttft_ms", "e2e_ms", "ttfb_ms", "tpot_ms", "start_lag_ms")
CANCELLED = "cancelled"
# The start time falls back to the scheduled time, then to the run's start (the "?"),
# so a record without timestamps still lands in a timeline bucket near the run.
_GROUP_COLUMNS = (
    "warmup, error_class, error_detail, "
    "COALESCE(NULLIF(start_unix_ns, 0), NULLIF(scheduled_unix_ns, 0), ?), "
    "ttft_ms, e2e_ms, ttfb_ms, tpot_ms, start_lag_ms, output_tokens, output_tokens_estimated, model"
)


def distribution(values: Sequence[float]) -> pb.Distribution:
    """Summarize values (left unchanged); an empty sequence gives count 0 and zeros."""
    if not values:
        return pb.Distribution()
    ordered = sorted(values)
    mean, stddev, low, high = mean_ci95(ordered)
    return pb.Distribution(
        count=len(ordered),
        mean=mean,
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        min=ordered[0],
        stddev=stddev,
        mean_ci95_low=low,
        mean_ci95_high=high,
    )


def _names_model(detail: str, model: str) -> bool:
    return bool(model) and model.lower() in detail.lower()


def _float_array() -> array[float]:
    return array("d")


@dataclass
class _Bucket:
    requests: int = 0
    errors: int = 0
    ttft_ms: array[float] = field(default_factory=_float_array)
    e2e_ms: array[float] = field(default_factory=_float_array)


@dataclass
class GroupAccumulator:
    """Running totals for one provider x target while its records stream past."""

    provider: str
    target: str
    model: str
    origin_unix_ns: int
    requests: int = 0
    errors: int = 0
    warmup_requests: int = 0
    cancelled: int = 0
    error_classes: Counter[str] = field(default_factory=Counter)
    sample_errors: list[str] = field(default_factory=list)
    # Errors showing that the provider does not offer the model, and the first detail.
    model_missing_errors: int = 0
    warmup_model_missing: int = 0
    model_missing_detail: str = ""
    latencies: dict[str, array[float]] = field(
        default_factory=lambda: {name: _float_array() for name in LATENCY_FIELDS}
    )
    output_tokens_sum: int = 0
    output_tokens_estimated: bool = False
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    buckets: dict[int, _Bucket] = field(default_factory=dict)

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.add_row(row)

    def add_row(self, row: Sequence[Any]) -> None:
        (
            warmup,
            error_class,
            detail,
            start_ns,
            ttft,
            e2e,
            ttfb,
            tpot,
            lag,
            tokens,
            estimated,
            model,
        ) = row
        if error_class == CANCELLED:
            self.cancelled += 0 if warmup else 1
            return
        self._add_to_timeline(start_ns, bool(error_class), ttft, e2e)
        if not self.model and model:
            self.model = str(model)
        if warmup:
            self.warmup_requests += 1
            if error_class and self._model_missing(str(error_class), str(detail or "")):
                self.warmup_model_missing += 1
                self.model_missing_detail = self.model_missing_detail or str(detail or "")
            return

        self.requests += 1
        self._note_window(start_ns, e2e)
        if error_class:
            self._add_error(str(error_class), str(detail or ""))
            return
        for name, value in zip(LATENCY_FIELDS, (ttft, e2e, ttfb, tpot, lag), strict=True):
            if value is not None:
                self.latencies[name].append(value)
        self.output_tokens_sum += int(tokens or 0)
        self.output_tokens_estimated = self.output_tokens_estimated or bool(estimated)

    def _add_to_timeline(
        self, start_ns: int, failed: bool, ttft_ms: float | None, e2e_ms: float | None
    ) -> None:
        index = (start_ns - self.origin_unix_ns) // int(BUCKET_S * 1e9)
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = _Bucket()
        bucket.requests += 1
        if failed:
            bucket.errors += 1
            return
        if ttft_ms is not None:
            bucket.ttft_ms.append(ttft_ms)
        if e2e_ms is not None:
            bucket.e2e_ms.append(e2e_ms)

    def _note_window(self, start_ns: int, e2e_ms: float | None) -> None:
        end_ns = start_ns + int((e2e_ms or 0.0) * 1e6)
        if self.first_start_ns is None or start_ns < self.first_start_ns:
            self.first_start_ns = start_ns
        if self.last_end_ns is None or end_ns > self.last_end_ns:
            self.last_end_ns = end_ns

    def _add_error(self, error_class: str, detail: str) -> None:
        self.errors += 1
        self.error_classes[error_class] += 1
        if self._model_missing(error_class, detail):
            self.model_missing_errors += 1
            self.model_missing_detail = self.model_missing_detail or detail
        if len(self.sample_errors) < SAMPLE_ERROR_LIMIT:
            sample = f"{error_class}: {detail}"[:SAMPLE_ERROR_CHARS]
            if sample not in self.sample_errors:
                self.sample_errors.append(sample)

    def _model_missing(self, error_class: str, detail: str) -> bool:
        return error_class == "model_not_found" or (
            error_class == "http_404" and _names_model(detail, self.model)
        )

    def summary(self) -> pb.Summary:
        successes = self.requests - self.errors
        summary = pb.Summary(
            provider=self.provider,
            target=self.target,
            model=self.model,
            requests=self.requests,
            successes=successes,
            errors=self.errors,
            error_rate=self.errors / self.requests if self.requests else 0.0,
            output_tokens_mean=self.output_tokens_sum / successes if successes else 0.0,
            output_tokens_estimated=self.output_tokens_estimated,
            throughput_rps=self._throughput_rps(successes),
            warmup_requests=self.warmup_requests,
            sample_error_details=self.sample_errors,
            cancelled=self.cancelled,
        )
        for name in LATENCY_FIELDS:
            getattr(summary, name).CopyFrom(distribution(self.latencies[name]))
        summary.error_classes.update(self.error_classes)
        # The agent stops a provider after a few such responses, possibly still within
        # the warm-up, so a group whose only records are warm-up ones counts those instead.
        warmup_only = not self.requests and self.warmup_requests
        if (self.requests and self.model_missing_errors == self.requests) or (
            warmup_only and self.warmup_model_missing == self.warmup_requests
        ):
            summary.not_available = True
            summary.not_available_detail = self.model_missing_detail
        return summary

    def _throughput_rps(self, successes: int) -> float:
        if self.first_start_ns is None or self.last_end_ns is None:
            return 0.0
        window_s = (self.last_end_ns - self.first_start_ns) / 1e9
        return successes / window_s if window_s > 0 else 0.0

    def timeline(self) -> list[pb.TimelineBucket]:
        result = []
        for index in sorted(self.buckets):
            bucket = self.buckets[index]
            ttft = sorted(bucket.ttft_ms)
            e2e = sorted(bucket.e2e_ms)
            result.append(
                pb.TimelineBucket(
                    provider=self.provider,
                    target=self.target,
                    bucket_start_unix_ns=self.origin_unix_ns + index * int(BUCKET_S * 1e9),
                    bucket_s=BUCKET_S,
                    requests=bucket.requests,
                    errors=bucket.errors,
                    ttft_p50_ms=percentile(ttft, 50) if ttft else 0.0,
                    e2e_p50_ms=percentile(e2e, 50) if e2e else 0.0,
                )
            )
        return result


def _groups(conn: sqlite3.Connection, run_id: str, plan: pb.Plan) -> list[tuple[str, str]]:
    """Return (provider, target) pairs: the plan's, in plan order, then any others stored."""
    planned = [(p.name, t.name) for p in plan.providers for t in plan.targets]
    stored = conn.execute(
        "SELECT DISTINCT provider, target FROM records WHERE run_id = ?", (run_id,)
    ).fetchall()
    extra = sorted({(str(p), str(t)) for p, t in stored} - set(planned))
    return planned + extra


def _plan_models(plan: pb.Plan) -> dict[str, str]:
    return {p.name: p.model or p.deployment for p in plan.providers}


def aggregate_group(
    conn: sqlite3.Connection,
    run_id: str,
    provider: str,
    target: str,
    model: str,
    origin_unix_ns: int,
) -> GroupAccumulator:
    """Stream one provider x target group's records into an accumulator."""
    accumulator = GroupAccumulator(provider, target, model, origin_unix_ns)
    cursor = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM records WHERE run_id = ? AND provider = ? AND target = ?",
        (origin_unix_ns, run_id, provider, target),
    )
    cursor.arraysize = 10_000
    while rows := cursor.fetchmany():
        accumulator.add_rows(rows)
    return accumulator


def agent_diagnoses(conn: sqlite3.Connection, run_id: str) -> list[pb.AgentDiagnosisReport]:
    rows = conn.execute(
        "SELECT id, agent_id, target, diagnosis FROM assignments "
        "WHERE run_id = ? AND diagnosis IS NOT NULL ORDER BY target, agent_id",
        (run_id,),
    ).fetchall()
    return [
        pb.AgentDiagnosisReport(
            assignment_id=assignment_id,
            agent_id=agent_id,
            target=target,
            diagnosis=pb.AgentDiagnosis.FromString(diagnosis),
        )
        for assignment_id, agent_id, target, diagnosis in rows
    ]


def build_report(conn: sqlite3.Connection, run: pb.RunInfo, plan: pb.Plan) -> pb.Report:
    """Compute the Report of one run from a read connection to the store."""
    report = pb.Report(run=run, plan=plan)
    models = _plan_models(plan)
    origin = run.start_at_unix_ns or run.created_unix_ns

    for provider, target in _groups(conn, run.run_id, plan):
        accumulator = aggregate_group(
            conn, run.run_id, provider, target, models.get(provider, ""), origin
        )
        report.summaries.append(accumulator.summary())
        report.timeline.extend(accumulator.timeline())

    score_summaries(report.summaries)
    report.threshold_results.extend(evaluate_thresholds(plan.thresholds, report.summaries))
    report.agent_diagnoses.extend(agent_diagnoses(conn, run.run_id))
    return report
