"""Report math on hand-made records stored in a real SQLite file."""

from __future__ import annotations

import math

import pytest

from llmping.controller.aggregate import build_report, distribution
from llmping.controller.store import AssignmentRow, RunRow, Store, open_reader
from llmping.v1 import llmping_pb2 as pb

START_NS = 1_700_000_000_000_000_000
SECOND_NS = 1_000_000_000
Z_95 = 1.959963984540054


def at(seconds: float) -> int:
    return START_NS + int(seconds * SECOND_NS)


def make_plan(providers: list[tuple[str, str]], targets: list[str]) -> pb.Plan:
    plan = pb.Plan(name="aggregate")
    for name, model in providers:
        plan.providers.append(pb.Provider(name=name, model=model))
    for name in targets:
        plan.targets.append(pb.Target(name=name, selector={"region": name}))
    return plan


def build(tmp_path, plan: pb.Plan, records: list[pb.Record], diagnosis=None) -> pb.Report:
    """Store the records as one run with one assignment per target, then build its report."""
    store = Store(tmp_path / "aggregate.db")
    run = pb.RunInfo(run_id="run-1", start_at_unix_ns=START_NS, created_unix_ns=START_NS)
    store.insert_run(
        RunRow(
            "run-1",
            plan.name,
            plan.SerializeToString(),
            pb.COMPLETED,
            "",
            START_NS,
            START_NS,
            0,
            "",
        ),
        [
            AssignmentRow(
                f"a-{t.name}", "run-1", f"agent-{t.name}", t.name, b"", 3, "", 0, 0, None, 0
            )
            for t in plan.targets
        ],
    )
    if diagnosis is not None:
        store.update_assignment(
            f"a-{plan.targets[0].name}", 3, "", 1, 1, diagnosis.SerializeToString()
        )
    for seq, record in enumerate(records, start=1):
        identity = ("run-1", f"a-{record.target}", f"agent-{record.target}", record.target)
        store.insert_batch(f"a-{record.target}", seq, [record], identity)
    store.close()
    conn = open_reader(tmp_path / "aggregate.db")
    try:
        return build_report(conn, run, plan)
    finally:
        conn.close()


def success(provider: str, start_s: float, ttft_ms: float, e2e_ms: float, **fields) -> pb.Record:
    return pb.Record(
        provider=provider,
        target="tokyo",
        start_unix_ns=at(start_s),
        ttft_ms=ttft_ms,
        e2e_ms=e2e_ms,
        output_tokens=100,
        **fields,
    )


def failure(
    provider: str, start_s: float, error_class: str, detail: str, target="tokyo"
) -> pb.Record:
    return pb.Record(
        provider=provider,
        target=target,
        start_unix_ns=at(start_s),
        error_class=error_class,
        error_detail=detail,
    )


@pytest.fixture
def report(tmp_path) -> pb.Report:
    plan = make_plan(
        [("alpha", "gpt-4o"), ("slow", "gpt-4o"), ("gone", "gpt-4o"), ("missing", "gpt-4o")],
        ["tokyo"],
    )
    plan.thresholds.extend(
        [
            pb.Threshold(metric="ttft_p50_ms", op="lt", value=300, provider="alpha"),
            pb.Threshold(metric="error_rate", op="le", value=0.1, provider="alpha"),
            pb.Threshold(metric="e2e_p99_ms", op="lt", value=5000, target="osaka"),
            pb.Threshold(metric="ttft_p95_ms", op="lt", value=10_000, provider="gone"),
        ]
    )
    records = [
        success("alpha", 0.05, 9999.0, 9999.0, warmup=True),
        success("alpha", 0.1, 100.0, 1000.0, ttfb_ms=50.0, tpot_ms=9.0, start_lag_ms=0.5),
        success("alpha", 0.5, 200.0, 1100.0, ttfb_ms=60.0, tpot_ms=9.0, start_lag_ms=1.5),
        success("alpha", 1.2, 300.0, 1200.0, output_tokens_estimated=True),
        success("alpha", 1.7, 400.0, 1300.0),
        failure("alpha", 1.9, "http_429", "Too Many Requests"),
        *[success("slow", 0.1 * i, 250.0, 2500.0) for i in range(4)],
        failure("gone", 0.2, "model_not_found", "The model gpt-4o does not exist"),
        failure("gone", 0.3, "http_404", "model 'GPT-4o' not found"),
        failure("missing", 0.2, "http_404", "Not Found: /v1/chat/completions"),
    ]
    return build(tmp_path, plan, records)


