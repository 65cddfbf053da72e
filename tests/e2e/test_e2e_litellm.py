"""A run through real processes against a real third-party gateway (LiteLLM proxy).

One controller and two agents (shanghai, tokyo) run as OS processes on loopback. The
plan points three providers at LiteLLM mock models and goes in with
``llmping run --format json``. The tests then check the report and the records in the
controller's SQLite file.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmping.v1 import llmping_pb2 as pb

KEY_ENV = "E2E_GATEWAY_API_KEY"
REGIONS = ("shanghai", "tokyo")
REQUEST_COUNT = 6
PROMPT = "写一篇100字的短文"
# Provider name in the plan -> LiteLLM model name.
PROVIDERS = {"gateway-en": "mock-en", "gateway-zh": "mock-zh", "gateway-slow": "mock-slow"}


@dataclass(frozen=True)
class RunOutcome:
    """Everything one `llmping run` left behind."""

    cluster: Any
    exit_code: int
    stderr: str
    report: pb.Report
    records: list[dict[str, Any]]


def gateway_plan(base_url: str, providers: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "name": name,
        "providers": [
            {
                "name": provider,
                "kind": "openai_compatible",
                "base_url": base_url,
                "model": model,
                "api_key_env": KEY_ENV,
            }
            for provider, model in providers.items()
        ],
        "request": {"prompt": PROMPT, "max_tokens": 64, "stream": True, "include_usage": True},
        "load": {"mode": "closed", "concurrency": 2, "request_count": REQUEST_COUNT},
        "targets": list(REGIONS),
        "timeouts": {"connect_s": 5, "ttft_s": 10, "idle_s": 10, "total_s": 20},
    }


@pytest.fixture(scope="module")
def gateway_cluster(shared_cluster: Any, litellm_gateway: Any) -> Any:
    # The shared agents hold the key in the variable the plan names; the CLI does not.
    assert litellm_gateway.key_env == KEY_ENV
    return shared_cluster


def run_and_collect(cluster: Any, plan_path: Path) -> RunOutcome:
    result = cluster.run_plan(plan_path)
    report = result.report()
    return RunOutcome(
        cluster, result.exit_code, result.stderr, report, cluster.records(report.run.run_id)
    )


@pytest.fixture(scope="module")
def gateway_run(gateway_cluster: Any, litellm_gateway: Any) -> RunOutcome:
    plan = gateway_plan(litellm_gateway.base_url, PROVIDERS, "e2e-litellm")
    return run_and_collect(gateway_cluster, gateway_cluster.write_plan(plan))


def direct_stream(gateway: Any, model: str) -> list[dict[str, Any]]:
    """Send the plan's request straight to the gateway and return its stream events."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
        "stream_options": {"include_usage": True},
    }
    events: list[dict[str, Any]] = gateway.stream_events(body)
    return events


def test_litellm_run_completes(gateway_run: RunOutcome) -> None:
    details = f"{gateway_run.stderr}\n{gateway_run.cluster.describe()}"
    assert gateway_run.exit_code == 0, details
    assert gateway_run.report.run.state == pb.COMPLETED, details
    assert gateway_run.report.run.reason == ""


def test_litellm_records_per_provider_target(gateway_run: RunOutcome) -> None:
    counts = Counter((r["provider"], r["target"]) for r in gateway_run.records)

    expected = {(p, t): REQUEST_COUNT for p in PROVIDERS for t in REGIONS}
    assert dict(counts) == expected


def test_litellm_records_name_their_agent(gateway_run: RunOutcome) -> None:
    agents_by_target = {(r["target"], r["agent_id"]) for r in gateway_run.records}

    assert agents_by_target == {(region, f"e2e-{region}") for region in REGIONS}


def test_litellm_records_have_no_errors(gateway_run: RunOutcome) -> None:
    errors = [(r["provider"], r["error_class"], r["error_detail"]) for r in gateway_run.records]

    assert [e for e in errors if e[1]] == []
    assert {r["http_status"] for r in gateway_run.records} == {200}


def test_litellm_records_have_latencies(gateway_run: RunOutcome) -> None:
    for record in gateway_run.records:
        assert record["ttfb_ms"] is not None
        assert record["ttft_ms"] is not None
        assert record["e2e_ms"] is not None
        assert 0 < record["ttfb_ms"] <= record["ttft_ms"] <= record["e2e_ms"]


