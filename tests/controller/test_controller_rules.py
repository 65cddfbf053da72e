"""Score bands, threshold names, plan checks, secret redaction and run deadlines."""

from __future__ import annotations

import pytest

from llmping.controller.deadline import SLACK_S, planned_load_s, run_deadline_s
from llmping.controller.redact import REDACTED, redact_plan, redact_url
from llmping.controller.score import error_rate_penalty, latency_penalty, score_summary
from llmping.controller.thresholds import evaluate_thresholds, is_known_metric, metric_names
from llmping.controller.validate import validate_plan
from llmping.errors import PlanError
from llmping.v1 import llmping_pb2 as pb


@pytest.mark.parametrize(
    ("error_rate", "penalty"),
    [
        (0.0, 0.0),
        (0.0099, 0.0),
        (0.01, 1.0),
        (0.049, 1.0),
        (0.05, 2.0),
        (0.19, 2.0),
        (0.2, 3.0),
        (1.0, 3.0),
    ],
)
def test_controller_score_error_bands(error_rate, penalty):
    assert error_rate_penalty(error_rate) == penalty


@pytest.mark.parametrize(
    ("value", "best", "penalty"),
    [
        (100, 100, 0.0),
        (120, 100, 0.0),
        (121, 100, 0.5),
        (150, 100, 0.5),
        (200, 100, 1.0),
        (201, 100, 1.5),
        (5, 0, 0.0),
    ],
)
def test_controller_score_latency_bands(value, best, penalty):
    assert latency_penalty(value, best) == penalty


def test_controller_score_clamped_and_special_cases():
    worst = pb.Summary(requests=10, successes=1, errors=9, error_rate=0.9)
    worst.e2e_ms.count, worst.e2e_ms.p50 = 1, 1000.0
    worst.ttft_ms.count, worst.ttft_ms.p50 = 1, 1000.0
    all_failed = pb.Summary(requests=3, successes=0, errors=3, error_rate=1.0)
    unavailable = pb.Summary(requests=3, errors=3, error_rate=1.0, not_available=True)

    assert score_summary(worst, best_e2e_p50_ms=100.0, best_ttft_p50_ms=100.0) == 1.0
    assert score_summary(all_failed, 100.0, 100.0) == 1.0
    assert score_summary(unavailable, 100.0, 100.0) == 0.0
    assert score_summary(pb.Summary(), 100.0, 100.0) == 0.0


def test_controller_threshold_metric_names():
    names = metric_names()

    assert {"ttft_p95_ms", "e2e_p99_ms", "ttft_p50_ms", "e2e_mean_ms", "error_rate"} <= set(names)
    assert all(is_known_metric(name) for name in names)
    assert not is_known_metric("ttft_p97_ms")
    assert not is_known_metric("latency")


@pytest.mark.parametrize(
    ("op", "value", "passed"),
    [("lt", 250.0, False), ("le", 250.0, True), ("gt", 249.0, True), ("ge", 251.0, False)],
)
def test_controller_threshold_operators(op, value, passed):
    summary = pb.Summary(provider="alpha", target="tokyo", requests=1, successes=1)
    summary.e2e_ms.count, summary.e2e_ms.mean = 1, 250.0
    threshold = pb.Threshold(metric="e2e_mean_ms", op=op, value=value)

    [result] = evaluate_thresholds([threshold], [summary])

    assert result.passed is passed
    assert result.observed == 250.0