def summary_of(report: pb.Report, provider: str, target: str = "tokyo") -> pb.Summary:
    return next(s for s in report.summaries if (s.provider, s.target) == (provider, target))


def test_controller_aggregate_counts(report):
    alpha = summary_of(report, "alpha")

    assert alpha.requests == 5
    assert alpha.successes == 4
    assert alpha.errors == 1
    assert alpha.error_rate == pytest.approx(0.2)
    assert alpha.warmup_requests == 1
    assert dict(alpha.error_classes) == {"http_429": 1}
    assert list(alpha.sample_error_details) == ["http_429: Too Many Requests"]
    assert alpha.model == "gpt-4o"
    assert alpha.output_tokens_mean == pytest.approx(100.0)
    assert alpha.output_tokens_estimated is True


def test_controller_aggregate_distributions(report):
    ttft = summary_of(report, "alpha").ttft_ms
    values = [100.0, 200.0, 300.0, 400.0]
    stddev = math.sqrt(sum((v - 250.0) ** 2 for v in values) / 3)

    assert ttft.count == 4
    assert ttft.mean == pytest.approx(250.0)
    assert ttft.p50 == pytest.approx(250.0)
    assert ttft.p90 == pytest.approx(370.0)
    assert ttft.p95 == pytest.approx(385.0)
    assert ttft.p99 == pytest.approx(397.0)
    assert ttft.min == pytest.approx(100.0)
    assert ttft.max == pytest.approx(400.0)
    assert ttft.stddev == pytest.approx(stddev)
    assert ttft.mean_ci95_low == pytest.approx(250.0 - Z_95 * stddev / 2)
    assert ttft.mean_ci95_high == pytest.approx(250.0 + Z_95 * stddev / 2)


def test_controller_aggregate_optional_fields(report):
    alpha = summary_of(report, "alpha")

    assert alpha.ttfb_ms.count == 2
    assert alpha.ttfb_ms.mean == pytest.approx(55.0)
    assert alpha.tpot_ms.count == 2
    assert alpha.start_lag_ms.count == 4
    assert alpha.start_lag_ms.max == pytest.approx(1.5)


def test_controller_aggregate_throughput(report):
    # Earliest non-warm-up start 0.1 s, latest end 1.7 s + 1.3 s = 3.0 s.
    assert summary_of(report, "alpha").throughput_rps == pytest.approx(4 / 2.9)


def test_controller_aggregate_not_available(report):
    gone = summary_of(report, "gone")
    missing = summary_of(report, "missing")

    assert gone.not_available is True
    assert gone.not_available_detail == "The model gpt-4o does not exist"
    assert gone.score == 0.0
    assert missing.not_available is False
    assert missing.score == 1.0


def test_controller_aggregate_scores(report):
    # alpha: error rate 0.2 loses 3; it has the best p50 E2E and TTFT.
    assert summary_of(report, "alpha").score == pytest.approx(2.0)
    # slow: no errors; p50 E2E 2500 / 1150 > 2x loses 1.5; TTFT 250 equals the best.
    assert summary_of(report, "slow").score == pytest.approx(3.5)


def test_controller_aggregate_thresholds(report):
    results = [
        (r.threshold.metric, r.provider, r.target, r.passed) for r in report.threshold_results
    ]
    observed = {r.threshold.metric: r.observed for r in report.threshold_results}

    assert results == [
        ("ttft_p50_ms", "alpha", "tokyo", True),
        ("error_rate", "alpha", "tokyo", False),
        ("e2e_p99_ms", "", "osaka", False),
        ("ttft_p95_ms", "gone", "tokyo", False),
    ]
    assert observed["ttft_p50_ms"] == pytest.approx(250.0)
    assert observed["error_rate"] == pytest.approx(0.2)


def test_controller_aggregate_timeline(report):
    alpha = [b for b in report.timeline if b.provider == "alpha"]

    assert [b.bucket_start_unix_ns for b in alpha] == [START_NS, START_NS + SECOND_NS]
    assert [b.requests for b in alpha] == [3, 3]
    assert [b.errors for b in alpha] == [0, 1]
    # The timeline includes warm-up, so bucket 0 contains 9999, 100 and 200.
    assert alpha[0].ttft_p50_ms == pytest.approx(200.0)
    assert alpha[1].ttft_p50_ms == pytest.approx(350.0)
    assert alpha[1].e2e_p50_ms == pytest.approx(1250.0)
    assert all(b.bucket_s == 1.0 for b in alpha)