def test_litellm_output_tokens_from_usage(gateway_run: RunOutcome, litellm_gateway: Any) -> None:
    for provider, model in PROVIDERS.items():
        usage = direct_stream(litellm_gateway, model)[-1]["usage"]
        records = [r for r in gateway_run.records if r["provider"] == provider]

        assert {r["output_tokens"] for r in records} == {usage["completion_tokens"]}
        assert {r["output_tokens_estimated"] for r in records} == {0}
        assert {r["input_tokens"] for r in records} == {usage["prompt_tokens"]}


def test_litellm_chinese_stream_chunks_counted(
    gateway_run: RunOutcome, litellm_gateway: Any
) -> None:
    events = direct_stream(litellm_gateway, "mock-zh")
    text_chunks = [e for e in events if e["choices"] and e["choices"][0]["delta"].get("content")]
    records = [r for r in gateway_run.records if r["provider"] == "gateway-zh"]

    assert {r["content_chunks"] for r in records} == {len(text_chunks)}
    assert {r["finish_reason"] for r in records} == {"stop"}
    assert {r["response_model"] for r in records} == {"mock-zh"}


def test_litellm_report_keeps_chinese_prompt(gateway_run: RunOutcome) -> None:
    messages = gateway_run.report.plan.request.messages

    assert [m.content for m in messages] == [PROMPT]
    assert PROMPT in gateway_run.report.plan.source_yaml


def test_litellm_slow_model_ttft(gateway_run: RunOutcome, litellm_gateway: Any) -> None:
    delay_ms = litellm_gateway.slow_delay_s() * 1000.0
    slow = [r["ttft_ms"] for r in gateway_run.records if r["provider"] == "gateway-slow"]
    fast = [r["ttft_ms"] for r in gateway_run.records if r["provider"] == "gateway-en"]

    assert min(slow) >= delay_ms
    assert statistics.median(fast) < delay_ms


def test_litellm_report_summaries(gateway_run: RunOutcome) -> None:
    summaries = {(s.provider, s.target): s for s in gateway_run.report.summaries}

    assert set(summaries) == {(p, t) for p in PROVIDERS for t in REGIONS}
    for summary in summaries.values():
        assert summary.requests == REQUEST_COUNT
        assert summary.successes == REQUEST_COUNT
        assert summary.errors == 0
        assert summary.ttft_ms.count == REQUEST_COUNT
        assert summary.e2e_ms.count == REQUEST_COUNT
        assert summary.ttft_ms.p50 > 0
        assert summary.output_tokens_mean > 0
        assert not summary.output_tokens_estimated


def test_litellm_summary_matches_records(gateway_run: RunOutcome) -> None:
    for summary in gateway_run.report.summaries:
        ttfts = sorted(
            r["ttft_ms"]
            for r in gateway_run.records
            if r["provider"] == summary.provider and r["target"] == summary.target
        )
        assert summary.ttft_ms.max == pytest.approx(ttfts[-1])
        assert summary.ttft_ms.min == pytest.approx(ttfts[0])
        assert summary.model == PROVIDERS[summary.provider]


def test_litellm_key_not_stored_or_logged(gateway_run: RunOutcome, litellm_gateway: Any) -> None:
    key = litellm_gateway.master_key.encode("utf-8")
    cluster = gateway_run.cluster
    database_files = sorted(cluster.db_path.parent.glob(cluster.db_path.name + "*"))

    assert database_files, "the controller wrote no SQLite file"
    for path in database_files:
        assert key not in path.read_bytes(), f"API key found in {path.name}"
    for process in cluster.launcher.processes:
        assert key not in process.stdout_path.read_bytes(), f"API key in {process.name} stdout"
        assert key not in process.stderr_path.read_bytes(), f"API key in {process.name} stderr"
    assert litellm_gateway.master_key not in gateway_run.stderr


def test_litellm_rate_limit_is_classified(gateway_cluster: Any, litellm_gateway: Any) -> None:
    plan = gateway_plan(litellm_gateway.base_url, {"gateway-429": "mock-ratelimited"}, "e2e-429")
    plan["targets"] = ["shanghai"]
    plan["load"] = {"mode": "closed", "concurrency": 1, "request_count": 3}

    outcome = run_and_collect(gateway_cluster, gateway_cluster.write_plan(plan))

    assert outcome.report.run.state == pb.COMPLETED, outcome.stderr
    assert [r["error_class"] for r in outcome.records] == ["http_429"] * 3
    assert {r["http_status"] for r in outcome.records} == {429}
    summary = outcome.report.summaries[0]
    assert summary.errors == 3
    assert dict(summary.error_classes) == {"http_429": 3}