def test_controller_validate_accepts_plan(make_plan):
    validate_plan(make_plan())


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda p: p.ClearField("providers"), "providers"),
        (lambda p: p.ClearField("targets"), "targets"),
        (lambda p: p.providers.add(name="alpha"), "providers"),
        (lambda p: setattr(p.load, "concurrency", -1), "load.concurrency"),
        (lambda p: p.load.CopyFrom(pb.LoadSpec(concurrency=1)), "load"),
        (lambda p: p.thresholds.add(metric="e2e_p99_ms", op="below", value=1), "thresholds[0].op"),
        (
            lambda p: p.thresholds.add(metric="error_rate", op="lt", provider="nope"),
            "thresholds[0].provider",
        ),
        (
            lambda p: p.thresholds.add(metric="error_rate", op="lt", target="osaka"),
            "thresholds[0].target",
        ),
        (lambda p: setattr(p, "controller_secrets", True), "controller_secrets"),
        (lambda p: setattr(p.load, "max_in_flight", -1), "load.max_in_flight"),
        (lambda p: setattr(p.load, "max_requests", -1), "load.max_requests"),
    ],
)
def test_controller_validate_rejects(make_plan, change, path):
    plan = make_plan()
    change(plan)

    with pytest.raises(PlanError) as raised:
        validate_plan(plan)

    assert raised.value.path == path
    assert raised.value.hint


def test_controller_validate_request_cap(make_plan):
    # Closed loop, 4 workers for 10 s at the assumed 1 s per request: 40 per pair, 2 pairs.
    plan = make_plan(providers=("alpha", "beta"), concurrency=4, duration_s=10.0)
    plan.load.max_requests = 79

    with pytest.raises(PlanError) as raised:
        validate_plan(plan)

    assert raised.value.path == "load.max_requests"
    assert "about 80 requests" in raised.value.problem
    assert "40 per provider per target x 2 pairs" in raised.value.problem
    assert "over the cap of 79" in raised.value.problem
    assert "shorten load.duration_s" in raised.value.hint
    assert "raise load.max_requests" in raised.value.hint


@pytest.mark.parametrize("max_requests", [0, 80])
def test_controller_validate_request_cap_allows(make_plan, max_requests):
    plan = make_plan(providers=("alpha", "beta"), concurrency=4, duration_s=10.0)
    plan.load.max_requests = max_requests

    validate_plan(plan)


def test_controller_validate_request_cap_stages_only(make_plan):
    # Another gRPC client may send stages with load.duration_s left at 0.
    plan = make_plan(concurrency=0, duration_s=0.0)
    plan.load.stages.add(concurrency=3, duration_s=5.0)
    plan.load.max_requests = 14

    with pytest.raises(PlanError) as raised:
        validate_plan(plan)

    assert "about 15 requests" in raised.value.problem


def test_controller_redact_plan():
    plan = pb.Plan(
        source_yaml="api-key: top-secret-value\nproxy: http://u:proxy-pass@127.0.0.1:3128"
    )
    provider = plan.providers.add(name="alpha", proxy_url="http://u:proxy-pass@127.0.0.1:3128")
    provider.headers["X-Api-Key"] = "top-secret-value"
    provider.headers["X-Title"] = "llmping"

    safe = redact_plan(plan)

    assert safe.providers[0].headers["X-Api-Key"] == REDACTED
    assert safe.providers[0].headers["X-Title"] == "llmping"
    assert safe.providers[0].proxy_url == f"http://u:{REDACTED}@127.0.0.1:3128"
    assert "top-secret-value" not in safe.source_yaml
    assert "proxy-pass" not in safe.source_yaml
    assert plan.providers[0].headers["X-Api-Key"] == "top-secret-value"
    assert redact_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"


def test_controller_deadline_estimates():
    by_duration = pb.Plan(
        load=pb.LoadSpec(duration_s=60, warmup_s=5), timeouts=pb.Timeouts(total_s=30)
    )
    by_rate = pb.Plan(load=pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=10, request_count=100))
    by_count = pb.Plan(
        load=pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=4, request_count=10),
        timeouts=pb.Timeouts(total_s=20),
    )
    staged = pb.Plan(
        load=pb.LoadSpec(stages=[pb.Stage(duration_s=10, ramp_s=2), pb.Stage(duration_s=20)])
    )

    assert run_deadline_s(by_duration) == 60 + 5 + 30 + SLACK_S
    assert planned_load_s(by_rate) == 10.0
    assert planned_load_s(by_count) == 3 * 20.0
    assert planned_load_s(staged) == 32.0