def test_controller_aggregate_summary_order(report):
    assert [s.provider for s in report.summaries] == ["alpha", "slow", "gone", "missing"]


def test_controller_aggregate_empty_run(tmp_path):
    plan = make_plan([("alpha", "gpt-4o"), ("beta", "gpt-4o")], ["tokyo", "shanghai"])
    plan.thresholds.append(pb.Threshold(metric="error_rate", op="lt", value=0.5))

    report = build(tmp_path, plan, [])

    assert len(report.summaries) == 4
    assert all(s.requests == 0 for s in report.summaries)
    assert all(s.error_rate == 0.0 for s in report.summaries)
    assert all(s.ttft_ms.count == 0 for s in report.summaries)
    assert all(s.score == 0.0 for s in report.summaries)
    assert all(s.throughput_rps == 0.0 for s in report.summaries)
    assert list(report.timeline) == []
    assert [r.passed for r in report.threshold_results] == [False] * 4


def test_controller_aggregate_agent_diagnosis(tmp_path):
    plan = make_plan([("alpha", "gpt-4o")], ["tokyo"])
    diagnosis = pb.AgentDiagnosis(start_lag_p99_ms=42.0, verdict="agent CPU saturated")

    report = build(tmp_path, plan, [success("alpha", 0.1, 100.0, 200.0)], diagnosis)

    assert len(report.agent_diagnoses) == 1
    assert report.agent_diagnoses[0].agent_id == "agent-tokyo"
    assert report.agent_diagnoses[0].diagnosis.verdict == "agent CPU saturated"
    assert report.agent_diagnoses[0].diagnosis.start_lag_p99_ms == pytest.approx(42.0)


def test_controller_aggregate_missing_start_time(tmp_path):
    plan = make_plan([("alpha", "gpt-4o")], ["tokyo"])
    scheduled_only = success("alpha", 0.0, 100.0, 200.0, scheduled_unix_ns=at(2.5))
    scheduled_only.start_unix_ns = 0
    no_times = success("alpha", 0.0, 300.0, 400.0)
    no_times.start_unix_ns = 0

    report = build(tmp_path, plan, [scheduled_only, no_times])

    buckets = {b.bucket_start_unix_ns: b.requests for b in report.timeline}
    assert buckets == {START_NS: 1, START_NS + 2 * SECOND_NS: 1}


def test_controller_aggregate_unplanned_group(tmp_path):
    plan = make_plan([("alpha", "gpt-4o")], ["tokyo"])
    stray = success("renamed", 0.1, 100.0, 200.0)

    report = build(tmp_path, plan, [stray])

    assert [(s.provider, s.requests) for s in report.summaries] == [("alpha", 0), ("renamed", 1)]


def test_controller_distribution_single_value():
    single = distribution([7.0])

    assert single.count == 1
    assert single.p99 == 7.0
    assert single.stddev == 0.0
    assert single.mean_ci95_low == single.mean_ci95_high == 7.0
    assert distribution([]).count == 0


def test_controller_aggregate_cancelled_not_errors(tmp_path):
    plan = make_plan([("openai", "gpt-4o")], ["tokyo"])
    records = [
        success("openai", 0.1, 100.0, 500.0),
        success("openai", 0.2, 110.0, 520.0),
        failure("openai", 0.3, "cancelled", "run cancelled"),
        failure("openai", 0.4, "cancelled", "run cancelled"),
        failure("openai", 0.5, "http_502", "bad gateway"),
    ]
    summary = summary_of(build(tmp_path, plan, records), "openai")
    assert summary.requests == 3
    assert summary.errors == 1
    assert summary.error_rate == pytest.approx(1 / 3)
    assert summary.cancelled == 2
    assert "cancelled" not in summary.error_classes
    assert summary.error_classes["http_502"] == 1


def test_controller_aggregate_not_available_within_warmup(tmp_path):
    plan = make_plan([("reasoner", "gpt-4o")], ["tokyo"])
    detail = "The model 'gpt-4o' does not exist"
    records = [failure("reasoner", 0.1 * i, "model_not_found", detail) for i in range(5)]
    for record in records:
        record.warmup = True
    summary = summary_of(build(tmp_path, plan, records), "reasoner")
    assert summary.requests == 0
    assert summary.warmup_requests == 5
    assert summary.not_available
    assert summary.not_available_detail == detail
