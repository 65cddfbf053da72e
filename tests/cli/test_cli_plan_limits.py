"""Out-of-range, non-finite and wrongly typed numbers in a plan exit 2 with the limit.

The estimate is also checked on its own, because the controller runs it on plans that
no CLI validated.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmping.cli import run_cmds
from llmping.errors import PlanError
from llmping.estimate import estimate_requests, request_cap_issue
from llmping.plan import load_plan, plan_from_text
from llmping.v1 import llmping_pb2 as pb

PLAN = """\
name: limits
providers:
  - name: sim
    kind: openai_compatible
    base_url: http://127.0.0.1:8800/v1
    model: gpt-4o
request:
  prompt: hi
  max_tokens: 100
load:
  concurrency: 2
  duration_s: 10
targets:
  - shanghai
"""
RATE_PLAN = PLAN.replace("  concurrency: 2\n", "  rate_per_s: 5\n")
STAGES_PLAN = PLAN.replace(
    "  concurrency: 2\n  duration_s: 10\n",
    "  stages:\n    - {concurrency: 2, duration_s: 10}\n",
)


def dry_run(tmp_path: Path, text: str) -> tuple[int, str]:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(textwrap.dedent(text), encoding="utf-8")
    result = CliRunner().invoke(run_cmds.run, [str(plan_file), "--dry-run"])
    return result.exit_code, result.stderr


def edited(plan: str, old: str, new: str) -> str:
    assert old in plan
    return plan.replace(old, new)


@pytest.mark.parametrize(
    ("plan", "old", "new", "expected"),
    [
        (
            PLAN,
            "  max_tokens: 100\n",
            "  max_tokens: 2147483648\n",
            ["request.max_tokens", "2147483648 is over the maximum of 2147483647"],
        ),
        (
            PLAN,
            "  concurrency: 2\n",
            "  concurrency: 2147483648\n",
            ["load.concurrency", "over the maximum of 2147483647"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            "  duration_s: 1e308\n",
            ["load.duration_s", "1e+308 s is over the maximum of 2592000 s (30 days)"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            "  duration_s: .inf\n",
            ["load.duration_s", "inf is not a finite number"],
        ),
        (
            RATE_PLAN,
            "  rate_per_s: 5\n",
            "  rate_per_s: .inf\n",
            ["load.rate_per_s", "inf is not a finite number"],
        ),
        (
            RATE_PLAN,
            "  rate_per_s: 5\n",
            "  rate_per_s: 1000001\n",
            ["load.rate_per_s", "over the maximum of 1000000"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            "  duration_s: .nan\n",
            ["load.duration_s", "nan is not a finite number"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            "  duration_s: 10\n  warmup_s: 2592001\n",
            ["load.warmup_s", "over the maximum of 2592000 s (30 days)"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            "  request_count: 9223372036854775808\n",
            ["load.request_count", "over the maximum of 9223372036854775807"],
        ),
        (
            STAGES_PLAN,
            "duration_s: 10}",
            "duration_s: 2592001}",
            ["load.stages[0].duration_s", "over the maximum of 2592000 s (30 days)"],
        ),
        (
            STAGES_PLAN,
            "{concurrency: 2,",
            "{concurrency: 2147483648,",
            ["load.stages[0].concurrency", "over the maximum of 2147483647"],
        ),
        (
            PLAN,
            "targets:\n",
            "timeouts: {total_s: 86401}\ntargets:\n",
            ["timeouts.total_s", "86401 s is over the maximum of 86400 s (1 day)"],
        ),
        (
            PLAN,
            "targets:\n",
            "timeouts: {ttft_s: .inf}\ntargets:\n",
            ["timeouts.ttft_s", "inf is not a finite number"],
        ),
        (
            PLAN,
            "  concurrency: 2\n",
            "  concurrency: true\n",
            ["load.concurrency", "expected an integer, got true", "write a number"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            '  duration_s: "2"\n',
            ["load.duration_s", "expected a number, got the string '2'", "remove the quotes"],
        ),
        (
            PLAN,
            "  duration_s: 10\n",
            "  duration_s: false\n",
            ["load.duration_s", "expected a number, got false"],
        ),
        (
            PLAN,
            "  concurrency: 2\n",
            "  concurrency: 2.5\n",
            ["load.concurrency", "expected an integer, got 2.5", "write a whole number"],
        ),
        (
            PLAN,
            "  max_tokens: 100\n",
            '  max_tokens: "100"\n',
            ["request.max_tokens", "expected an integer, got the string '100'"],
        ),
        (
            PLAN,
            "  max_tokens: 100\n",
            "  max_tokens: 100\n  temperature: .nan\n",
            ["request.temperature", "nan is not a finite number"],
        ),
        (
            PLAN,
            "  - shanghai\n",
            "  - shanghai\nthresholds:\n  - {metric: e2e_p99_ms, op: lt, value: .inf}\n",
            ["thresholds[0].value", "inf is not a finite number"],
        ),
    ],
)
def test_bad_number_exits_2(
    tmp_path: Path, plan: str, old: str, new: str, expected: list[str]
) -> None:
    code, err = dry_run(tmp_path, edited(plan, old, new))
    assert code == 2, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err


def test_stages_longer_than_30_days_in_total(tmp_path: Path) -> None:
    stages = "".join("    - {concurrency: 1, duration_s: 1000000}\n" for _ in range(3))
    text = edited(STAGES_PLAN, "    - {concurrency: 2, duration_s: 10}\n", stages)

    code, err = dry_run(tmp_path, text)

    assert code == 2, err
    assert "load.stages" in err
    assert "3000000 s" in err
    assert "2592000 s (30 days)" in err


def test_int_where_float_is_expected(tmp_path: Path) -> None:
    text = edited(PLAN, "  max_tokens: 100\n", "  max_tokens: 100\n  temperature: 1\n")
    plan = plan_from_text(text, "inline")
    assert plan.load.duration_s == 10.0
    assert plan.request.temperature == 1.0


def test_exponent_without_dot_is_a_number() -> None:
    # YAML 1.1 reads 1e3 as a string; plans read it as the number people mean.
    plan = plan_from_text(edited(PLAN, "  duration_s: 10\n", "  duration_s: 1e3\n"), "inline")
    assert plan.load.duration_s == 1000.0


def test_limits_themselves_are_accepted() -> None:
    text = edited(PLAN, "  max_tokens: 100\n", "  max_tokens: 2147483647\n")
    text = edited(text, "  duration_s: 10\n", "  duration_s: 2592000\n  max_requests: 100\n")
    with pytest.raises(PlanError, match="over the cap of 100"):
        plan_from_text(text, "inline")


# ---------------------------------------------------------------------------
# The estimate on plans that bypassed validation.
# ---------------------------------------------------------------------------


def raw_plan(load: pb.LoadSpec) -> pb.Plan:
    return pb.Plan(
        name="raw",
        providers=[pb.Provider(name="a"), pb.Provider(name="b")],
        targets=[pb.Target(name="t")],
        request=pb.RequestSpec(messages=[pb.ChatMessage(role="user", content="hi")], max_tokens=10),
        load=load,
    )


@pytest.mark.parametrize(
    "load",
    [
        pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=math.inf, duration_s=10),
        pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=5, duration_s=math.inf),
        pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=math.nan, duration_s=10),
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, duration_s=math.inf),
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, duration_s=1e308),
        pb.LoadSpec(
            mode=pb.LoadSpec.POISSON,
            stages=[pb.Stage(rate_per_s=math.inf, duration_s=5, ramp_s=0)],
        ),
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2),
    ],
    ids=[
        "rate-inf",
        "duration-inf",
        "rate-nan",
        "closed-inf",
        "closed-1e308",
        "stage-inf",
        "no-end",
    ],
)
def test_estimate_of_unbounded_load(load: pb.LoadSpec) -> None:
    estimate = estimate_requests(raw_plan(load))
    assert not estimate.bounded
    assert "no upper bound" in estimate.describe()
    assert len(estimate.describe()) < 400


def test_cap_rejects_unbounded_load() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=math.inf, duration_s=10)
    load.max_requests = 1000
    found = request_cap_issue(raw_plan(load))
    assert found is not None
    problem, _ = found
    assert "no upper bound" in problem
    assert "cap of 1000" in problem


def test_request_count_bounds_infinite_rate() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT, rate_per_s=math.inf, duration_s=10, request_count=7
    )
    estimate = estimate_requests(raw_plan(load))
    assert estimate.bounded
    assert estimate.requests_total == 14


def test_retry_accepts_status_groups(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        """
name: retry-groups
providers:
  - {name: a, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1", model: m}
request: {prompt: hi}
load:
  mode: closed
  concurrency: 1
  duration_s: 5
  retry: {max_attempts: 3, on_error_classes: [http_429, http_5xx, http_4xx]}
targets: [x]
""",
        encoding="utf-8",
    )
    plan = load_plan(plan_file)
    assert list(plan.load.retry.on_error_classes) == ["http_429", "http_5xx", "http_4xx"]


def test_retry_rejects_unknown_group(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        """
name: retry-groups
providers:
  - {name: a, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1", model: m}
request: {prompt: hi}
load: {mode: closed, concurrency: 1, duration_s: 5, retry: {on_error_classes: [http_3xx]}}
targets: [x]
""",
        encoding="utf-8",
    )
    with pytest.raises(PlanError, match="unknown error class 'http_3xx'"):
        load_plan(plan_file)
